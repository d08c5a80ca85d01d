"""Nearest-neighbour retrieval over exactly the regression's training images (``n_train`` in every row).

The same retrieval as ``retrieval_nn`` (local-descriptor votes over a SIFT database), but the database holds the
training set of :mod:`ml_backend.regression.pipeline` (Blender references + worker-rendered views), so the
regression is compared with a baseline that saw the same images.
"""
from __future__ import annotations

import time
from pathlib import Path

from pose_addon.core.dataset import Dataset

from ..matching.database import build_database
from ..matching.localize import Localizer
from ..progress import progress_bar
from ._common import result_row
from .retrieval_nn import nearest_reference

__all__ = ["run"]


def run(dataset: Dataset, workdir: Path, conf: dict) -> list[dict]:
    """Per-query results on ``dataset``'s ``conf.get("split", "query")`` frames."""
    from ..regression.pipeline import ensure_train_dataset

    train_ds = ensure_train_dataset(dataset, workdir, conf)
    db_root = Path(conf.get("regression_dir") or Path(workdir) / "regression") / "db"
    db_path = build_database(train_ds, db_root, conf.get("db_conf", "sift"), progress=conf.get("progress", True))
    rows = []
    with Localizer(db_path, conf.get("localize")) as loc:
        n_train = len(loc.db)
        queries = dataset.split(conf.get("split", "query"))[: conf.get("max_queries") or None]
        for q in progress_bar(queries, desc="retrieval_nn_train", unit="query", disable=not conf.get("progress", True)):
            t0 = time.perf_counter()
            i = nearest_reference(loc, dataset.path(q.image))
            rows.append(result_row(q.id, loc.db.frames[i].cam_from_world, time.perf_counter() - t0,
                                   retrieved=loc.db.ids[i], n_train=n_train))
    return rows
