"""Pair matcher ``loftr``: kornia's LoFTR (dense, detector-free; outdoor weights supplied by the user as
``loftr_outdoor.ckpt``, see :mod:`..weights`). It matches two images, not two feature sets."""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["default_conf", "load", "LoFTRMatcher"]

#: ``resize_max``: longest side LoFTR sees; ``confidence``: the matches kept
default_conf: dict[str, Any] = {"name": "loftr", "resize_max": 640, "confidence": 0.2, "weights": None,
                                "random_weights_for_tests": False}


class LoFTRMatcher:
    """A loaded LoFTR: :meth:`match_images` of two grey images."""

    dense = True

    def __init__(self, net, conf: dict):
        self.net, self.conf = net.eval(), conf

    def match_images(self, gray_q: np.ndarray, gray_r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Dense matching of two grey uint8 images: points ``[K, 2]`` in each (OpenCV convention)."""
        import cv2
        import torch

        c = self.conf

        def prep(g):
            h, w = g.shape
            s = min(1.0, float(c["resize_max"]) / max(h, w))
            nw, nh = int(round(w * s / 8)) * 8, int(round(h * s / 8)) * 8
            x = cv2.resize(g, (nw, nh), interpolation=cv2.INTER_AREA) if (nw, nh) != (w, h) else g
            return torch.from_numpy(np.ascontiguousarray(x)).float()[None, None] / 255.0, w / nw, h / nh

        tq, sxq, syq = prep(gray_q)
        tr, sxr, syr = prep(gray_r)
        with torch.inference_mode():
            out = self.net({"image0": tq, "image1": tr})
        keep = out["confidence"].numpy() >= float(c["confidence"])
        k0 = out["keypoints0"].numpy()[keep].astype(np.float64)  # LoFTR's frame: pixel centres at +0.5
        k1 = out["keypoints1"].numpy()[keep].astype(np.float64)
        xq = np.stack([k0[:, 0] * sxq - 0.5, k0[:, 1] * syq - 0.5], 1)
        xr = np.stack([k1[:, 0] * sxr - 0.5, k1[:, 1] * syr - 0.5], 1)
        return xq.astype(np.float32), xr.astype(np.float32)


def load(conf: dict) -> LoFTRMatcher:
    """LoFTR with the user's weights (random only with ``random_weights_for_tests``)."""
    from kornia.feature import LoFTR

    from ..weights import find_user_weights, load_state_dict, set_torch_threads

    set_torch_threads()
    net = LoFTR(pretrained=None)
    if not conf["random_weights_for_tests"]:
        net.load_state_dict(load_state_dict(find_user_weights("loftr", conf["weights"])))
    return LoFTRMatcher(net, conf)
