"""Helpers shared by methods: the feature database of a dataset (built or reused) and result rows."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from pose_addon.core.dataset import Dataset

from ..database import build_database

__all__ = ["ensure_database", "result_row", "photo_row"]


def ensure_database(dataset: Dataset, workdir: Path, conf: dict) -> Path:
    """``conf["database"]`` if given, else the (cached) database of ``dataset`` under ``workdir``."""
    if conf.get("database"):
        p = Path(conf["database"])
        if not p.is_file():
            raise FileNotFoundError(f"feature database not found: {p}")
        return p
    return build_database(dataset.root, Path(workdir) / "db", conf.get("db_conf", "sift"),
                          progress=conf.get("progress", True))


def result_row(frame_id: str, cam_from_world: Optional[np.ndarray], time_s: float, **extra) -> dict:
    return {"id": frame_id, "cam_from_world": None if cam_from_world is None else np.asarray(cam_from_world).tolist(),
            "time_s": float(time_s), **extra}


def photo_row(image, r, intrinsics=None) -> dict:
    """The ``estimate_images`` row of one photo from a :class:`~ml_backend.localize.LocalizationResult`
    (``intrinsics``: the estimated ones, when the method solved them)."""
    row = {"image": str(image), "success": bool(r.success), "cam_from_world": r.cam_from_world,
           "inliers": int(r.n_inliers), "reproj_error_px": float(r.reproj_error_px), "retrieved": list(r.retrieved),
           "timings": dict(r.timings), "message": r.message, "inliers_3d": r.inliers_3d}
    if intrinsics is not None:
        row["intrinsics"] = intrinsics.to_dict()
    return row
