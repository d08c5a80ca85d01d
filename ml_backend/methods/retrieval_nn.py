"""Nearest-neighbour retrieval baseline: the query gets the pose of its top-1 retrieved reference.

It uses the same retrieval as the ``sift`` method (``conf["localize"]["retrieval"]``, default local-descriptor
votes), so the two differ only by matching + PnP.
"""
from __future__ import annotations

import time
from pathlib import Path

from pose_addon.core.dataset import Dataset

from ..matching.extractors import load_image_gray, sift
from ..matching.localize import Localizer
from ..progress import progress_bar
from ._common import ensure_database, photo_database, result_row

__all__ = ["run", "estimate_images", "nearest_reference"]


def nearest_reference(loc: Localizer, image) -> int:
    """Index in ``loc.db`` of the top-1 retrieved reference of an image file."""
    gray = load_image_gray(image)
    desc = sift.extract(gray, loc.db.conf["features"]).descriptors if loc.conf["retrieval"] == "votes" else None
    return int(loc.retrieve(gray, desc, 1)[0])


def run(dataset: Dataset, workdir: Path, conf: dict) -> list[dict]:
    """Per-query results on ``dataset``'s ``conf.get("split", "query")`` frames."""
    db_path = ensure_database(dataset, workdir, conf)
    rows = []
    with Localizer(db_path, conf.get("localize")) as loc:
        for q in progress_bar(dataset.split(conf.get("split", "query")), desc="retrieval_nn", unit="query",
                      disable=not conf.get("progress", True)):
            t0 = time.perf_counter()
            i = nearest_reference(loc, dataset.path(q.image))
            rows.append(result_row(q.id, loc.db.frames[i].cam_from_world, time.perf_counter() - t0,
                                   retrieved=loc.db.ids[i]))
    return rows


def estimate_images(images: list[str], intrinsics: list, conf: dict, progress=None) -> list[dict]:
    """The pose of each photo's top-1 retrieved reference (no ground truth needed)."""
    rows = []
    with Localizer(photo_database(conf), conf.get("localize")) as loc:
        for k, img in enumerate(images):
            t0 = time.perf_counter()
            i = nearest_reference(loc, img)
            rows.append({"image": str(img), "success": True, "cam_from_world": loc.db.frames[i].cam_from_world,
                         "inliers": 0, "reproj_error_px": None, "retrieved": [loc.db.ids[i]],
                         "timings": {"total": time.perf_counter() - t0}, "message": "pose of the nearest reference"})
            if progress:
                progress((k + 1) / len(images), Path(img).name)
    return rows
