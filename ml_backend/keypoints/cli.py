"""Command line of the keypoint method (wired into ``python -m ml_backend``)::

    python -m ml_backend keypoints-labels --dataset DIR --out DIR [--keypoints JSON] [--n-keypoints 16]
    python -m ml_backend keypoints-train --dataset DIR [--cache DIR] [--backend heatmap|yolo] [--minutes 30]
        [--model yolo11n-pose.yaml|user.pt] [--epochs N] [--imgsz 320] [--train-views 400] [--device cpu|0]
        [--keypoints JSON]
    python -m ml_backend keypoints-viz --dataset DIR --out DIR [--split query] [--max 8] [--weights PT]
        [--keypoints JSON]
    python -m ml_backend keypoints-eval --dataset DIR --weights PT [--split query] [--zoom Z]
        [--hidden-weight W] [--keypoints JSON]

``keypoints-train`` prints one JSON event per line (``{"event": "progress", "done", "total", "message", ...}``
then ``{"event": "done", "weights": ...}``) so a worker job can relay training progress.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["add_parsers", "dispatch", "COMMANDS"]

COMMANDS = ("keypoints-labels", "keypoints-train", "keypoints-viz", "keypoints-eval")


def add_parsers(sub) -> None:
    """Add the keypoint subcommands to ``python -m ml_backend``'s subparsers."""
    a = sub.add_parser("keypoints-labels", help="write an Ultralytics pose dataset (labels + data.yaml)")
    a.add_argument("--dataset", required=True)
    a.add_argument("--out", required=True)
    a.add_argument("--keypoints", default=None, help="keypoint JSON (default: dataset's, else suggested)")
    a.add_argument("--n-keypoints", type=int, default=24)
    t = sub.add_parser("keypoints-train", help="train (or resume) the keypoint model of a dataset's scene")
    t.add_argument("--dataset", required=True)
    t.add_argument("--cache", default=None)
    t.add_argument("--backend", default="heatmap", choices=("heatmap", "yolo"))
    t.add_argument("--minutes", type=float, default=None, help="heatmap: training wall-time budget (default 30); "
                   "a larger one continues a finished run")
    t.add_argument("--model", default="yolo11n-pose.yaml", help="yolo: model YAML (from scratch) or a .pt")
    t.add_argument("--epochs", type=int, default=None)
    t.add_argument("--imgsz", type=int, default=None)
    t.add_argument("--train-views", type=int, default=None, help="extra training renders (0: references only)")
    t.add_argument("--device", default=None, help="cpu or a CUDA index (default: CUDA when available)")
    t.add_argument("--keypoints", default=None)
    t.add_argument("--n-keypoints", type=int, default=24)
    v = sub.add_parser("keypoints-viz", help="draw projected keypoints (and a model's detections)")
    v.add_argument("--dataset", required=True)
    v.add_argument("--out", required=True)
    v.add_argument("--split", default="query")
    v.add_argument("--max", type=int, default=8)
    v.add_argument("--weights", default=None, help="trained pose .pt: detections beside the ground truth")
    v.add_argument("--keypoints", default=None)
    v.add_argument("--n-keypoints", type=int, default=24)
    v.add_argument("--cache", default=None)
    e = sub.add_parser("keypoints-eval", help="a trained heatmap model on a split with ground truth: keypoint "
                       "errors, visibility, PnP recall (detector options to compare)")
    e.add_argument("--dataset", required=True)
    e.add_argument("--weights", required=True, help="the heatmap model.pt")
    e.add_argument("--split", default="query")
    e.add_argument("--zoom", type=float, default=None, help="close-up side, share of the last crop (0: none; "
                   "default: when the model was trained with close-ups)")
    e.add_argument("--hidden-weight", type=float, default=None, help="confidence factor of a hidden keypoint")
    e.add_argument("--keypoints", default=None)
    e.add_argument("--n-keypoints", type=int, default=24)


def dispatch(args: argparse.Namespace) -> int:
    """Run a keypoint subcommand; returns the exit code."""
    from pose_addon.core.dataset import Dataset

    from . import pipeline
    from .labels import YoloSource, keypoint_set_for_dataset, write_yolo_dataset

    ds = Dataset.load(args.dataset)
    kset = keypoint_set_for_dataset(ds, args.keypoints, args.n_keypoints)
    if args.command == "keypoints-labels":
        sources = [YoloSource(ds, s, {"reference": "train", "query": "test"}.get(s, s)) for s in ds.splits()]
        print(write_yolo_dataset(sources, kset, Path(args.out)))
        return 0
    if args.command == "keypoints-train":
        conf = {"keypoints": args.keypoints, "n_keypoints": args.n_keypoints, "model": args.model,
                "device": args.device, "progress": False, "backend": args.backend}
        if args.minutes is not None:
            conf["heatmap"] = {"time_s": 60.0 * args.minutes}
        if args.cache:
            conf["cache"] = args.cache
        train = {k: v for k, v in (("epochs", args.epochs), ("imgsz", args.imgsz)) if v is not None}
        conf["train"] = train
        if args.imgsz:
            conf["imgsz"] = args.imgsz
        if args.train_views is not None:
            conf["train_views"] = args.train_views

        def relay(ev: dict) -> None:
            print(json.dumps(ev), flush=True)

        m = pipeline.ensure_model(ds, conf, on_event=relay)
        print(json.dumps({"event": "done", "weights": str(m.weights), "train": m.train_info}), flush=True)
        return 0
    if args.command == "keypoints-eval":
        conf = {"weights": args.weights, "zoom": args.zoom, "hidden_weight": args.hidden_weight,
                "keypoints": args.keypoints, "n_keypoints": args.n_keypoints, "progress": False}
        print(json.dumps(pipeline.evaluate_detector(ds, conf, args.split)), flush=True)
        return 0
    # keypoints-viz
    out = Path(args.out)
    frames = ds.split(args.split)[: args.max]
    dets = {}
    if args.weights:
        from .heatmap_train import is_heatmap_model

        conf = {"cache": args.cache} if args.cache else {}
        backend = "heatmap" if is_heatmap_model(args.weights) else "yolo"
        model = pipeline.KeypointModel(Path(args.weights), kset, None, Path(args.weights).parent, {}, backend)
        dets = {d["id"]: d for d in pipeline.detect(model, ds, frames, conf)}
    from .viz import draw_frame

    for f in frames:
        print(draw_frame(ds, f, kset, out / f"{f.id}_keypoints.png", dets.get(f.id)))
    return 0


if __name__ == "__main__":  # pragma: no cover
    p = argparse.ArgumentParser()
    add_parsers(p.add_subparsers(dest="command", required=True))
    sys.exit(dispatch(p.parse_args()))
