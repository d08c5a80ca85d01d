"""Localize a query image against a feature database: retrieve top-k references, match, pool 2D-3D, PnP.

The matcher is any preset of :mod:`.matchers` (``conf["matcher"]``; default: the database's own preset); its
features are the database's. Dense matchers (LoFTR) match the query against the reference *images* and lift the
matched reference pixels through the reference depth on the fly. Learned-feature databases retrieve with the
votes of a SIFT database (``conf["retrieval_db"]``) or the global descriptors.

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

from ..pnp import solve_pnp
from . import lifting, presets, retrieval
from .database import FeatureDatabase
from .extractors import Features, load_image_gray, sift
from .extractors.base import to_gray

__all__ = ["default_conf", "LocalizationResult", "Localizer", "localize", "EnsembleLocalizer", "ensemble_conf",
           "dedup_correspondences", "Rival", "rival_pose"]

default_conf: dict[str, Any] = {
    "retrieval": "votes",  # "votes" (local-descriptor voting, see retrieval.VotingIndex) or "global"
    "votes": {},  # overrides of retrieval.vote_conf
    "k": 3,  # retrieved references whose matches are pooled
    "k_fallback": 8,  # when top-k gives < min_inliers, pool matches of the top k_fallback instead (0 = never)
    "verify_k": 8,  # the rival pose is sought among the matches of this many top references (see rival_pose)
    "pnp_backend": "poselib",
    "threshold_px": 2.5,  # RANSAC threshold at 640 px image width; scaled with max(width, height) / 640
    "max_iterations": 10000,
    "min_inliers": 12,  # fewer inliers than this = not localized
    "resize_max": 1600,  # larger query images are downscaled to this longest side (intrinsics scaled alike)
    "matcher": None,  # a matchers preset name/conf; None = the database's preset
    "retrieval_db": None,  # SIFT database for "votes" retrieval when the main database holds other features
    "global_index": None,  # HDF5 of a retrieval.GlobalIndex (EfficientNet/CLIP) for retrieval "net"
    "diversity_m": 0.0,  # "net" retrieval: skip references within this distance of a better-ranked one
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
    inliers_3d: Optional[np.ndarray] = None  # [M, 3] world points of (up to MAX_OVERLAY_POINTS) PnP inliers
    rival: Optional[Rival] = None  # the strongest other pose among the outliers (see rival_pose)


@dataclass
class Rival:
    """A second, different pose that the matches left over by the first one support: ``n_inliers``,
    ``cam_from_world`` ``[4, 4]``, and how far it is from the first (``rotation_deg``, ``centre_m``)."""

    n_inliers: int
    cam_from_world: np.ndarray
    rotation_deg: float
    centre_m: float


def rival_pose(points2d: np.ndarray, points3d: np.ndarray, intrinsics: Intrinsics, cam_from_world: np.ndarray,
               threshold_px: float, backend: str, max_iterations: int = 2000, min_inliers: int = 6,
               same_deg: float = 5.0, same_rel: float = 0.1) -> Optional[Rival]:
    """PnP-RANSAC on the correspondences (``[N, 2]`` undistorted pixels, ``[N, 3]`` world) that the pose
    ``cam_from_world`` does not explain; the result when it is a different pose (rotated by more than
    ``same_deg`` or its centre further than ``same_rel`` times the median inlier depth) with at least
    ``min_inliers`` inliers, else None. A symmetric or repeated building gives such a rival: the photo fits two
    places and the stronger one is a guess."""
    from pose_addon.core.cameras import camera_center, project_points
    from pose_addon.core.poses import rotation_angle_deg

    uv, z = project_points(intrinsics.K, cam_from_world, points3d)
    explained = (z > 0) & (np.linalg.norm(uv - points2d, axis=1) <= threshold_px)
    rest = ~explained
    if rest.sum() < max(min_inliers, 4) or not explained.any():
        return None
    r = solve_pnp(points2d[rest], points3d[rest], intrinsics, threshold_px, backend, max_iterations)
    if not r.success or r.n_inliers < min_inliers:
        return None
    rot = rotation_angle_deg(r.cam_from_world[:3, :3], cam_from_world[:3, :3])
    dc = float(np.linalg.norm(camera_center(r.cam_from_world) - camera_center(cam_from_world)))
    depth = float(np.median(z[explained]))
    if rot <= same_deg and dc <= same_rel * depth:
        return None  # the same pose again: leftovers of the first one
    if dc > 10.0 * depth:
        return None  # a camera far beyond the scene: PnP fitted to a few stray matches
    return Rival(int(r.n_inliers), r.cam_from_world, rot, dc)


class Localizer:
    """Holds a database open (and its reference descriptors cached) to localize many queries."""

    def __init__(self, db_path: Path | str, conf: Optional[dict] = None):
        self.conf = {**default_conf, **(conf or {})}
        self.db = FeatureDatabase(db_path)
        if len(self.db) == 0:
            raise ValueError(f"feature database {db_path} holds no reference frames")
        if self.conf["retrieval"] not in ("votes", "global", "net"):
            raise ValueError(f"unknown retrieval {self.conf['retrieval']!r}; choose 'votes', 'global' or 'net'")
        mconf = self.conf["matcher"] or self.db.conf.get("name", "sift")
        if isinstance(mconf, str) and mconf not in presets.confs:
            mconf = "sift"  # sift_fast & co: SIFT features, NN matching
        self.matcher = presets.get_matcher(mconf)
        dbf = self.db.conf["features"].get("name", "sift")
        mf = self.matcher.conf["features"]
        if mf is not None and mf["name"] != dbf:
            raise ValueError(f"matcher {self.matcher.name} needs {mf['name']} features but database {db_path} "
                             f"holds {dbf}; build it with conf '{self.matcher.name}'")
        self.features_sift = dbf == "sift"
        self._rdb: Optional[FeatureDatabase] = None
        if self.conf["retrieval"] == "votes" and not self.features_sift:
            if not self.conf["retrieval_db"]:
                raise ValueError("retrieval 'votes' needs SIFT descriptors: pass conf 'retrieval_db' (a SIFT "
                                 "database of the same references) or use retrieval 'global'/'net'")
            self._rdb = FeatureDatabase(self.conf["retrieval_db"])
            if self._rdb.ids != self.db.ids or self._rdb.dataset_digest != self.db.dataset_digest:
                raise ValueError(f"retrieval database {self.conf['retrieval_db']} (references of "
                                 f"{self._rdb.dataset}, digest {self._rdb.dataset_digest or 'none'}) holds other "
                                 f"references than {db_path} ({self.db.dataset}, digest "
                                 f"{self.db.dataset_digest or 'none'})")
        self._gindex = None
        if self.conf["retrieval"] == "net":
            if not self.conf["global_index"]:
                raise ValueError("retrieval 'net' needs conf 'global_index' (see retrieval.build_global_index)")
            self._gindex = retrieval.GlobalIndex.load(self.conf["global_index"])
            if self._gindex.dataset_digest and self._gindex.dataset_digest != self.db.dataset_digest:
                raise ValueError(f"global index {self.conf['global_index']} describes {self._gindex.dataset} "
                                 f"(digest {self._gindex.dataset_digest}), not the references of {db_path} "
                                 f"({self.db.dataset}, digest {self.db.dataset_digest})")
            self._gorder = np.array([self._gindex.ids.index(i) for i in self.db.ids])
        self._cache: dict[str, tuple[Features, np.ndarray]] = {}
        self._votes: Optional[retrieval.VotingIndex] = None
        self._ds = None

    def retrieve(self, gray: np.ndarray, descriptors: Optional[np.ndarray], k: int,
                 image: Optional[np.ndarray] = None) -> np.ndarray:
        """Indices ``[<=k]`` of the references most similar to a query.

        Args:
            gray: the query ``[H, W]`` uint8.
            descriptors: its SIFT descriptors (strongest first) for "votes" on a SIFT database, else None.
            image: the query RGB ``[H, W, 3]`` for "net" retrieval (grey is replicated when absent).
        """
        if self.conf["retrieval"] == "votes":
            if self._votes is None:
                self._votes = (self._rdb or self.db).voting_index(self.conf["votes"])
            if descriptors is None or not self.features_sift:
                descriptors = sift.extract(gray, (self._rdb or self.db).conf["features"]).descriptors
            return self._votes.query(descriptors, k)[0]
        if self.conf["retrieval"] == "net":
            g = self._gindex.describe(image if image is not None else gray)
            sim = self._gindex.descriptors[self._gorder] @ g
            dmin = float(self.conf.get("diversity_m") or 0.0)
            if dmin > 0:  # pose diversity: references at least dmin metres apart
                centers = np.array([-f.cam_from_world[:3, :3].T @ f.cam_from_world[:3, 3] for f in self.db.frames])
                return retrieval.top_k_diverse(sim, centers, k, dmin)
            return np.argsort(-sim, kind="stable")[:k].astype(np.int64)
        g = retrieval.global_descriptor(gray, self.db.conf["retrieval"])
        return retrieval.top_k(g, self.db.global_descriptors, k)[0]

    def close(self) -> None:
        self.db.close()
        if self._rdb is not None:
            self._rdb.close()

    def __enter__(self) -> Localizer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _ref(self, i: int) -> tuple[Features, np.ndarray]:
        fr = self.db.frames[i]
        if fr.id not in self._cache:
            kp = fr.keypoints
            intr = fr.intrinsics
            feats = Features(kp, fr.descriptors, np.zeros(len(kp), np.float32), np.zeros(len(kp), np.float32),
                             (intr.width, intr.height))
            self._cache[fr.id] = (feats, fr.points3d)
        return self._cache[fr.id]

    def _dense_ref(self, i: int, gray_q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Dense matches with reference ``i``: query pixels ``[K, 2]`` and world points ``[K, 3]`` (valid only)."""
        from pose_addon.core.dataset import Dataset

        if self._ds is None:
            from .database import reference_digest

            ds = Dataset.load(self.db.dataset)
            if reference_digest(ds, self.db.conf.get("split")) != self.db.dataset_digest:
                raise ValueError(f"dataset {ds.root} changed since {self.db.path} was built from it: rebuild it")
            self._ds = ds
        fr = self._ds.frame(self.db.ids[i])
        gray_r = load_image_gray(self._ds.path(fr.image))
        xq, xr = self.matcher.match_images(gray_q, gray_r)
        p3, valid = lifting.lift_keypoints(xr, self._ds.read_depth(fr), fr.intrinsics, fr.cam_from_world,
                                           self.db.conf["lifting"])
        return xq[valid], p3[valid]

    def prepare(self, image: Path | str | np.ndarray, intrinsics: Intrinsics) -> dict:
        """Query state: grey image, features, undistorted keypoints and intrinsics (after downscaling)."""
        if isinstance(image, (str, Path)):
            gray = load_image_gray(image)
            rgb = None if self.features_sift else cv2.cvtColor(cv2.imread(str(image), cv2.IMREAD_COLOR),
                                                               cv2.COLOR_BGR2RGB)
        else:
            arr = np.asarray(image)
            gray = to_gray(arr)
            rgb = arr if arr.ndim == 3 else None
        if gray.shape != (intrinsics.height, intrinsics.width):
            raise ValueError(f"image is {gray.shape[1]}x{gray.shape[0]} but the intrinsics are for "
                             f"{intrinsics.width}x{intrinsics.height}")
        gray2, intr2 = _downscale(gray, intrinsics, self.conf["resize_max"])
        if rgb is not None and gray2.shape != gray.shape:
            rgb = cv2.resize(rgb, (gray2.shape[1], gray2.shape[0]), interpolation=cv2.INTER_AREA)
        feats = None
        if self.matcher.conf["features"] is not None:
            feats = self.matcher.extract(rgb if rgb is not None else gray2) if not self.features_sift else \
                sift.extract(gray2, self.db.conf["features"])
        return {"gray": gray2, "rgb": rgb, "feats": feats, "intrinsics": intr2}

    def correspondences(self, state: dict, refs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """2D (distorted-free pixels) ``[K, 2]`` and 3D world ``[K, 3]`` correspondences with references ``refs``."""
        p2, p3 = [], []
        feats = state["feats"]
        for i in refs:
            if self.matcher.dense:
                xq, pts = self._dense_ref(int(i), state["gray"])
                p2.append(_undistort(xq, state["intrinsics"])[0])
                p3.append(pts)
                continue
            rf, pts = self._ref(int(i))
            m = self.matcher.match(feats, rf)
            p2.append(_undistort(feats.keypoints[m[:, 0]], state["intrinsics"])[0])
            p3.append(pts[m[:, 1]])
        return (np.concatenate(p2) if p2 else np.zeros((0, 2)), np.concatenate(p3) if p3 else np.zeros((0, 3)))

    def localize(self, image: Path | str | np.ndarray, intrinsics: Intrinsics) -> LocalizationResult:
        """Pose of a query image.

        Args:
            image: path of an image file, or a grey/RGB uint8 array ``[H, W(, 3)]``.
            intrinsics: the query's intrinsics (OpenCV pixel convention, undistorted).

        Raises:
            extractors.ImageReadError: the image file is missing or unreadable.
        """
        c = self.conf
        t0 = time.perf_counter()
        st = self.prepare(image, intrinsics)
        pin = _pinhole(st["intrinsics"])
        t1 = time.perf_counter()
        k, k_fb = int(c["k"]), int(c["k_fallback"] or 0)
        idx = self.retrieve(st["gray"], st["feats"].descriptors if st["feats"] is not None else None,
                            max(k, k_fb, int(c["verify_k"])), st["rgb"])
        t2 = time.perf_counter()
        thr = float(c["threshold_px"]) * max(pin.width, pin.height) / 640.0
        p2, p3 = [], []
        t_match = t_pnp = 0.0
        used = 0
        for stop in (k, k_fb) if k_fb > k else (k,):
            ta = time.perf_counter()
            a, b = self.correspondences(st, idx[used:stop])
            p2.append(a)
            p3.append(b)
            used = min(stop, len(idx))
            P2, P3 = np.concatenate(p2), np.concatenate(p3)
            tb = time.perf_counter()
            res = solve_pnp(P2, P3, pin, thr, c["pnp_backend"], int(c["max_iterations"]))
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
        rival = None
        if ok:  # a different pose among the matches of more references (see rival_pose)
            V2, V3 = P2, P3
            if int(c["verify_k"]) > used:
                a, b = self.correspondences(st, idx[used:int(c["verify_k"])])
                V2, V3 = np.concatenate([P2, a]), np.concatenate([P3, b])
            rival = rival_pose(V2, V3, pin, res.cam_from_world, thr, c["pnp_backend"])
        return LocalizationResult(ok, res.cam_from_world if ok else None, res.n_inliers, len(P2),
                                  res.reproj_error_px, retrieved, timings, msg, _overlay_points(P3, res, ok), rival)


MAX_OVERLAY_POINTS = 400


def _overlay_points(points3d: np.ndarray, res, ok: bool) -> Optional[np.ndarray]:
    """An evenly spread subset of the inlier 3D points, for drawing over the photo (None when not localized)."""
    if not ok or res.inliers is None:
        return None
    pts = points3d[np.asarray(res.inliers, bool)]
    step = max(1, len(pts) // MAX_OVERLAY_POINTS)
    return pts[::step][:MAX_OVERLAY_POINTS]


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


def _pinhole(intr: Intrinsics) -> Intrinsics:
    """The same intrinsics without lens distortion (what undistorted keypoints are expressed in)."""
    return Intrinsics(intr.width, intr.height, intr.fx, intr.fy, intr.cx, intr.cy)


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


#: Parameters of :class:`EnsembleLocalizer`.
ensemble_conf: dict[str, Any] = {
    "members": ["sift", "xfeat+lighterglue"],  # matcher presets; each needs its database (see db_paths)
    "mode": "pool",  # "pool": one PnP on the deduplicated union; "best": per query, the member with most inliers
    "dedup_px": 1.0,  # pooled correspondences closer than this in 2D and dedup_m in 3D count once
    "dedup_m": 0.02,
}


def dedup_correspondences(p2: np.ndarray, p3: np.ndarray, px: float = 1.0, m: float = 0.02) -> np.ndarray:
    """Indices of the first of each group of correspondences equal up to ``px`` pixels and ``m`` metres."""
    if len(p2) == 0:
        return np.zeros(0, np.int64)
    key = np.concatenate([np.floor(p2 / px), np.floor(p3 / m)], 1).astype(np.int64)
    _, first = np.unique(key, axis=0, return_index=True)
    return np.sort(first)


class EnsembleLocalizer:
    """Several matchers on the same query and the same retrieved references (the first member's retrieval).

    ``mode="pool"`` pools every member's 2D-3D correspondences (deduplicated) and solves PnP once (with the
    fallback to ``k_fallback`` references like :class:`Localizer`); ``mode="best"`` localizes with each member
    and keeps the pose with most inliers.
    """

    def __init__(self, db_paths: dict[str, Path | str], conf: Optional[dict] = None,
                 ensemble: Optional[dict] = None):
        """Args:
            db_paths: per member preset, its feature database.
            conf: :data:`default_conf` overrides shared by the members.
            ensemble: :data:`ensemble_conf` overrides.
        """
        self.e = {**ensemble_conf, **(ensemble or {})}
        if self.e["mode"] not in ("pool", "best"):
            raise ValueError(f"unknown ensemble mode {self.e['mode']!r}; choose 'pool' or 'best'")
        missing = [mb for mb in self.e["members"] if mb not in db_paths]
        if missing:
            raise ValueError(f"no database for ensemble members {missing}")
        self.members = [Localizer(db_paths[mb], {**(conf or {}), "matcher": mb}) for mb in self.e["members"]]
        self.conf = self.members[0].conf

    def close(self) -> None:
        for m in self.members:
            m.close()

    def __enter__(self) -> EnsembleLocalizer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def localize(self, image: Path | str | np.ndarray, intrinsics: Intrinsics) -> LocalizationResult:
        """Pose of a query (see :meth:`Localizer.localize`); ``message`` says which member(s) gave it."""
        t0 = time.perf_counter()
        if self.e["mode"] == "best":
            rs = [m.localize(image, intrinsics) for m in self.members]
            j = int(np.argmax([r.n_inliers if r.success else -1 for r in rs]))
            r = rs[j]
            r.message = f"{self.e['members'][j]}: {r.message}"
            r.timings = {"total": time.perf_counter() - t0, **{f"{n}": x.timings["total"]
                                                              for n, x in zip(self.e["members"], rs)}}
            return r
        c = self.conf
        states = [m.prepare(image, intrinsics) for m in self.members]
        lead, st0 = self.members[0], states[0]
        pin = _pinhole(st0["intrinsics"])
        k, k_fb = int(c["k"]), int(c["k_fallback"] or 0)
        idx = lead.retrieve(st0["gray"], st0["feats"].descriptors if st0["feats"] is not None else None,
                            max(k, k_fb, int(c["verify_k"])), st0["rgb"])
        thr = float(c["threshold_px"]) * max(pin.width, pin.height) / 640.0
        p2, p3, used = [], [], 0
        for stop in (k, k_fb) if k_fb > k else (k,):
            for m, st in zip(self.members, states):
                a, b = m.correspondences(st, idx[used:stop])
                p2.append(a)
                p3.append(b)
            used = min(stop, len(idx))
            P2, P3 = np.concatenate(p2), np.concatenate(p3)
            keep = dedup_correspondences(P2, P3, float(self.e["dedup_px"]), float(self.e["dedup_m"]))
            res = solve_pnp(P2[keep], P3[keep], pin, thr, c["pnp_backend"], int(c["max_iterations"]))
            ok = res.success and res.n_inliers >= int(c["min_inliers"])
            if ok or used >= len(idx):
                break
        rival = None
        if ok:  # a different pose among the matches of more references (see rival_pose)
            v2, v3 = list(p2), list(p3)
            for m, st in zip(self.members, states) if int(c["verify_k"]) > used else ():
                a, b = m.correspondences(st, idx[used:int(c["verify_k"])])
                v2.append(a)
                v3.append(b)
            V2, V3 = np.concatenate(v2), np.concatenate(v3)
            vk = dedup_correspondences(V2, V3, float(self.e["dedup_px"]), float(self.e["dedup_m"]))
            rival = rival_pose(V2[vk], V3[vk], pin, res.cam_from_world, thr, c["pnp_backend"])
        return LocalizationResult(ok, res.cam_from_world if ok else None, res.n_inliers, len(keep),
                                  res.reproj_error_px, [lead.db.ids[int(i)] for i in idx[:used]],
                                  {"total": time.perf_counter() - t0}, res.message if ok else
                                  (res.message if not res.success else f"only {res.n_inliers} inliers"),
                                  _overlay_points(P3[keep], res, ok), rival)
