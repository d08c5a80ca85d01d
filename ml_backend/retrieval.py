"""A cheap global image descriptor for retrieval among rendered views of one building, and top-k search.

The ``grid`` descriptor: a grey thumbnail (``size``) split into a ``grid`` of cells, each holding a histogram of
unsigned gradient orientations weighted by magnitude, normalized per cell (so lighting changes of a face cancel),
Hellinger-mapped (square root), concatenated with a zero-mean unit-variance mini thumbnail, L2-normalized.
It encodes the layout of the silhouette and facade edges, which is what distinguishes viewpoints of one model.

The ``votes`` retrieval (:class:`VotingIndex`): each of the query's strongest local descriptors looks up its
nearest neighbours among the references' strongest descriptors (one FLANN k-d forest over all of them) and votes
once for every reference holding a neighbour within ``gate`` times the nearest distance. On renders of one
building under changing light this is far more reliable than the global descriptor (which lighting and
symmetric facades confuse), at a few tens of milliseconds a query.
"""
from __future__ import annotations

from typing import Any, Optional

import cv2
import numpy as np

__all__ = ["default_conf", "global_descriptor", "top_k", "vote_conf", "VotingIndex"]

default_conf: dict[str, Any] = {
    "name": "grid",
    "size": (96, 72),  # thumbnail (width, height) the gradients are computed on
    "grid": (6, 6),  # cells (x, y)
    "bins": 8,  # unsigned orientation bins over [0, pi)
    "thumb": (16, 12),  # mini thumbnail appended (width, height); (0, 0) to leave out
    "thumb_weight": 0.5,
}


def global_descriptor(gray: np.ndarray, conf: Optional[dict] = None) -> np.ndarray:
    """Global descriptor ``[D]`` float32 (unit L2 norm) of an 8-bit grey image ``[H, W]``."""
    c = {**default_conf, **(conf or {})}
    w, h = (int(v) for v in c["size"])
    gx_cells, gy_cells = (int(v) for v in c["grid"])
    small = cv2.resize(np.asarray(gray), (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    small = cv2.GaussianBlur(small, (0, 0), 0.8)
    gx = cv2.Sobel(small, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(small, cv2.CV_32F, 0, 1, ksize=3)
    mag = np.sqrt(gx * gx + gy * gy)
    ang = np.mod(np.arctan2(gy, gx), np.pi)
    bins = int(c["bins"])
    b = np.minimum((ang / np.pi * bins).astype(np.int64), bins - 1)
    cy = np.minimum(np.arange(h) * gy_cells // h, gy_cells - 1)
    cx = np.minimum(np.arange(w) * gx_cells // w, gx_cells - 1)
    cell = (cy[:, None] * gx_cells + cx[None, :])
    hist = np.zeros((gx_cells * gy_cells, bins), np.float64)
    np.add.at(hist, (cell.ravel(), b.ravel()), mag.ravel())
    hist /= np.maximum(np.linalg.norm(hist, axis=1, keepdims=True), 1e-6)
    hist = np.sqrt(hist).ravel()
    hist /= max(np.linalg.norm(hist), 1e-12)
    parts = [hist]
    tw, th = (int(v) for v in c["thumb"])
    if tw > 0 and th > 0:
        t = cv2.resize(small, (tw, th), interpolation=cv2.INTER_AREA).ravel().astype(np.float64)
        t = (t - t.mean()) / max(t.std(), 1e-6)
        parts.append(float(c["thumb_weight"]) * t / max(np.linalg.norm(t), 1e-12))
    d = np.concatenate(parts)
    return (d / max(np.linalg.norm(d), 1e-12)).astype(np.float32)


def top_k(query: np.ndarray, database: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``[k']`` and cosine similarities ``[k']`` of the ``k`` most similar rows of ``database [M, D]``.

    ``k' = min(k, M)``; best first.
    """
    db = np.asarray(database, np.float32)
    if len(db) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    sim = db @ np.asarray(query, np.float32)
    k = min(int(k), len(db))
    idx = np.argpartition(-sim, k - 1)[:k]
    idx = idx[np.argsort(-sim[idx], kind="stable")]
    return idx.astype(np.int64), sim[idx]


#: Parameters of :class:`VotingIndex`.
vote_conf: dict[str, Any] = {
    "per_reference": 500,  # strongest descriptors of each reference in the index
    "query_features": 1500,  # strongest query descriptors that vote
    "knn": 8,  # neighbours looked up per query descriptor
    "gate": 1.25,  # a neighbour votes if its distance <= gate * nearest distance
    "trees": 4,
    "checks": 32,
}


class VotingIndex:
    """Image retrieval by local-descriptor votes over a set of references."""

    def __init__(self, descriptors: list[np.ndarray], conf: Optional[dict] = None):
        """Args:
            descriptors: per reference, ``[N_i, D]`` float32 descriptors, strongest first (only the first
                ``per_reference`` are used).
        """
        self.conf = {**vote_conf, **(conf or {})}
        n = int(self.conf["per_reference"])
        parts = [np.asarray(d[:n], np.float32) for d in descriptors]
        self.n_refs = len(parts)
        self.owner = np.concatenate([np.full(len(d), i, np.int64) for i, d in enumerate(parts)]) \
            if parts else np.zeros(0, np.int64)
        self._data = np.ascontiguousarray(np.concatenate(parts)) if len(self.owner) else None
        self._index = None
        if self._data is not None:
            self._index = cv2.flann_Index(self._data, {"algorithm": 1, "trees": int(self.conf["trees"])})

    def votes(self, query_descriptors: np.ndarray) -> np.ndarray:
        """Votes ``[n_refs]`` of the query's descriptors ``[N, D]`` (strongest first)."""
        v = np.zeros(self.n_refs)
        q = np.ascontiguousarray(np.asarray(query_descriptors, np.float32)[: int(self.conf["query_features"])])
        if self._index is None or len(q) == 0:
            return v
        k = min(int(self.conf["knn"]), len(self.owner))
        idx, d2 = self._index.knnSearch(q, k, params={"checks": int(self.conf["checks"])})
        idx = np.asarray(idx, np.int64).reshape(len(q), k)
        d = np.sqrt(np.maximum(np.asarray(d2, np.float64).reshape(len(q), k), 0.0))
        ok = (idx >= 0) & (d <= float(self.conf["gate"]) * d[:, :1] + 1e-9)
        img = np.where(ok, self.owner[np.clip(idx, 0, len(self.owner) - 1)], -1)
        # one vote per (query descriptor, reference)
        pairs = np.unique(np.stack([np.repeat(np.arange(len(q)), k), img.ravel()], 1), axis=0)
        pairs = pairs[pairs[:, 1] >= 0]
        np.add.at(v, pairs[:, 1], 1.0)
        return v

    def query(self, query_descriptors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices ``[k']`` of the ``k`` references with most votes, and their votes; best first."""
        v = self.votes(query_descriptors)
        if self.n_refs == 0:
            return np.zeros(0, np.int64), np.zeros(0)
        k = min(int(k), self.n_refs)
        idx = np.argsort(-v, kind="stable")[:k]
        return idx.astype(np.int64), v[idx]
