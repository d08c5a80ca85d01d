"""COLMAP's SIFT (pycolmap, CPU) as a local feature extractor: the peer of the benchmark.

Keypoints are moved from COLMAP's convention (pixel centre at 0.5) to OpenCV's (-0.5); descriptors are L2
normalised (COLMAP's L1-root SIFT), so the nearest-neighbour matcher's ratio and angle tests apply.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .base import Features, cached, merge_defaults, to_gray

__all__ = ["default_conf", "merge_conf", "extract"]

default_conf: dict[str, Any] = {
    "name": "colmap_sift",
    "max_keypoints": 4000,  # COLMAP's max_num_features; None or 0 = 8192
}

def merge_conf(conf: Optional[dict]) -> dict:
    """:data:`default_conf` updated with ``conf`` (unknown keys are an error, to catch typos)."""
    return merge_defaults(default_conf, conf)


def _sift(c: dict):
    import pycolmap

    opts = pycolmap.FeatureExtractionOptions()
    opts.sift.max_num_features = int(c.get("max_keypoints") or 8192)
    opts.num_threads = 2
    return pycolmap.Sift(options=opts, device=pycolmap.Device.cpu)


def extract(image: np.ndarray, conf: Optional[dict] = None) -> Features:
    """COLMAP SIFT features of ``image`` (``[H, W]`` grey or ``[H, W, 3]`` RGB uint8), OpenCV pixel convention."""
    gray = to_gray(image)
    kp, desc = cached(merge_conf(conf), _sift).extract(np.asarray(gray, np.float32) / 255.0)
    h, w = gray.shape
    d = np.asarray(desc, np.float32)
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    return Features(np.asarray(kp[:, :2] - 0.5, np.float32), d, np.asarray(kp[:, 2], np.float32),
                    np.zeros(len(kp), np.float32), (w, h))
