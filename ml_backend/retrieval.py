"""A cheap global image descriptor for retrieval among rendered views of one building, and top-k search.

The ``grid`` descriptor: a grey thumbnail (``size``) split into a ``grid`` of cells, each holding a histogram of
unsigned gradient orientations weighted by magnitude, normalized per cell (so lighting changes of a face cancel),
Hellinger-mapped (square root), concatenated with a zero-mean unit-variance mini thumbnail, L2-normalized.
It encodes the layout of the silhouette and facade edges, which is what distinguishes viewpoints of one model.
"""
from __future__ import annotations

from typing import Any, Optional

import cv2
import numpy as np

__all__ = ["default_conf", "global_descriptor", "top_k"]

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
