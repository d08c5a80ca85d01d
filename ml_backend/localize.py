"""Localize a query image against a feature database: retrieve top-k references, match SIFT, pool 2D-3D, PnP.

When the pooled top-k matches give fewer than ``min_inliers`` PnP inliers (retrieval picked the wrong side of a
symmetric building, say), the matches of the next references up to ``k_fallback`` are added and PnP runs again.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import cv2
import numpy as np

from pose_addon.core.cameras import Intrinsics

from . import matching, retrieval
from .database import FeatureDatabase
from .features import sift
from .pnp import solve_pnp

__all__ = ["default_conf", "LocalizationResult", "Localizer", "localize"]

default_conf: dict[str, Any] = {
    "retrieval": "votes",  # "votes" (local-descriptor voting, see retrieval.VotingIndex) or "global"
    "votes": {},  # overrides of retrieval.vote_conf
    "k": 3,  # retrieved references whose matches are pooled
    "k_fallback": 8,  # when top-k gives < min_inliers, pool matches of the top k_fallback instead (0 = never)
    "matching": {},  # overrides of matching.default_conf
    "pnp_backend": "poselib",
    "threshold_px": 2.5,  # RANSAC threshold at 640 px image width; scaled with max(width, height) / 640
    "max_iterations": 10000,
    "min_inliers": 12,  # fewer inliers than this = not localized
    "resize_max": 1600,  # larger query images are downscaled to this longest side (intrinsics scaled alike)
}


@dataclass
class LocalizationResult:
    """Outcome of localizing one query.

    ``cam_from_world`` is ``[4, 4]`` (OpenCV axes, world = Blender world) or None when not localized;
    ``timings`` holds seconds per stage (features, retrieval, matching, pnp, total).
    """

    success: bool
    cam_from_world: Optional[np.ndarray]
    n_inliers: int
    n_matches: int
    reproj_error_px: float
    retrieved: list
    timings: dict = field(default_factory=dict)
    message: str = ""


class Localizer:
    """Holds a database open (and its reference descriptors cached) to localize many queries."""

    def __init__(self, db_path: Path | str, conf: Optional[dict] = None):
        self.conf = {**default_conf, **(conf or {})}
        self.db = FeatureDatabase(db_path)
        if len(self.db) == 0:
            raise ValueError(f"feature database {db_path} holds no reference frames")
        if self.conf["retrieval"] not in ("votes", "global"):
            raise ValueError(f"unknown retrieval {self.conf['retrieval']!r}; choose 'votes' or 'global'")
        self._cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._votes: Optional[retrieval.VotingIndex] = None

    def retrieve(self, gray: np.ndarray, descriptors: np.ndarray, k: int) -> np.ndarray:
        """Indices ``[<=k]`` of the references most similar to a query (grey image + its SIFT descriptors)."""
        if self.conf["retrieval"] == "votes":
            if self._votes is None:
                self._votes = self.db.voting_index(self.conf["votes"])
            return self._votes.query(descriptors, k)[0]
        g = retrieval.global_descriptor(gray, self.db.conf["retrieval"])
        return retrieval.top_k(g, self.db.global_descriptors, k)[0]

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Localizer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _ref(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        fr = self.db.frames[i]
        if fr.id not in self._cache:
            self._cache[fr.id] = (fr.descriptors, fr.points3d)
        return self._cache[fr.id]

    def localize(self, image: Path | str | np.ndarray, intrinsics: Intrinsics) -> LocalizationResult:
        """Pose of a query image.

        Args:
            image: path of an image file, or a grey/RGB uint8 array ``[H, W(, 3)]``.
            intrinsics: the query's intrinsics (OpenCV pixel convention, undistorted).

        Raises:
            features.sift.ImageReadError: the image file is missing or unreadable.
        """
        c = self.conf
        t0 = time.perf_counter()
        gray = sift.load_image_gray(image) if isinstance(image, (str, Path)) else sift._to_gray(image)
        if gray.shape != (intrinsics.height, intrinsics.width):
            raise ValueError(f"image is {gray.shape[1]}x{gray.shape[0]} but the intrinsics are for "
                             f"{intrinsics.width}x{intrinsics.height}")
        gray, intrinsics = _downscale(gray, intrinsics, c["resize_max"])
        feats = sift.extract(gray, self.db.conf["features"])
        keypoints, intrinsics = _undistort(feats.keypoints, intrinsics)
        t1 = time.perf_counter()
        k, k_fb = int(c["k"]), int(c["k_fallback"] or 0)
        idx = self.retrieve(gray, feats.descriptors, max(k, k_fb))
        t2 = time.perf_counter()
        thr = float(c["threshold_px"]) * max(intrinsics.width, intrinsics.height) / 640.0
        p2, p3 = [], []
        t_match = t_pnp = 0.0
        used = 0
        for stop in (k, k_fb) if k_fb > k else (k,):
            ta = time.perf_counter()
            for i in idx[used:stop]:
                desc, pts = self._ref(int(i))
                m = matching.match_descriptors(feats.descriptors, desc, c["matching"])
                p2.append(keypoints[m[:, 0]])
                p3.append(pts[m[:, 1]])
            used = min(stop, len(idx))
            P2 = np.concatenate(p2) if p2 else np.zeros((0, 2))
            P3 = np.concatenate(p3) if p3 else np.zeros((0, 3))
            tb = time.perf_counter()
            res = solve_pnp(P2, P3, intrinsics, thr, c["pnp_backend"], int(c["max_iterations"]))
            t_match += tb - ta
            t_pnp += time.perf_counter() - tb
            ok = res.success and res.n_inliers >= int(c["min_inliers"])
            if ok or used >= len(idx):
                break
        t4 = time.perf_counter()
        timings = {"features": t1 - t0, "retrieval": t2 - t1, "matching": t_match, "pnp": t_pnp, "total": t4 - t0}
        retrieved = [self.db.ids[int(i)] for i in idx[:used]]
        msg = res.message if res.success and ok else (
            res.message if not res.success else f"only {res.n_inliers} inliers (< {c['min_inliers']})")
        return LocalizationResult(ok, res.cam_from_world if ok else None, res.n_inliers, len(P2),
                                  res.reproj_error_px, retrieved, timings, msg)


def _downscale(gray: np.ndarray, intr: Intrinsics, resize_max: Optional[int]) -> tuple[np.ndarray, Intrinsics]:
    """Shrink an image whose longest side exceeds ``resize_max``; intrinsics follow (pixel centres kept right)."""
    h, w = gray.shape
    if not resize_max or max(h, w) <= int(resize_max):
        return gray, intr
    s = int(resize_max) / max(h, w)
    small = cv2.resize(gray, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    sx, sy = small.shape[1] / w, small.shape[0] / h
    k = intr.scaled(sx, sy)
    return small, Intrinsics(small.shape[1], small.shape[0], k.fx, k.fy, k.cx, k.cy, k.dist)


def _undistort(xy: np.ndarray, intr: Intrinsics) -> tuple[np.ndarray, Intrinsics]:
    """Keypoints ``[N, 2]`` of a distorted camera -> ideal pinhole pixels with the same K (dist dropped)."""
    if not intr.dist or not any(abs(d) > 0 for d in intr.dist) or len(xy) == 0:
        return xy, intr
    und = cv2.undistortPoints(xy.reshape(-1, 1, 2).astype(np.float64), intr.K, np.asarray(intr.dist, np.float64),
                              P=intr.K).reshape(-1, 2)
    return und.astype(np.float32), Intrinsics(intr.width, intr.height, intr.fx, intr.fy, intr.cx, intr.cy)


def localize(image: Path | str | np.ndarray, intrinsics: Intrinsics, db_path: Path | str,
             conf: Optional[dict] = None) -> LocalizationResult:
    """One-shot :meth:`Localizer.localize` (opens and closes the database)."""
    with Localizer(db_path, conf) as loc:
        return loc.localize(image, intrinsics)
