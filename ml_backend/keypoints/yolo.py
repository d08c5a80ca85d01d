"""Ultralytics YOLO pose, fully offline, always in a child process (:mod:`._yolo_proc`).

The child gets ``YOLO_OFFLINE=1``, ``YOLO_AUTOINSTALL=false``, ``ULTRALYTICS_SKIP_REQUIREMENTS_CHECKS=1`` and a
``YOLO_CONFIG_DIR`` under the project's cache (with matplotlib's DejaVuSans copied as ``Arial.ttf`` so no dataset
check downloads a font); its settings put datasets, runs and weights under the same folder, never the home directory.
Training is from a model YAML (``yolo11n-pose.yaml``, random initialisation, ``pretrained=False``) or from a user's
``.pt``; ``amp=False``, ``workers=0``; resumable from the run's ``last.pt``. Progress comes back as JSON-line events.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Optional

from pose_addon.core.dataset import atomic_write_json

from ..child_process import ChildError, child_env, probe_torch, python_command, run_events

__all__ = ["YoloError", "offline_env", "run_yolo", "train", "predict", "validate", "DEFAULT_TRAIN_ARGS",
           "default_device"]


class YoloError(RuntimeError):
    """An ultralytics child process failed (message holds its error event and last stderr lines)."""


#: Training arguments: at most 0.45 h (ultralytics fits the epochs and LR schedule to the time; pass "time": None
#: to train exactly "epochs"); augmentations without horizontal flips (keypoints are not mirror-symmetric) and
#: without mosaic: one building per image at the queries' scale learns much faster; batch 8 gives twice the steps
#: (27 CPU-minutes on the procedural building, median keypoint error on the queries: mosaic 0.5 closed for 10
#: epochs, batch 16: 42 px; no mosaic, batch 16: 28 px; no mosaic, batch 8: 17.7 px).
DEFAULT_TRAIN_ARGS: dict = {
    "epochs": 300, "time": 0.45, "imgsz": 320, "batch": 8, "workers": 0, "amp": False, "pretrained": False,
    "fliplr": 0.0, "flipud": 0.0, "mosaic": 0.0, "close_mosaic": 0, "mixup": 0.0, "degrees": 3.0, "translate": 0.15,
    "scale": 0.35, "hsv_h": 0.02, "hsv_s": 0.6, "hsv_v": 0.5, "plots": False, "val": True, "patience": 100,
    "seed": 0, "deterministic": False, "verbose": False, "cos_lr": False, "warmup_epochs": 2,
}


def default_device() -> str:
    """``"0"`` when torch sees a CUDA device, else ``"cpu"`` (checked in a child: torch's CUDA init is sticky)."""
    return "0" if probe_torch()["device"] == "cuda" else "cpu"


def offline_env(settings_root: Path | str, threads: int = 2) -> dict:
    """Environment of an offline ultralytics child; creates ``settings_root/Ultralytics/Arial.ttf``."""
    root = Path(settings_root).resolve()
    cfg = root / "Ultralytics"
    cfg.mkdir(parents=True, exist_ok=True)
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        font = cfg / name
        if not font.is_file():
            import matplotlib

            src = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
            if not src.is_file():
                raise YoloError(f"matplotlib's DejaVuSans.ttf not found at {src}: ultralytics would download "
                                f"Arial.ttf; copy any TTF font to {font}")
            tmp = font.with_suffix(".part")
            shutil.copyfile(src, tmp)
            os.replace(tmp, font)
    return child_env({"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false", "ULTRALYTICS_SKIP_REQUIREMENTS_CHECKS": "1",
                      "YOLO_CONFIG_DIR": str(root), "YOLO_VERBOSE": "false", "HF_HUB_OFFLINE": "1",
                      "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
                      "MPLCONFIGDIR": str(root / "matplotlib")})


def run_yolo(request: dict, settings_root: Path | str, on_event: Optional[Callable[[dict], None]] = None,
             threads: int = 2, timeout_s: Optional[float] = None) -> dict:
    """Run one ultralytics command in a child process and return its result dict.

    Args:
        request: ``{"command": "train" | "predict" | "val", ...}`` (see :mod:`._yolo_proc`).
        settings_root: ultralytics' config / settings / runs folder (the project's cache).
        on_event: called with every JSON event (``progress`` lines carry ``done``, ``total``, ``message``).

    Raises:
        YoloError: non-zero exit or an ``error`` event (message with the last stderr lines).
    """
    root = Path(settings_root).resolve()
    with tempfile.TemporaryDirectory(prefix="yolo-") as td:
        req = dict(request, settings_root=str(root), threads=threads, result=str(Path(td) / "result.json"))
        req_path = Path(td) / "request.json"
        req_path.write_text(json.dumps(req))
        try:
            res = run_events(python_command("ml_backend.keypoints._yolo_proc", req_path),
                             env=offline_env(root, threads), on_event=on_event, timeout_s=timeout_s,
                             progress=f"yolo {request.get('command')}", show_progress=False)
        except ChildError as e:
            raise YoloError(str(e)) from e
        res_path = Path(req["result"])
        if not res.ok or not res_path.is_file():
            raise YoloError(str(res.failure(f"ultralytics {request.get('command')}")))
        return json.loads(res_path.read_text())


def train(data_yaml: Path | str, out_dir: Path | str, settings_root: Path | str, model: str = "yolo11n-pose.yaml",
          train_args: Optional[dict] = None, device: str = "cpu", on_event: Optional[Callable[[dict], None]] = None,
          threads: int = 2) -> Path:
    """Train (or resume, or reuse) a pose model; returns ``out_dir/model.pt``.

    Args:
        data_yaml: the dataset YAML of :func:`.labels.write_yolo_dataset`.
        out_dir: model folder; holds ``run/`` (ultralytics' run, ``weights/last.pt`` for resuming), ``model.pt``
            and ``train.json`` (written last: its presence means done).
        model: a model YAML name/path (random init) or a user's ``.pt`` (fine-tuned; must exist).
        train_args: overrides of :data:`DEFAULT_TRAIN_ARGS`.
        device: ``"cpu"`` or a CUDA index such as ``"0"``.
    """
    out = Path(out_dir).resolve()
    final, meta = out / "model.pt", out / "train.json"
    if final.is_file() and meta.is_file():
        return final
    if model.endswith(".pt") and not Path(model).is_file():
        raise FileNotFoundError(f"model weights not found: {model} (YOLO .pt files cannot be downloaded here; "
                                f"pass a model YAML such as yolo11n-pose.yaml to train from scratch)")
    args = dict(DEFAULT_TRAIN_ARGS, **(train_args or {}), device=device)
    if model.endswith(".pt"):
        args["pretrained"] = True
    out.mkdir(parents=True, exist_ok=True)
    resume = (out / "run" / "weights" / "last.pt").is_file()
    res = run_yolo({"command": "train", "model": model, "data": str(data_yaml), "project": str(out), "name": "run",
                    "train_args": args, "epochs": args["epochs"], "resume": resume}, settings_root, on_event,
                   threads)
    tmp = out / ".model.pt.part"
    shutil.copyfile(res["weights"], tmp)
    os.replace(tmp, final)
    atomic_write_json(meta, {"model": model, "data": str(data_yaml), "train_args": args, "resumed": resume, **res})
    return final


def predict(weights: Path | str, images: Sequence[Path | str], settings_root: Path | str, imgsz: int = 320,
            conf: float = 0.05, device: str = "cpu", threads: int = 2,
            on_event: Optional[Callable[[dict], None]] = None) -> list[dict]:
    """Detections per image: ``{"image", "time_s", "boxes": [[x0, y0, x1, y1, conf]], "keypoints":
    [[[x, y, conf] * K]]}`` with ultralytics' continuous pixel coordinates of the original image (OpenCV's
    + 0.5; see :func:`.labels.from_yolo_pixels`); at most one instance per image."""
    if not Path(weights).is_file():
        raise FileNotFoundError(f"keypoint model not found: {weights}")
    res = run_yolo({"command": "predict", "weights": str(weights), "images": [str(p) for p in images],
                    "imgsz": imgsz, "conf": conf, "device": device}, settings_root, on_event, threads)
    return res["predictions"]


def validate(weights: Path | str, data_yaml: Path | str, settings_root: Path | str, out_dir: Path | str,
             split: str = "test", imgsz: int = 320, device: str = "cpu", threads: int = 2) -> dict:
    """Ultralytics' pose validator on a split: ``{"pose_map50", "pose_map50_95", "box_map50", "box_map50_95"}``
    (OKS with the dataset YAML's ``kpt_oks_sigmas``)."""
    return run_yolo({"command": "val", "weights": str(weights), "data": str(data_yaml), "split": split,
                     "imgsz": imgsz, "device": device, "project": str(out_dir), "name": f"val_{split}"},
                    settings_root, None, threads)
