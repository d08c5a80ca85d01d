"""Helpers shared by methods: the feature database of a dataset (built or reused) and result rows."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from pose_addon.core.dataset import Dataset

from ..matching.database import build_database, check_database

__all__ = ["ensure_database", "result_row", "photo_database"]


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


def photo_database(conf: dict) -> Path:
    """The SIFT feature database for photos: ``conf["database"]``, else the one of ``conf["dataset"]``."""
    if conf.get("database"):
        return ensure_database(None, Path(conf.get("workdir", ".")), conf)
    if not conf.get("dataset"):
        raise FileNotFoundError("give conf 'database' (a feature database .h5) or 'dataset' (rendered references)")
    return ensure_database(Dataset.load(conf["dataset"]), Path(conf.get("workdir", ".")), conf)
