"""Estimate the camera of photos (no ground truth) with any registered method that can: the path behind the
worker's ``estimate`` job and the extension's "Estimate Camera from Photo".

A method module that supports it exposes ``estimate_images(images, intrinsics, conf, progress) -> list[dict]``
with one row per photo: ``{"image", "success", "cam_from_world" (4x4, OpenCV axes) or None, "inliers",
"reproj_error_px", "timings", "message", ...}``. This module resolves the intrinsics of each photo
(:mod:`ml_backend.intrinsics`), calls the method and adds the Blender ``matrix_world`` of every pose.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np

from pose_addon.core.cameras import blender_matrix_world_from_cam_from_world
from pose_addon.core.dataset import json_safe

from .intrinsics import IntrinsicsError, resolve
from .methods import MethodUnavailable, get_method

__all__ = ["IMAGE_EXTENSIONS", "list_photos", "estimate_photos"]

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


def estimate_photos(path: str | Path, method: str, conf: dict, intrinsics: dict,
                    progress: Optional[Callable[[float, str], None]] = None) -> list[dict]:
    """Estimate every photo of ``path`` with ``method``; rows are JSON-safe.

    Args:
        path: a photo or a folder of photos.
        method: a registry name whose module has ``estimate_images``.
        conf: the method's conf (``database``/``dataset``/``checkpoint``/... and ``workdir``).
        intrinsics: a spec for :func:`ml_backend.intrinsics.resolve` (explicit, exif, preset, calibration, guess).
    """
    module = get_method(method)
    if not hasattr(module, "estimate_images"):
        raise MethodUnavailable(f"method {method!r} cannot estimate single photos (it has no estimate_images)")
    photos = list_photos(path)
    rows: list[Optional[dict]] = [None] * len(photos)
    todo, intrs = [], []
    for i, p in enumerate(photos):
        try:
            intrs.append(resolve(p, intrinsics))
            todo.append(i)
        except IntrinsicsError as e:
            rows[i] = {"image": str(p), "success": False, "cam_from_world": None, "message": str(e)}
    if intrinsics.get("source") == "estimate":
        conf = {**conf, "estimate_focal": True}  # methods that can solve the focal length do; others use the guess
    if todo:
        done = module.estimate_images([str(photos[i]) for i in todo], intrs, conf, progress)
        for i, intr, row in zip(todo, intrs, done):
            row.setdefault("intrinsics", intr.to_dict())  # a method that estimated them reports its own
            rows[i] = row
    for row in rows:
        T = row.get("cam_from_world")
        row["matrix_world"] = None if T is None else blender_matrix_world_from_cam_from_world(np.asarray(T))
        row["method"] = method
    return json_safe(rows)
