"""Direct pose regression (BuildingPoseNetCached over EfficientNet-Lite0 features): one forward pass per query.

Trains on first use (see :mod:`ml_backend.regression.pipeline`); ``conf["checkpoint"]`` uses a trained one.
Rows carry ``n_train`` (training images) and ``t_infer_s`` (feature extraction + network, excluding I/O).
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from pose_addon.core.dataset import Dataset

from ..progress import progress_bar
from ._common import result_row

__all__ = ["run", "predict_queries", "estimate_images"]


def predict_queries(dataset: Dataset, workdir: Path, conf: dict):
    """Yield ``(frame, rgb, cam_from_world_est, seconds, n_train)`` for the queries.

    ``n_train`` counts the training set's images (those fitted plus the held-out viewpoints used for model
    selection), the same images ``retrieval_nn_train`` searches.
    """
    from ..regression.extractors import load_rgb
    from ..regression.pipeline import ensure_checkpoint
    from ..regression.train import PosePredictor

    torch.set_num_threads(int(conf.get("threads", 1)))  # one image at a time: 1 thread is fastest on a busy CPU
    ckpt, train_ds = ensure_checkpoint(dataset, workdir, conf)
    n_train = len(Dataset.load(train_ds).split("reference"))
    pred = PosePredictor(ckpt, random_weights=bool(conf.get("random_weights", False)))
    frames = dataset.split(conf.get("split", "query"))[: conf.get("max_queries") or None]
    if frames:
        pred.predict_images([load_rgb(dataset.path(frames[0].image))])  # warm-up (allocations, kernels)
    for q in frames:
        rgb = load_rgb(dataset.path(q.image))
        t0 = time.perf_counter()
        T = pred.predict_images([rgb])[0]
        yield q, rgb, T, time.perf_counter() - t0, n_train


def run(dataset: Dataset, workdir: Path, conf: dict) -> list[dict]:
    """Per-query results on ``dataset``'s ``conf.get("split", "query")`` frames."""
    rows = []
    for q, _, T, dt, n_train in progress_bar(predict_queries(dataset, workdir, conf), desc="regression", unit="query",
                                     disable=not conf.get("progress", True)):
        rows.append(result_row(q.id, T, dt, n_train=n_train, t_infer_s=dt))
    return rows


def estimate_images(images: list[str], intrinsics: list, conf: dict, progress=None) -> list[dict]:
    """Poses of single photos from ``conf["checkpoint"]`` (one forward pass each; intrinsics are not used: the
    network assumes the camera it was trained with)."""
    from ..regression.extractors import load_rgb
    from ..regression.train import PosePredictor

    ckpt = conf.get("checkpoint")
    if not ckpt or not Path(ckpt).is_file():
        raise FileNotFoundError(f"regression checkpoint not found: {ckpt!r} (train one: Models panel or "
                                "`python -m ml_backend regression train`)")
    torch.set_num_threads(int(conf.get("threads", 1)))
    pred = PosePredictor(ckpt, random_weights=bool(conf.get("random_weights", False)))  # tests only
    rows = []
    for i, img in enumerate(images):
        rgb = load_rgb(img)
        t0 = time.perf_counter()
        T = pred.predict_images([rgb])[0]
        rows.append({"image": str(img), "success": True, "cam_from_world": T, "inliers": 0,
                     "reproj_error_px": None, "timings": {"total": time.perf_counter() - t0},
                     "message": "one forward pass"})
        if progress:
            progress((i + 1) / len(images), Path(img).name)
    return rows
