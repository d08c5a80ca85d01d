"""One shape for every method: open it once with its options, then estimate image after image.

    with open_method("sift", dataset, workdir, {"min_inliers": 20}) as m:
        est = m.estimate(rgb, intrinsics)                  # known intrinsics
        est = m.estimate(rgb, guess, estimate_focal=True)  # focal length solved too

``rgb`` is an ``[H, W, 3]`` uint8 array (EXIF orientation already applied) or an image path; ``intrinsics``
are OpenCV pixels at the image's size. :class:`Estimate` holds ``cam_from_world`` (4x4, OpenCV camera axes) in
the dataset's render world, the intrinsics used (or solved), inlier counts and a confidence; a result that fails
the acceptance rule below carries ``success=False`` and the reason, never a pose.

**Acceptance rule** (matching methods, :class:`MatchingOptions`): a pose is accepted when

* PnP-RANSAC keeps at least ``min_inliers`` inliers (``min_inliers_focal`` when the focal length is solved: a
  focal fitted to few points is unreliable),
* the inliers are at least ``min_inlier_ratio`` of the pooled 2D-3D matches,
* their mean reprojection error is at most ``max_reproj_error_px`` (at 640 px image width, scaled with the
  image like the RANSAC threshold),
* fewer than ``strong_inliers`` inliers must spread over the photo: the box holding the central 90% of them
  (5th-95th percentiles in x and y) covers at least ``min_inlier_coverage`` of the image (a few inliers bunched
  on one small patch, typically one facade matched from the wrong side, give confident but wrong poses), and be
  at least ``min_inlier_ratio_weak`` of the matches (a symmetric house matched from its mirrored side gave 29
  inliers at a ratio of 0.22, 180 deg off, with its true side never retrieved),
* the focal length (given or solved) gives a horizontal field of view inside ``hfov_range_deg``,
* no different pose is nearly as well supported: PnP on the matches the pose leaves unexplained must not find
  another pose (more than 5 deg or a tenth of the scene depth away) with at least ``ambiguity_ratio`` times its
  inliers (and ``min_inliers``). A symmetric or repeated building fits a photo in two places; which one wins is
  then a guess, so the photo is reported as ambiguous instead,
* when the focal length is solved, the inliers' depths span a ratio of at least ``min_depth_ratio_focal``
  (95th over 5th percentile): seen at one depth, focal length and distance trade off and the solve is weak.

``confidence`` = min(1, n_inliers / 100) x min(1, inlier_ratio / 0.5): 1 for a well-supported pose.

The benchmark (``run-method``), the ``localize`` CLI and the worker's ``estimate`` / ``localize`` jobs all go
through :func:`open_method`; :func:`describe_methods` lists the methods and their options for the extension.
"""
from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from pose_addon.core.cameras import Intrinsics
from pose_addon.core.dataset import Dataset

from . import MATCHING_METHODS, REGISTRY, MethodUnavailable, for_photos, get_method

if TYPE_CHECKING:
    from ..matching.localize import Rival

__all__ = ["Estimate", "MatchingOptions", "GenericOptions", "Method", "MatchingMethod", "open_method",
           "describe_methods", "MATCHING_METHODS", "accept"]


@dataclass
class Estimate:
    """What a method says about one image.

    ``cam_from_world``: ``[4, 4]`` OpenCV camera axes, world = the dataset's render world; None when failed.
    ``intrinsics``: those used, or the solved ones when the focal length was estimated.
    """

    success: bool
    cam_from_world: Optional[np.ndarray]
    intrinsics: Intrinsics
    n_inliers: int = 0
    n_matches: int = 0
    inlier_ratio: float = 0.0
    confidence: float = 0.0
    reproj_error_px: float = float("inf")
    time_s: float = 0.0
    reason: str = ""  # why it failed; empty on success
    message: str = ""  # what the method reports (solver, members, ...)
    retrieved: list = field(default_factory=list)
    inliers_3d: Optional[np.ndarray] = None  # [M, 3] world points of (some) inliers, for overlays
    extras: dict = field(default_factory=dict)


