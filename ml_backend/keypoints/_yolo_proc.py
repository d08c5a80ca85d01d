"""Child process that runs ultralytics (train / predict / val) fully offline; spawned by :mod:`.yolo`.

    python -m ml_backend.keypoints._yolo_proc REQUEST.json

Ultralytics changes process-wide state (OpenCV threads, settings), so it only ever runs here. The parent sets the
offline environment (``YOLO_OFFLINE``, ``YOLO_CONFIG_DIR``, ...) before this process starts. Events are JSON lines
on stdout (``progress``, then ``done`` or ``error``), the protocol of :mod:`ml_backend.child_process`.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path


def _num(x):
    """Tensors / numpy scalars -> float (lists kept)."""
    if hasattr(x, "tolist"):
        x = x.tolist()
    return x if isinstance(x, (list, int, float, str)) or x is None else str(x)


def _emit(**ev) -> None:
    sys.stdout.write(json.dumps(ev, default=_num) + "\n")
    sys.stdout.flush()


def _setup(req: dict):
    import torch

    torch.set_num_threads(int(req.get("threads", 2)))
    from ultralytics.utils import SETTINGS

    root = Path(req["settings_root"])
    want = {"sync": False, "hub": False, "tensorboard": False, "wandb": False, "mlflow": False, "comet": False,
            "clearml": False, "dvc": False, "neptune": False, "raytune": False, "datasets_dir": str(root / "datasets"),
            "runs_dir": str(root / "runs"), "weights_dir": str(root / "weights")}
    SETTINGS.update({k: v for k, v in want.items() if k in SETTINGS})  # keys differ between versions


def _train(req: dict) -> dict:

    run_dir = Path(req["project"]) / req["name"]
    last = run_dir / "weights" / "last.pt"
    t0 = time.time()

    def on_epoch(trainer):
        m = {k: _num(v) for k, v in (trainer.metrics or {}).items()}
        loss = _num(trainer.tloss)
        _emit(event="progress", done=int(trainer.epoch) + 1, total=int(trainer.epochs),
              message=f"epoch {trainer.epoch + 1}/{trainer.epochs}", elapsed_s=round(time.time() - t0, 1),
              loss=loss, metrics=m)

    if req.get("resume") and last.is_file():
        model = _open_yolo(str(last))
        model.add_callback("on_fit_epoch_end", on_epoch)
        _emit(event="progress", done=0, total=int(req["epochs"]), message=f"resuming {last}")
        model.train(resume=True)
    else:
        model = _open_yolo(req["model"])
        model.add_callback("on_fit_epoch_end", on_epoch)
        args = dict(req["train_args"])
        model.train(data=req["data"], project=req["project"], name=req["name"], exist_ok=True, **args)
    best = run_dir / "weights" / "best.pt"
    return {"weights": str(best if best.is_file() else last), "run_dir": str(run_dir),
            "train_s": round(time.time() - t0, 1)}


def _open_yolo(weights: str):
    """An ultralytics YOLO model from a weights or model file; an unreadable file is an error naming it."""
    from ultralytics import YOLO

    try:
        return YOLO(weights)
    except Exception as e:  # truncated zip, foreign pickle, wrong task, ...
        raise ValueError(f"cannot load YOLO weights {weights}: {type(e).__name__}: {str(e)[:300]}") from None


def _predict(req: dict) -> dict:

    model = _open_yolo(req["weights"])
    out = []
    for path in req["images"]:
        t0 = time.perf_counter()
        r = model.predict(source=path, imgsz=req.get("imgsz", 320), conf=req.get("conf", 0.05),
                          device=req.get("device", "cpu"), max_det=req.get("max_det", 1), verbose=False)[0]
        dt = time.perf_counter() - t0
        item = {"image": path, "time_s": dt, "boxes": [], "keypoints": []}
        if r.boxes is not None and len(r.boxes):
            item["boxes"] = [b + [c] for b, c in zip(r.boxes.xyxy.tolist(), r.boxes.conf.tolist())]
            xy = r.keypoints.xy.tolist()
            kc = r.keypoints.conf.tolist() if r.keypoints.conf is not None else [[1.0] * len(xy[0])] * len(xy)
            item["keypoints"] = [[[x, y, c] for (x, y), c in zip(pts, cs)] for pts, cs in zip(xy, kc)]
        out.append(item)
        if len(out) % 10 == 0:
            _emit(event="progress", done=len(out), total=len(req["images"]), message="predict")
    return {"predictions": out}


def _val(req: dict) -> dict:

    model = _open_yolo(req["weights"])
    m = model.val(data=req["data"], split=req.get("split", "test"), imgsz=req.get("imgsz", 320),
                  batch=req.get("batch", 8), device=req.get("device", "cpu"), workers=0, plots=False, verbose=False,
                  project=req["project"], name=req.get("name", "val"), exist_ok=True)
    return {"pose_map50": float(m.pose.map50), "pose_map50_95": float(m.pose.map),
            "box_map50": float(m.box.map50), "box_map50_95": float(m.box.map)}


def main() -> int:
    req = json.loads(Path(sys.argv[1]).read_text())
    try:
        _setup(req)
        res = {"train": _train, "predict": _predict, "val": _val}[req["command"]](req)
    except Exception as e:  # report every failure as an event the parent can show
        sys.stderr.write(traceback.format_exc())
        _emit(event="error", message=f"{type(e).__name__}: {e}")
        return 1
    out = req.get("result")
    if out:
        tmp = Path(out).with_suffix(".part")
        tmp.write_text(json.dumps(res))
        os.replace(tmp, out)
    _emit(event="done", **({k: v for k, v in res.items() if k != "predictions"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
