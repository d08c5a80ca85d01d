"""Helpers shared by methods: the feature database of a dataset (built or reused) and result rows."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from pose_addon.core.dataset import Dataset

from ..database import build_database, check_database

__all__ = ["ensure_database", "result_row", "photo_row", "photo_database", "localize_photos"]


def ensure_database(dataset: Optional[Dataset], workdir: Path, conf: dict) -> Path:
    """``conf["database"]`` if given (refused when built from other references than ``dataset``'s), else the
    (cached) database of ``dataset`` under ``workdir``."""
    if conf.get("database"):
        p = Path(conf["database"])
        if not p.is_file():
            raise FileNotFoundError(f"feature database not found: {p}")
        if dataset is not None:
            check_database(p, dataset)
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
           "n_inliers": int(r.n_inliers), "reproj_error_px": float(r.reproj_error_px), "retrieved": list(r.retrieved),
           "timings": dict(r.timings), "message": r.message, "inliers_3d": r.inliers_3d}
    if intrinsics is not None:
        row["intrinsics"] = intrinsics.to_dict()
    return row


def photo_database(conf: dict) -> Path:
    """The SIFT feature database for photos: ``conf["database"]``, else the one of ``conf["dataset"]``."""
    if conf.get("database"):
        return ensure_database(None, Path(conf.get("workdir", ".")), conf)
    if not conf.get("dataset"):
        raise FileNotFoundError("give conf 'database' (a feature database .h5) or 'dataset' (rendered references)")
    return ensure_database(Dataset.load(conf["dataset"]), Path(conf.get("workdir", ".")), conf)


def localize_photos(loc, images: list, intrinsics: list, conf: dict, progress=None) -> list[dict]:
    """``estimate_images`` rows of photos localized with ``loc`` (focal length solved when
    ``conf["estimate_focal"]`` and the localizer can)."""
    rows = []
    with loc:
        for i, (img, intr) in enumerate(zip(images, intrinsics)):
            est = None
            if conf.get("estimate_focal") and hasattr(loc, "localize_unknown_focal"):
                r, est = loc.localize_unknown_focal(img, intr)
            else:
                r = loc.localize(img, intr)
            rows.append(photo_row(img, r, est))
            if progress:
                progress((i + 1) / len(images), f"{Path(img).name}: {r.n_inliers} inliers")
    return rows
