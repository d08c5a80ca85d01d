"""Batch inference: poses of every image in a folder or every frame of a dataset split, to JSON and CSV.

Each record: ``id``/``image``, ``cam_from_world`` (4x4, OpenCV axes), ``blender_matrix_world`` (4x4, the Blender
camera object's matrix_world: camera looks down its local -Z, +Y up), ``time_s``, and with ground truth
``t_err_m`` / ``R_err_deg``.
"""
from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Optional

import numpy as np

from pose_addon.core.cameras import blender_matrix_world_from_cam_from_world
from pose_addon.core.dataset import Dataset, atomic_write_bytes, atomic_write_json

from ..evaluation import pose_error
from ..progress import progress_bar
from .extractors import load_rgb
from .train import PosePredictor

__all__ = ["infer"]

IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def infer(checkpoint: Path | str, source: Path | str, out: Path | str, split: str = "query",
          random_weights: bool = False, progress: bool = True) -> tuple[Path, Path]:
    """Predict poses of ``source`` (a dataset folder: its ``split`` frames, with errors; or a folder of images).

    Returns the paths of ``out.json`` and ``out.csv`` (``out`` without suffix).
    """
    source, out = Path(source), Path(out)
    pred = PosePredictor(checkpoint, random_weights=random_weights)
    items: list[tuple[str, Path, Optional[np.ndarray]]]
    if (source / "manifest.json").is_file():
        ds = Dataset.load(source)
        items = [(f.id, ds.path(f.image), f.cam_from_world) for f in ds.split(split)]
    elif source.is_dir():
        items = [(p.stem, p, None) for p in sorted(source.iterdir()) if p.suffix.lower() in IMAGE_EXT]
    else:
        raise FileNotFoundError(f"{source} is neither a dataset folder nor a folder of images")
    if not items:
        raise ValueError(f"no images to run on in {source}")
    records = []
    for fid, path, gt in progress_bar(items, desc="infer", unit="img", disable=not progress):
        img = load_rgb(path)
        t0 = time.perf_counter()
        T = pred.predict_images([img])[0]
        rec = {"id": fid, "image": str(path), "cam_from_world": T.tolist(),
               "blender_matrix_world": blender_matrix_world_from_cam_from_world(T).tolist(),
               "time_s": time.perf_counter() - t0}
        if gt is not None:
            rec["t_err_m"], rec["R_err_deg"] = pose_error(T, gt)
        records.append(rec)
    jpath, cpath = out.with_suffix(".json"), out.with_suffix(".csv")
    summary = {}
    if records and "t_err_m" in records[0]:
        summary = {"median_t_m": float(np.median([r["t_err_m"] for r in records])),
                   "median_R_deg": float(np.median([r["R_err_deg"] for r in records]))}
    atomic_write_json(jpath, {"checkpoint": str(checkpoint), "source": str(source), "summary": summary,
                              "poses": records})
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["id", "image"] + [f"cam_from_world_{i}{j}" for i in range(3) for j in range(4)]
               + [f"blender_matrix_world_{i}{j}" for i in range(3) for j in range(4)] + ["time_s", "t_err_m",
                                                                                         "R_err_deg"])
    for r in records:
        T, B = np.asarray(r["cam_from_world"]), np.asarray(r["blender_matrix_world"])
        w.writerow([r["id"], r["image"]] + [f"{v:.9g}" for v in T[:3].ravel()] + [f"{v:.9g}" for v in B[:3].ravel()]
                   + [f"{r['time_s']:.6f}", r.get("t_err_m", ""), r.get("R_err_deg", "")])
    atomic_write_bytes(cpath, buf.getvalue().encode())
    return jpath, cpath