@dataclass
class MatchingOptions:
    """Options of the matching methods (defaults suit rendered references of a building)."""

    k: int = 3  # retrieved references whose matches are pooled
    k_fallback: int = 8  # more references when the top-k give too few inliers (0 = never)
    threshold_px: float = 2.5  # RANSAC threshold at 640 px width (scaled with the image)
    min_inliers: int = 12
    min_inliers_focal: int = 25  # when the focal length is solved
    min_depth_ratio_focal: float = 1.5  # 95th / 5th percentile of the inliers' depths, focal length solved
    min_inlier_ratio: float = 0.05
    max_reproj_error_px: float = 2.5  # at 640 px width, scaled like the threshold
    min_inlier_coverage: float = 0.2  # share of the image covered by the central 90% of the inliers ...
    strong_inliers: int = 50  # ... required of poses with fewer inliers than this
    min_inlier_ratio_weak: float = 0.25  # inlier ratio required of poses with fewer than strong_inliers inliers
    hfov_range_deg: tuple = (15.0, 120.0)  # plausible horizontal field of view
    ambiguity_ratio: float = 0.5  # a different pose with this share of the inliers makes the photo ambiguous (0: off)
    verify_k: int = 8  # the rival pose is sought among the matches of this many references (<= k: no extra matching)
    pnp_backend: str = "poselib"
    resize_max: int = 1600  # longer images are downscaled to this longest side
    retrieval: str = "votes"  # "votes", "global" or "net"
    localize: dict = field(default_factory=dict)  # further overrides of ml_backend.matching.localize.default_conf
    matcher: dict = field(default_factory=dict)  # overrides of the matcher preset
    ensemble: dict = field(default_factory=dict)  # overrides of ml_backend.matching.localize.ensemble_conf


@dataclass
class GenericOptions:
    """Options of the other methods: their own conf, passed through (see each module's docstring)."""

    conf: dict = field(default_factory=dict)


