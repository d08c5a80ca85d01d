"""Pair matcher ``nn``: nearest-neighbour descriptor matching (brute force or FLANN k-d trees), Lowe ratio test,
optional mutual check and maximum descriptor angle (COLMAP's rule)."""
from __future__ import annotations

from typing import Any, Optional

import cv2
import numpy as np

from ..extractors.base import Features

__all__ = ["default_conf", "match_descriptors", "load", "NearestNeighbour"]

default_conf: dict[str, Any] = {
    "name": "nn",
    "backend": "bf",  # "bf" (exact, cv2.BFMatcher L2) or "flann" (approximate k-d trees)
    "ratio": 0.8,  # Lowe's ratio test on L2 distances; None or >= 1 disables it
    "mutual": False,  # keep only mutual nearest neighbours
    "flann_trees": 4,
    "flann_checks": 64,
    "max_angle": None,  # radians between unit descriptors; None keeps every pair
}


def _knn(matcher: cv2.DescriptorMatcher, q: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two nearest neighbours in ``r`` of each row of ``q``: indices ``[N, 2]`` and distances ``[N, 2]``."""
    k = 2 if len(r) >= 2 else 1
    knn = matcher.knnMatch(q, r, k=k)
    idx = np.full((len(q), 2), -1, dtype=np.int64)
    dist = np.full((len(q), 2), np.inf, dtype=np.float32)
    for i, ms in enumerate(knn):
        for j, m in enumerate(ms[:2]):
            idx[i, j] = m.trainIdx
            dist[i, j] = m.distance
    return idx, dist


def _matcher(c: dict) -> cv2.DescriptorMatcher:
    if c["backend"] == "bf":
        return cv2.BFMatcher(cv2.NORM_L2, crossCheck=False)
    if c["backend"] == "flann":
        index = {"algorithm": 1, "trees": int(c["flann_trees"])}  # 1 = FLANN_INDEX_KDTREE
        return cv2.FlannBasedMatcher(index, {"checks": int(c["flann_checks"])})
    raise ValueError(f"unknown matcher backend {c['backend']!r}; choose 'bf' or 'flann'")


def match_descriptors(desc_q: np.ndarray, desc_r: np.ndarray, conf: Optional[dict] = None) -> np.ndarray:
    """Match query descriptors ``[N, D]`` to reference descriptors ``[M, D]`` (float32).

    Returns:
        ``[K, 2]`` int64 index pairs ``(i_query, i_reference)``, each query index at most once.
    """
    c = {**default_conf, **(conf or {})}
    pairs = _ratio_mutual(desc_q, desc_r, c)
    if c["max_angle"] is not None and len(pairs):
        dots = np.einsum("ij,ij->i", desc_q[pairs[:, 0]], desc_r[pairs[:, 1]])
        pairs = pairs[np.arccos(np.clip(dots, -1, 1)) <= float(c["max_angle"])]
    return pairs


def _ratio_mutual(desc_q: np.ndarray, desc_r: np.ndarray, c: dict) -> np.ndarray:
    desc_q = np.ascontiguousarray(desc_q, dtype=np.float32)
    desc_r = np.ascontiguousarray(desc_r, dtype=np.float32)
    if len(desc_q) == 0 or len(desc_r) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    m = _matcher(c)
    idx, dist = _knn(m, desc_q, desc_r)
    keep = idx[:, 0] >= 0
    ratio = c["ratio"]
    if ratio is not None and ratio < 1 and len(desc_r) >= 2:
        keep &= dist[:, 0] < ratio * dist[:, 1]
    if c["mutual"]:
        back, _ = _knn(m, desc_r, desc_q)
        fwd = idx[:, 0]
        ok = fwd >= 0
        mutual = np.zeros(len(desc_q), bool)
        mutual[ok] = back[fwd[ok], 0] == np.nonzero(ok)[0]
        keep &= mutual
    qi = np.nonzero(keep)[0]
    return np.stack([qi, idx[qi, 0]], axis=1).astype(np.int64)


class NearestNeighbour:
    """The loaded matcher: :meth:`match` two feature sets (any extractor's descriptors, L2-normalised)."""

    dense = False

    def __init__(self, conf: dict):
        self.conf = conf

    def match(self, q: Features, r: Features) -> np.ndarray:
        """Index pairs ``[K, 2]`` (i_query, i_reference)."""
        return match_descriptors(q.descriptors, r.descriptors, self.conf)


def load(conf: dict) -> NearestNeighbour:
    """The matcher for a full conf (:data:`default_conf` merged)."""
    return NearestNeighbour(conf)
