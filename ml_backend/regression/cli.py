"""``python -m ml_backend regression <extract|train|infer>``.

    regression extract --dataset DIR --out DIR [--split reference] [--extractor efficientnet-lite0|clip:ARCH
        --checkpoint FILE] [--views 2] [--random-weights]
    regression train [--config cfg.json] [--set key=value ...] [--resume] [--ray local|HOST:PORT --ray-workers 2]
    regression infer --checkpoint best.pt --source DATASET_OR_FOLDER --out FILE_STEM [--split query]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["add_parser", "dispatch"]


def add_parser(sub) -> None:
    p = sub.add_parser("regression", help="direct pose regression: extract features, train, infer")
    s = p.add_subparsers(dest="regression_command", required=True)
    e = s.add_parser("extract", help="cache image features of a dataset split in HDF5")
    e.add_argument("--dataset", required=True)
    e.add_argument("--out", required=True)
    e.add_argument("--split", default="reference")
    e.add_argument("--extractor", default="efficientnet-lite0")
    e.add_argument("--checkpoint", default=None, help="weights of a clip:<arch> extractor")
    e.add_argument("--views", type=int, default=2, help="augmented views per image besides the original")
    e.add_argument("--random-weights", action="store_true", help="tests only: no pretrained weights")
    t = s.add_parser("train", help="train BuildingPoseNetCached on cached features")
    t.add_argument("--config", default=None, help="JSON config file (see regression.train.default_config)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override (value as JSON)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    from ..distributed.cluster import add_ray_arguments

    add_ray_arguments(t)
    t.add_argument("--ray-workers", type=int, default=2, help="Ray Train workers (data-parallel ranks) with --ray")
    i = s.add_parser("infer", help="poses of a dataset split or an image folder to JSON + CSV")
    i.add_argument("--checkpoint", required=True)
    i.add_argument("--source", required=True)
    i.add_argument("--out", required=True)
    i.add_argument("--split", default="query")
    i.add_argument("--random-weights", action="store_true", help="tests only")


def dispatch(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(2)
    if args.regression_command == "extract":
        from .extractors import create_extractor
        from .features import extract_features

        ex = create_extractor(args.extractor, args.checkpoint, args.random_weights)
        print(extract_features(args.dataset, args.out, ex, args.split, {"n_views": args.views}))
        return 0
    if args.regression_command == "train":
        from .train import merge_config, parse_overrides, train

        base = json.loads(Path(args.config).read_text()) if args.config else {}
        cfg = merge_config(base, parse_overrides(args.set))
        if getattr(args, "ray", None):  # Ray Train workers, the same checkpoints (see ml_backend.distributed.train)
            from ..distributed.cluster import connect_from_args
            from ..distributed.train import train_regression

            connect_from_args(args)
            print(train_regression(cfg, resume=args.resume, num_workers=args.ray_workers,
                                   use_gpu=args.ray_task_gpus > 0, cpus_per_worker=args.ray_task_cpus,
                                   max_failures=args.ray_max_retries))
            return 0
        print(train(cfg, resume=args.resume))
        return 0
    from .infer import infer

    j, c = infer(args.checkpoint, args.source, args.out, args.split, args.random_weights)
    print(j)
    print(c)
    return 0
