"""Nearest-neighbour retrieval baseline: the query gets the pose of its top-1 retrieved reference."""
from __future__ import annotations

import time
from pathlib import Path

from tqdm import tqdm

from pose_addon.core.dataset import Dataset

from ..database import FeatureDatabase
from ..features.sift import load_image_gray
from ..retrieval import global_descriptor, top_k
from ._common import ensure_database, result_row

__all__ = ["run"]


def run(dataset: Dataset, workdir: Path, conf: dict) -> list[dict]:
    """Per-query results on ``dataset``'s ``conf.get("split", "query")`` frames."""
    db_path = ensure_database(dataset, workdir, conf)
    rows = []
    with FeatureDatabase(db_path) as db:
        for q in tqdm(dataset.split(conf.get("split", "query")), desc="retrieval_nn", unit="query",
                      disable=not conf.get("progress", True)):
            t0 = time.perf_counter()
            g = global_descriptor(load_image_gray(dataset.path(q.image)), db.conf["retrieval"])
            idx, sim = top_k(g, db.global_descriptors, 1)
            T = db.frames[int(idx[0])].cam_from_world
            rows.append(result_row(q.id, T, time.perf_counter() - t0, retrieved=db.ids[int(idx[0])],
                                   similarity=float(sim[0])))
    return rows
