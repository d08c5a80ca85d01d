"""Glue for the bench methods: the training dataset, cached features and a trained checkpoint, built on demand.

Everything lands under ``conf["regression_dir"]`` (the bench passes ``<cache>/regression/<dataset>``; default
``<workdir>/regression``) so ``regression`` and ``regression+refine`` share one trained model. The training set
records the digest of the references it copies, the features and the run folder carry the training set's digest,
so nothing trained on another dataset is reused.
"""
from __future__ import annotations

from pathlib import Path

from pose_addon.core.dataset import Dataset

from .extractors import create_extractor
from .features import extract_features
from .train import merge_config, train
from .trainset import build_train_dataset

__all__ = ["default_pipeline_conf", "ensure_train_dataset", "ensure_checkpoint"]

default_pipeline_conf = {"n_gl_views": 300, "n_aug_views": 2, "extractor": "efficientnet-lite0",
                         "random_weights": False, "train": {"epochs": 100, "patience": 30}}


def _root(dataset: Dataset, workdir: Path, conf: dict) -> Path:
    return Path(conf.get("regression_dir") or Path(workdir) / "regression")


def ensure_train_dataset(dataset: Dataset, workdir: Path, conf: dict) -> Path:
    """``conf["train_dataset"]`` or the cached references + GL views of ``dataset`` (see :mod:`.trainset`)."""
    if conf.get("train_dataset"):
        return Path(conf["train_dataset"])
    c = {**default_pipeline_conf, **conf}
    return build_train_dataset(dataset.root, _root(dataset, workdir, conf) / f"train-gl{c['n_gl_views']}",
                               int(c["n_gl_views"]), progress=conf.get("progress", True))


def ensure_checkpoint(dataset: Dataset, workdir: Path, conf: dict) -> tuple[Path, Path]:
    """(checkpoint, training dataset): ``conf["checkpoint"]`` or one trained (once, cached) on the training set."""
    train_ds = ensure_train_dataset(dataset, workdir, conf)
    if conf.get("checkpoint"):
        return Path(conf["checkpoint"]), train_ds
    c = {**default_pipeline_conf, **conf}
    root = _root(dataset, workdir, conf)
    digest = Dataset.load(train_ds).digest()  # a model trained on other data is never reused
    run = root / f"run-{c['extractor'].replace(':', '_')}-aug{c['n_aug_views']}-{digest[:10]}"
    best = run / "best.pt"
    if best.is_file() and (run / "metrics.csv").is_file():
        return best, train_ds
    ex = create_extractor(c["extractor"], conf.get("extractor_checkpoint"), bool(c["random_weights"]))
    feats = extract_features(train_ds, root / "features", ex, "reference", {"n_views": int(c["n_aug_views"])},
                             progress=conf.get("progress", True))
    cfg = merge_config({"features": str(feats), "out": str(run), "progress": conf.get("progress", True)},
                       c["train"])
    return train(cfg, resume=True), train_ds
