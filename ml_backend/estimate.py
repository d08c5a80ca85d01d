"""Estimate the camera of photos (no ground truth) with any registered method: the path behind the worker's
``estimate`` job and the extension's "Estimate Camera from Photo".

Every photo is read with its EXIF orientation applied (:func:`ml_backend.intrinsics.load_photo`), gets its
intrinsics (:mod:`ml_backend.intrinsics`) and goes through the method opened once
(:func:`ml_backend.methods.interface.open_method`). One row per photo: ``{"image", "success", "cam_from_world"
(4x4, OpenCV axes, render world) or None, "matrix_world" (Blender), "intrinsics", "n_inliers", "inlier_ratio",
"confidence", "reproj_error_px", "retrieved", "timings", "message", "reason", "inliers_3d", "method"}``; a photo
that cannot be read or localized is a row with ``success`` false and the reason, and the batch goes on.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import numpy as np

from pose_addon.core.cameras import blender_matrix_world_from_cam_from_world
from pose_addon.core.dataset import json_safe

from .intrinsics import IntrinsicsError, load_photo, resolve
from .methods.interface import MATCHING_METHODS, MatchingOptions, open_method

__all__ = ["IMAGE_EXTENSIONS", "list_photos", "estimate_photos", "method_options"]

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
    there (``conf["options"]`` first), for the others the whole conf."""
    if method not in MATCHING_METHODS:
        return {k: v for k, v in conf.items() if k not in ("options",)} | dict(conf.get("options") or {})
    names = {f.name for f in dataclasses.fields(MatchingOptions)}
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
            row = {"image": str(p), "success": False, "cam_from_world": None, "n_inliers": 0, "method": method}
            try:
                rgb = load_photo(p)
                intr = resolve(p, intrinsics)
                e = m.estimate(rgb, intr, estimate_focal=focal)
            except (IntrinsicsError, ValueError) as err:  # this photo; a missing model file stops the batch
                row.update(message=str(err), reason=str(err))
            else:
                row.update(success=e.success, cam_from_world=e.cam_from_world, intrinsics=e.intrinsics.to_dict(),
                           n_inliers=e.n_inliers, inlier_ratio=e.inlier_ratio, confidence=e.confidence,
                           reproj_error_px=e.reproj_error_px, retrieved=e.retrieved,
                           timings={"total": e.time_s, **e.extras.get("timings", {})}, message=e.message or e.reason,
                           reason=e.reason or None, inliers_3d=e.inliers_3d)
                row.update({k: v for k, v in e.extras.items() if k not in row})  # the method's own fields
            T = row["cam_from_world"]
            row["matrix_world"] = None if T is None else blender_matrix_world_from_cam_from_world(np.asarray(T))
            rows.append(row)
            if progress:
                progress((i + 1) / len(photos), f"{p.name}: {row['n_inliers']} inliers")
    return json_safe(rows)
