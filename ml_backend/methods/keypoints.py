"""Semantic keypoints: a YOLO pose model (trained offline on labelled renders when none is cached) + PnP.

``conf`` keys: see :data:`ml_backend.keypoints.pipeline.default_conf` (``cache``, ``keypoints``, ``weights``,
``model``, ``train``, ``train_views``, ``pose``, ``val``, ...). Besides the rows it writes
``workdir/method_metrics.json`` (PCK@5/10 px, median keypoint error, OKS mAP, training time) and the detector's
error on the queries for the ``keypoints_oracle`` row's noise.
"""
from __future__ import annotations

from pathlib import Path

from pose_addon.core.dataset import Dataset, atomic_write_json

from . import MethodUnavailable

__all__ = ["run"]


def run(dataset: Dataset, workdir: Path, conf: dict) -> list[dict]:
    """Per-query results on the ``query`` split (training time is not part of ``time_s``)."""
    try:
        from ..keypoints import pipeline, yolo
    except ImportError as e:
        raise MethodUnavailable(f"keypoint method needs ultralytics/scipy/yaml: {e}") from e
    c = dict(pipeline.default_conf, **conf)
    cache = Path(c.get("cache") or pipeline.default_cache()).resolve()
    c["cache"] = str(cache)
    try:
        model = pipeline.ensure_model(dataset, c)
    except FileNotFoundError as e:
        raise MethodUnavailable(str(e)) from e
    rows, dets = pipeline.localize_queries(model, dataset, c)
    details = {"n_keypoints": len(model.kset), "train": {k: model.train_info.get(k) for k in
                                                         ("train_s", "train_wall_s", "render_s", "device", "model")}}
    if all(dataset.frame(r["id"]).depth for r in rows):
        details.update(pipeline.detection_metrics(dataset, model.kset, dets,
                                                  dict(pipeline.default_conf["pose"], **c["pose"]).get("min_conf",
                                                                                                       0.5)))
        atomic_write_json(cache / "keypoints" / f"{dataset.root.name}.detector.json",
                          {"median_err_px": details["median_err_labelled_px"],
                           "median_err_visible_px": details["median_err_px"], "weights": str(model.weights)})
    if c.get("val") and model.data_yaml is not None and model.data_yaml.is_file():
        try:
            details["oks"] = yolo.validate(model.weights, model.data_yaml, cache / "ultralytics", Path(workdir),
                                           "test", int(c["imgsz"]), c["device"] or "cpu", int(c["threads"]))
        except yolo.YoloError as e:
            details["oks"] = {"error": str(e)[:300]}
    atomic_write_json(Path(workdir) / "method_metrics.json", details)
    return rows
