"""OpenCV SIFT with optional RootSIFT and the +0.25 px keypoint correction.

OpenCV's SIFT upsamples the image by 2 (``INTER_LINEAR``, pixel centres mapped by ``x_up = 2x + 0.5``) and
reports keypoints as ``x_up / 2``: every keypoint sits 0.25 px right of and below the true position. With
``keypoint_offset = -0.25`` (the default) the returned keypoints are in exact OpenCV pixel convention.
"""
from __future__ import annotations

from typing import Any, Optional

import cv2
import numpy as np

from .base import Features, merge_defaults, to_gray

__all__ = ["default_conf", "merge_conf", "extract"]

#: Parameters of :func:`extract`; user confs are merged on top (hloc / LightGlue style).
default_conf: dict[str, Any] = {
    "name": "sift",
    "max_keypoints": 4000,  # keep the strongest N (by response); None or 0 = all
    "root_sift": True,  # Hellinger-normalized descriptors (Arandjelovic & Zisserman 2012)
    "n_octave_layers": 3,
    "contrast_threshold": 0.02,
    "edge_threshold": 10.0,
    "sigma": 1.6,
    "keypoint_offset": -0.25,  # added to OpenCV's keypoints to land on OpenCV pixel convention
}


def merge_conf(conf: Optional[dict]) -> dict:
    """:data:`default_conf` updated with ``conf`` (unknown keys are an error, to catch typos)."""
    return merge_defaults(default_conf, conf)


def extract(image: np.ndarray, conf: Optional[dict] = None) -> Features:
    """Detect and describe SIFT features.

    Args:
        image: ``[H, W]`` grey or ``[H, W, 3]`` RGB, uint8 (or float in [0, 1]).
        conf: overrides of :data:`default_conf`.

    Returns:
        :class:`Features` with keypoints in OpenCV pixel convention, strongest first.
    """
    c = merge_conf(conf)
    gray = to_gray(image)
    sift = cv2.SIFT_create(nfeatures=0, nOctaveLayers=int(c["n_octave_layers"]),
                           contrastThreshold=float(c["contrast_threshold"]),
                           edgeThreshold=float(c["edge_threshold"]), sigma=float(c["sigma"]))
    kps, desc = sift.detectAndCompute(gray, None)
    h, w = gray.shape
    if not kps or desc is None:
        return Features(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32), np.zeros(0, np.float32),
                        np.zeros(0, np.float32), (w, h))
    scores = np.array([k.response for k in kps], dtype=np.float32)
    order = np.argsort(-scores, kind="stable")
    if c["max_keypoints"]:
        order = order[: int(c["max_keypoints"])]
    pts = np.array([kps[i].pt for i in order], dtype=np.float32) + np.float32(c["keypoint_offset"])
    sizes = np.array([kps[i].size for i in order], dtype=np.float32)
    desc = desc[order].astype(np.float32)
    if c["root_sift"]:
        desc /= np.maximum(desc.sum(axis=1, keepdims=True), 1e-12)  # L1
        desc = np.sqrt(desc)  # then unit L2 norm by construction
    else:
        desc /= np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-12)
    return Features(pts, np.ascontiguousarray(desc), sizes, scores[order], (w, h))