def _options(cls, given: Any):
    if given is None:
        return cls()
    if isinstance(given, cls):
        return given
    if not isinstance(given, dict):
        raise TypeError(f"options must be a dict or {cls.__name__}, got {type(given).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(given) - names)
    if unknown and cls is GenericOptions:
        return GenericOptions(conf=dict(given))
    if unknown:
        raise ValueError(f"unknown options {unknown}; {cls.__name__} has {sorted(names)}")
    vals = {k: (tuple(v) if isinstance(getattr(cls(), k), tuple) else v) for k, v in given.items()}
    return cls(**vals)


def inlier_coverage(cam_from_world: Optional[np.ndarray], points3d: Optional[np.ndarray], intr: Intrinsics) -> float:
    """Share of the image covered by the 5th-95th percentile box of the inliers ``points3d [M, 3]`` projected."""
    from pose_addon.core.cameras import project_points

    if cam_from_world is None or points3d is None or len(points3d) < 2:
        return 0.0
    uv, z = project_points(intr.K, cam_from_world, np.asarray(points3d, np.float64))
    uv = uv[z > 0]
    if len(uv) < 2:
        return 0.0
    lo, hi = np.percentile(uv, 5, axis=0), np.percentile(uv, 95, axis=0)
    return float(np.prod(np.clip(hi - lo, 0, None)) / (intr.width * intr.height))


def accept(n_inliers: int, n_matches: int, reproj_px: float, intr: Intrinsics, opts: MatchingOptions,
           focal_solved: bool, coverage: float = 1.0, rival: Optional[Rival] = None) -> tuple[str, float, float]:
    """The acceptance rule: ``(reason or "", inlier_ratio, confidence)`` (see the module docstring)."""
    ratio = n_inliers / n_matches if n_matches else 0.0
    conf = min(1.0, n_inliers / 100.0) * min(1.0, ratio / 0.5)
    scale = max(intr.width, intr.height) / 640.0
    need = opts.min_inliers_focal if focal_solved else opts.min_inliers
    hfov = float(np.degrees(2 * np.arctan(intr.width / (2 * intr.fx)))) if intr.fx > 0 else float("nan")
    if n_inliers < need:
        return f"only {n_inliers} inliers (< {need}{' with the focal length solved' if focal_solved else ''})", \
            ratio, conf
    if ratio < opts.min_inlier_ratio:
        return f"inlier ratio {ratio:.3f} < {opts.min_inlier_ratio}", ratio, conf
    if not reproj_px <= opts.max_reproj_error_px * scale:
        return f"reprojection error {reproj_px:.2f} px > {opts.max_reproj_error_px * scale:.2f} px", ratio, conf
    if coverage < opts.min_inlier_coverage and n_inliers < opts.strong_inliers:
        return (f"inliers cover {coverage:.0%} of the image (< {opts.min_inlier_coverage:.0%}): too bunched to "
                "trust"), ratio, conf
    if n_inliers < opts.strong_inliers and ratio < opts.min_inlier_ratio_weak:
        return (f"weak pose: {n_inliers} inliers (< {opts.strong_inliers}) at a ratio of {ratio:.2f} "
                f"(< {opts.min_inlier_ratio_weak})"), ratio, conf
    lo, hi = opts.hfov_range_deg
    if not lo <= hfov <= hi:
        return (f"implausible focal length {intr.fx:.1f} px (horizontal field of view {hfov:.1f} deg outside "
                f"{lo:g}-{hi:g} deg)"), ratio, conf
    if rival is not None and opts.ambiguity_ratio > 0 and \
            rival.n_inliers >= max(opts.min_inliers, opts.ambiguity_ratio * n_inliers):
        return (f"ambiguous: another pose {rival.rotation_deg:.0f} deg and {rival.centre_m:.1f} m away fits "
                f"{rival.n_inliers} matches against {n_inliers} (a symmetric or repeated building?)"), ratio, conf
    return "", ratio, conf


class Method:
    """Base of every method: ``estimate`` image after image, ``close`` (or use as a context manager)."""

    name: str = ""
    Options: type = GenericOptions

    def estimate(self, image, intrinsics: Intrinsics, estimate_focal: bool = False) -> Estimate:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> Method:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class MatchingMethod(Method):
    """Retrieval + local matching + lifting + PnP (any matcher preset, or the ensemble); databases are built or
    reused from ``dataset`` (never one of other references)."""

    Options = MatchingOptions

    def __init__(self, name: str, dataset: Optional[Dataset], workdir: Path, options: MatchingOptions,
                 database: Optional[str] = None, progress: bool = False):
        from .matching import open_localizer

        self.name, self.opts = name, options
        lconf = {**options.localize, "k": options.k, "k_fallback": options.k_fallback,
                 "threshold_px": options.threshold_px, "min_inliers": options.min_inliers,
                 "pnp_backend": options.pnp_backend, "resize_max": options.resize_max, "verify_k": options.verify_k,
                 "retrieval": options.retrieval}
        conf = {"localize": lconf, "progress": progress, "matcher": options.matcher or None,
                "ensemble": options.ensemble or None}
        if database:
            conf["database"] = database
        self.loc = open_localizer(name, dataset, Path(workdir), conf)

    def close(self) -> None:
        self.loc.close()

    def _correspondences(self, image, intr: Intrinsics):
        """Pooled 2D-3D matches of the top ``k_fallback`` (or ``k``) references: (p2, p3, state intrinsics, ids)."""
        from ..matching.localize import dedup_correspondences

        members = getattr(self.loc, "members", None) or [self.loc]
        states = [m.prepare(image, intr) for m in members]
        lead, st0 = members[0], states[0]
        n = max(self.opts.k, self.opts.k_fallback or 0)
        idx = lead.retrieve(st0["gray"], st0["feats"].descriptors if st0["feats"] is not None else None, n,
                            st0["rgb"])
        p2, p3 = zip(*[m.correspondences(st, idx) for m, st in zip(members, states)])
        P2, P3 = np.concatenate(p2), np.concatenate(p3)
        if len(members) > 1:
            e = self.loc.e
            keep = dedup_correspondences(P2, P3, float(e["dedup_px"]), float(e["dedup_m"]))
            P2, P3 = P2[keep], P3[keep]
        return P2, P3, st0["intrinsics"], [lead.db.ids[int(i)] for i in idx]

    def estimate(self, image, intrinsics: Intrinsics, estimate_focal: bool = False) -> Estimate:
        t0 = time.perf_counter()
        if not estimate_focal:
            r = self.loc.localize(image, intrinsics)
            cov = inlier_coverage(r.cam_from_world, r.inliers_3d, intrinsics)
            reason, ratio, conf = accept(r.n_inliers, r.n_matches, r.reproj_error_px, intrinsics, self.opts, False,
                                         cov, r.rival)
            if not r.success:
                reason = r.message or "not localized"
            ok = not reason
            return Estimate(ok, r.cam_from_world if ok else None, intrinsics, r.n_inliers, r.n_matches, ratio,
                            conf if ok else 0.0, r.reproj_error_px, time.perf_counter() - t0, reason, r.message,
                            list(r.retrieved), r.inliers_3d if ok else None,
                            {"timings": dict(r.timings), "coverage": cov})
        return self._estimate_focal(image, intrinsics, t0)

    def _estimate_focal(self, image, guess: Intrinsics, t0: float) -> Estimate:
        from ..matching.localize import _overlay_points, rival_pose
        from ..pnp import solve_pnp, solve_pnp_focal

        P2, P3, pin, retrieved = self._correspondences(image, guess)
        s = max(pin.width, pin.height) / 640.0
        thr = self.opts.threshold_px * s
        res, f = solve_pnp_focal(P2, P3, pin.width, pin.height, pin.cx, pin.cy, pin.fx, thr)
        scale = guess.width / pin.width  # back to the photo's own pixels
        if res.success:
            # polish: one more calibrated RANSAC at the solved focal length with the method's own PnP backend
            at = Intrinsics(pin.width, pin.height, f, f, pin.cx, pin.cy)
            pol = solve_pnp(P2, P3, at, thr, self.opts.pnp_backend)
            if pol.success and pol.n_inliers >= res.n_inliers:
                res = pol
        est = Intrinsics(guess.width, guess.height, f * scale, f * scale, guess.cx, guess.cy) if res.success \
            else guess
        pts = _overlay_points(P3, res, res.success)
        cov = inlier_coverage(res.cam_from_world, pts, est)
        rival = None
        if res.success and res.cam_from_world is not None:
            at = Intrinsics(pin.width, pin.height, f, f, pin.cx, pin.cy)
            rival = rival_pose(P2, P3, at, res.cam_from_world, thr, self.opts.pnp_backend)
        reason, ratio, conf = accept(res.n_inliers, len(P2), res.reproj_error_px * scale, est, self.opts, True, cov,
                                     rival)
        depth_ratio = _depth_ratio(res.cam_from_world, pts)
        if not reason and res.success and depth_ratio < self.opts.min_depth_ratio_focal:
            reason = (f"the inliers lie at nearly one depth (ratio {depth_ratio:.2f} < "
                      f"{self.opts.min_depth_ratio_focal}): the focal length is not determined")
        if not res.success:
            reason = res.message
        ok = not reason
        return Estimate(ok, res.cam_from_world if ok else None, est, res.n_inliers, len(P2), ratio,
                        conf if ok else 0.0, res.reproj_error_px * scale, time.perf_counter() - t0, reason,
                        res.message, retrieved, pts if ok else None,
                        {"focal_solved": True, "coverage": cov, "depth_ratio": depth_ratio})


def _depth_ratio(cam_from_world: Optional[np.ndarray], points3d: Optional[np.ndarray]) -> float:
    """95th over 5th percentile of the depths of ``points3d [M, 3]`` in the camera (0 when undefined)."""
    if cam_from_world is None or points3d is None or len(points3d) < 2:
        return 0.0
    z = (np.asarray(points3d, np.float64) @ cam_from_world[:3, :3].T + cam_from_world[:3, 3])[:, 2]
    z = z[z > 0]
    return float(np.percentile(z, 95) / np.percentile(z, 5)) if len(z) >= 2 else 0.0


class RowsMethod(Method):
    """A method whose module estimates photo files (``estimate_images``): regression, keypoints, retrieval_nn.
    Arrays are written to a temporary PNG first; the focal length is solved only by methods that can."""

    def __init__(self, name: str, dataset: Optional[Dataset], workdir: Path, options: GenericOptions,
                 database: Optional[str] = None, progress: bool = False):
        self.name = name
        self.module = get_method(name)
        if not hasattr(self.module, "estimate_images"):
            raise MethodUnavailable(f"method {name!r} cannot estimate single photos (it has no estimate_images)")
        self.conf = {**options.conf, "workdir": str(workdir), "progress": progress}
        if dataset is not None:
            self.conf.setdefault("dataset", str(dataset.root))
        if database:
            self.conf.setdefault("database", database)
        self._tmp = tempfile.TemporaryDirectory(prefix="method_")

    def close(self) -> None:
        self._tmp.cleanup()

    def estimate(self, image, intrinsics: Intrinsics, estimate_focal: bool = False) -> Estimate:
        t0 = time.perf_counter()
        path = image
        if isinstance(image, np.ndarray):
            import cv2

            path = str(Path(self._tmp.name) / "image.png")
            arr = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
            if not cv2.imwrite(path, arr):
                raise OSError(f"cannot write {path}")
        conf = {**self.conf, "estimate_focal": bool(estimate_focal)}
        row = self.module.estimate_images([str(path)], [intrinsics], conf, None)[0]
        ok = bool(row.get("success"))
        intr = Intrinsics.from_dict(row["intrinsics"]) if row.get("intrinsics") else intrinsics
        T = np.asarray(row["cam_from_world"], np.float64) if ok and row.get("cam_from_world") is not None else None
        n = int(row.get("n_inliers", row.get("inliers", 0)) or 0)
        return Estimate(ok and T is not None, T, intr, n, int(row.get("n_matches", n) or 0), 1.0 if ok else 0.0,
                        float(row.get("confidence", 1.0 if ok else 0.0)),
                        float(row.get("reproj_error_px", float("nan")) or float("nan")), time.perf_counter() - t0,
                        "" if ok else (row.get("message") or "not localized"), row.get("message", ""),
                        list(row.get("retrieved", [])), row.get("inliers_3d"),
                        {k: v for k, v in row.items() if k not in _ROW_KEYS})  # the method's own fields


#: fields of an ``estimate_images`` row that :class:`Estimate` holds itself
_ROW_KEYS = ("image", "success", "cam_from_world", "intrinsics", "n_inliers", "inliers", "n_matches", "confidence",
             "reproj_error_px", "message", "retrieved", "inliers_3d", "matrix_world", "method")


def open_method(name: str, dataset: Optional[Dataset | str | Path], workdir: Path | str,
                options: Any = None, database: Optional[str] = None, progress: bool = False) -> Method:
    """Open method ``name`` on ``dataset``'s references with ``options`` (a dict or the method's Options).

    Raises:
        KeyError: unknown method. MethodUnavailable: it cannot run here (package, weights).
        ValueError: unknown option names.
    """
    if name not in REGISTRY:
        raise KeyError(f"unknown method {name!r}; available: {', '.join(REGISTRY)}")
    ds = Dataset.load(dataset) if isinstance(dataset, (str, Path)) else dataset
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if name.endswith("+refine"):
        from .refined import RefinedMethod, scene_of

        opts = dict(options or {}) if not dataclasses.is_dataclass(options) else options
        refine_conf, glb = (opts.pop("refine", None), opts.pop("scene_glb", None)) if isinstance(opts, dict) \
            else (None, None)
        scene = scene_of(ds, glb)
        return RefinedMethod(open_method(name.removesuffix("+refine"), ds, workdir, opts, database, progress),
                             scene, refine_conf)
    if name in MATCHING_METHODS:
        if ds is None and database:  # the dataset the database was built from, when it is still there
            from ..matching.database import FeatureDatabase

            with FeatureDatabase(database) as db:
                source = db.dataset
            if source and (Path(source) / "manifest.json").is_file():
                ds = Dataset.load(source)
        if ds is None and not (database and name == "sift"):
            raise FileNotFoundError(f"{name} needs a dataset (the rendered references with depth)")
        return MatchingMethod(name, ds, workdir, _options(MatchingOptions, options), database, progress)
    return RowsMethod(name, ds, workdir, _options(GenericOptions, options), database, progress)


def describe_methods() -> list[dict]:
    """Every registered method with its options and their defaults (JSON-safe), for a worker request;
    ``photos`` is false for the benchmark's bounds and baselines that cannot localize a user's photo."""
    out = []
    for name in REGISTRY:
        base = name.removesuffix("+refine")
        cls = MatchingOptions if base in MATCHING_METHODS else GenericOptions
        opts = {f.name: (list(v) if isinstance(v, tuple) else v)
                for f in dataclasses.fields(cls) for v in [getattr(cls(), f.name)]}
        if base != name:
            opts["refine"] = {}  # overrides of ml_backend.refine.default_conf
        out.append({"name": name, "kind": "matching" if base in MATCHING_METHODS else "other",
                    "estimate_focal": base in MATCHING_METHODS, "photos": for_photos(name), "options": opts})
    return out
