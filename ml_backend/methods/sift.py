"""SIFT localization: top-k retrieval, SIFT matching against depth-lifted reference features, PnP."""
from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from pose_addon.core.dataset import Dataset

from ..localize import Localizer
from ._common import ensure_database, localize_photos, photo_database, result_row

__all__ = ["run", "estimate_images"]


def run(dataset: Dataset, workdir: Path, conf: dict) -> list[dict]:
    """Per-query results; ``conf["localize"]`` overrides :data:`ml_backend.localize.default_conf`."""
    db_path = ensure_database(dataset, workdir, conf)
    rows = []
    with Localizer(db_path, conf.get("localize")) as loc:
        for q in tqdm(dataset.split(conf.get("split", "query")), desc="sift", unit="query",
                      disable=not conf.get("progress", True)):
            r = loc.localize(dataset.path(q.image), q.intrinsics)
            rows.append(result_row(q.id, r.cam_from_world, r.timings["total"], n_inliers=r.n_inliers,
                                   n_matches=r.n_matches, reproj_error_px=r.reproj_error_px,
                                   retrieved=r.retrieved, timings=r.timings, message=r.message))
    return rows


def estimate_images(images: list[str], intrinsics: list, conf: dict, progress=None) -> list[dict]:
    """Poses of single photos (no ground truth) against ``conf["database"]`` (or ``conf["dataset"]``'s)."""
    return localize_photos(Localizer(photo_database(conf), conf.get("localize")), images, intrinsics, conf, progress)
