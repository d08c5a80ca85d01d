"""Estimate the camera of photos (no ground truth) with any registered method: the path behind the worker's
``estimate`` job and the extension's "Estimate Camera from Photo".

Every photo is read with its EXIF orientation applied (:func:`ml_backend.intrinsics.load_photo`), gets its
intrinsics (:mod:`ml_backend.intrinsics`) and goes through the method opened once
(:func:`ml_backend.methods.interface.open_method`). One row per photo: ``{"image", "success", "cam_from_world"
(4x4, OpenCV axes, render world) or None, "matrix_world" (Blender), "intrinsics", "n_inliers", "n_matches",
"inlier_ratio", "confidence", "reproj_error_px", "retrieved", "timings", "message", "reason", "inliers_3d",
"method"}`` (:func:`estimate_photo`, also behind the worker's ``estimate_pose`` request); a photo that cannot be
read or localized is a row with ``success`` false and the reason, and the batch goes on.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import numpy as np

from pose_addon.core.cameras import Intrinsics, blender_matrix_world_from_cam_from_world
from pose_addon.core.dataset import json_safe

from .intrinsics import IntrinsicsError, load_photo, resolve
from .methods.interface import MATCHING_METHODS, MatchingOptions, Method, open_method

__all__ = ["IMAGE_EXTENSIONS", "list_photos", "estimate_photos", "estimate_photo", "failed_row",
           "method_options"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


def list_photos(path: str | Path) -> list[Path]:
    """A photo, or the photos of a folder (sorted); raises FileNotFoundError / ValueError with the reason."""
    p = Path(path)
    if p.is_dir():
        photos = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_EXTENSIONS)
        if not photos:
            raise ValueError(f"no photos ({', '.join(IMAGE_EXTENSIONS)}) in {p}")
        return photos
    if not p.is_file():
        raise FileNotFoundError(f"photo not found: {p}")
    return [p]


def method_options(method: str, conf: dict) -> dict:
    """The method options in a job's ``conf``: for matching methods the :class:`MatchingOptions` fields found
    there (``conf["options"]`` first; with ``+refine`` also ``refine`` and ``scene_glb``), for the others the
    whole conf."""
    if method.removesuffix("+refine") not in MATCHING_METHODS:
        return {k: v for k, v in conf.items() if k not in ("options",)} | dict(conf.get("options") or {})
    names = {f.name for f in dataclasses.fields(MatchingOptions)}
    if method.endswith("+refine"):
        names |= {"refine", "scene_glb"}
    return {**{k: v for k, v in conf.items() if k in names}, **dict(conf.get("options") or {})}


def estimate_photos(path: str | Path, method: str, conf: dict, intrinsics: dict,
                    progress: Optional[Callable[[float, str], None]] = None) -> list[dict]:
    """Estimate every photo of ``path`` with ``method``; rows are JSON-safe (see the module docstring).

    Args:
        path: a photo or a folder of photos.
        method: a registry name.
        conf: ``dataset`` (rendered references) and/or ``database``, ``workdir``, method options (``options`` or
            the option names at the top level; other methods read their own keys: ``checkpoint``, ``model``...).
        intrinsics: a spec for :func:`ml_backend.intrinsics.resolve` (explicit, exif, preset, calibration, guess,
            estimate: the focal length is solved by the method).
    """
    photos = list_photos(path)
    focal = intrinsics.get("source") == "estimate"
    rows = []
    with open_method(method, conf.get("dataset"), Path(conf.get("workdir", ".")), method_options(method, conf),
                     database=conf.get("database"), progress=bool(conf.get("progress", False))) as m:
        for i, p in enumerate(photos):
            try:
                rgb = load_photo(p)
                intr = resolve(p, intrinsics)
                row = estimate_photo(m, p, rgb, intr, estimate_focal=focal)
            except (IntrinsicsError, ValueError) as err:  # this photo; a missing model file stops the batch
                row = failed_row(p, method, str(err))
            rows.append(row)
            if progress:
                progress((i + 1) / len(photos), f"{p.name}: {row['n_inliers']} inliers")
    return rows


def failed_row(image: str | Path, method: str, reason: str) -> dict:
    """The row of a photo that could not be estimated (unreadable, no intrinsics): ``success`` false, the reason."""
    return {"image": str(image), "success": False, "cam_from_world": None, "matrix_world": None, "n_inliers": 0,
            "method": method, "message": reason, "reason": reason}


def estimate_photo(m: Method, image: str | Path, rgb: np.ndarray, intrinsics: Intrinsics,
                   estimate_focal: bool = False, max_side: Optional[int] = None) -> dict:
    """The JSON-safe row of one photo estimated with the opened method ``m`` (see the module docstring).

    Args:
        image: the photo's path (reported in the row).
        rgb: its pixels, ``[H, W, 3]`` uint8, EXIF orientation applied (:func:`ml_backend.intrinsics.load_photo`).
        intrinsics: OpenCV pixels at ``rgb``'s size (the focal length is the starting guess when
            ``estimate_focal``).
        max_side: when given and ``rgb`` is larger, the method sees the photo downscaled to this longest side
            (intrinsics scaled alike); the row's intrinsics and reprojection error are in the photo's own pixels.
    """
    h, w = rgb.shape[:2]
    if (intrinsics.width, intrinsics.height) != (w, h):
        raise ValueError(f"photo {image} is {w}x{h} but the intrinsics are for {intrinsics.width}x"
                         f"{intrinsics.height}")
    sx = sy = 1.0
    if max_side is not None and max(w, h) > max_side:
        import cv2

        s = max_side / max(w, h)
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        sx, sy = nw / w, nh / h
        rgb = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
        intrinsics = dataclasses.replace(intrinsics.scaled(sx, sy), width=nw, height=nh)
    e = m.estimate(rgb, intrinsics, estimate_focal=estimate_focal)
    intr = e.intrinsics
    if (sx, sy) != (1.0, 1.0):  # back to the photo's own pixels
        intr = dataclasses.replace(intr.scaled(1 / sx, 1 / sy), width=w, height=h)
    T = e.cam_from_world
    row = {"image": str(image), "success": e.success, "cam_from_world": T,
           "matrix_world": None if T is None else blender_matrix_world_from_cam_from_world(np.asarray(T)),
           "intrinsics": intr.to_dict(), "n_inliers": e.n_inliers, "n_matches": e.n_matches,
           "inlier_ratio": e.inlier_ratio, "confidence": e.confidence, "reproj_error_px": e.reproj_error_px / sx,
           "retrieved": e.retrieved, "timings": {"total": e.time_s, **e.extras.get("timings", {})},
           "message": e.message or e.reason, "reason": e.reason or None, "inliers_3d": e.inliers_3d,
           "method": m.name}
    row.update({k: v for k, v in e.extras.items() if k not in row})  # the method's own fields
    return json_safe(row)
