"""Semantic keypoints: a heatmap model (default) or a YOLO pose model, trained offline on labelled renders when none
is cached, + PnP with RANSAC weighted by each keypoint's confidence.

``conf`` keys: see :data:`ml_backend.keypoints.pipeline.default_conf` (``backend``, ``cache``, ``keypoints``,
``weights``, ``heatmap``, ``gl_views``, ``model``, ``train``, ``pose``, ``val``, ...). Besides the rows it writes
``workdir/method_metrics.json`` (``median_keypoint_px``: median error of the visible keypoints in the queries;
PCK@5/10 px, OKS mAP for YOLO, training time) and the detector's error on the queries for the
``keypoints_oracle`` row's noise.
"""
from __future__ import annotations

from pathlib import Path

from pose_addon.core.dataset import Dataset, atomic_write_json

from . import MethodUnavailable

__all__ = ["run", "estimate_images"]


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
    details = {"backend": model.backend, "n_keypoints": len(model.kset)}
    if all(dataset.frame(r["id"]).depth for r in rows):
        details.update(pipeline.detection_metrics(dataset, model.kset, dets,
                                                  pipeline.pose_conf(model, c).get("min_conf", 0.5)))
        details["median_keypoint_px"] = details["median_err_px"]
        atomic_write_json(cache / "keypoints" / f"{dataset.root.name}.detector.json",
                          {"median_err_px": details["median_err_labelled_px"],
                           "median_err_visible_px": details["median_err_px"], "weights": str(model.weights)})
    details["train"] = {k: model.train_info.get(k) for k in ("train_s", "train_wall_s", "render_s", "device", "model",
                                                             "epochs", "backbone", "size")}
    if c.get("val") and model.data_yaml is not None and model.data_yaml.is_file():
        try:
            details["oks"] = yolo.validate(model.weights, model.data_yaml, cache / "ultralytics", Path(workdir),
                                           "test", int(c["imgsz"]), c["device"] or "cpu", int(c["threads"]))
        except yolo.YoloError as e:
            details["oks"] = {"error": str(e)[:300]}
    atomic_write_json(Path(workdir) / "method_metrics.json", details)
    return rows


def estimate_images(images: list[str], intrinsics: list, conf: dict, progress=None) -> list[dict]:
    """Detect the keypoints of ``conf["model"]`` (a heatmap ``model.pt`` or YOLO pose weights) in single photos and
    solve each pose.

    A heatmap model carries its keypoints; with ``conf["dataset"]`` it is refused unless trained on that dataset.

    The 3D keypoints come from ``conf["keypoints"]`` (the extension's keypoint JSON), else ``keypoints.json``
    beside the weights (written by the worker's ``train_keypoints`` job), else ``conf["dataset"]``'s scene.
    """
    import numpy as np

    from pose_addon.core.dataset import load_keypoints

    from ..keypoints import pipeline, yolo
    from ..keypoints.labels import KeypointSet, from_yolo_pixels, keypoint_set_for_dataset
    from ..keypoints.pose import solve_keypoint_pose

    c = dict(pipeline.default_conf, **conf)
    weights = Path(str(conf.get("model") or ""))
    if not weights.is_file():
        raise FileNotFoundError(f"keypoint model not found: {weights} (train one: Models panel or the bench)")
    from ..keypoints import heatmap_train

    if heatmap_train.is_heatmap_model(weights):
        return _estimate_heatmap(weights, images, intrinsics, c, progress)
    kp_json = Path(conf["keypoints"]) if conf.get("keypoints") else weights.parent / "keypoints.json"
    if kp_json.is_file():
        kps = load_keypoints(kp_json)
        kset = KeypointSet([k.name for k in kps], np.array([k.position for k in kps]))
    elif conf.get("dataset"):
        kset = keypoint_set_for_dataset(Dataset.load(conf["dataset"]), None, int(c["n_keypoints"]))
    else:
        raise FileNotFoundError(f"no keypoint set for {weights}: give conf 'keypoints' (JSON) or 'dataset'")
    cache = Path(c.get("cache") or pipeline.default_cache()).resolve()
    preds = yolo.predict(weights, images, cache / "ultralytics", int(c["imgsz"]), float(c["det_conf"]),
                         c["device"] or "cpu", int(c["threads"]))
    rows = []
    for i, (img, intr, p) in enumerate(zip(images, intrinsics, preds)):
        if p["keypoints"]:
            kp = np.asarray(p["keypoints"][0], np.float64).reshape(-1, 3)
            if len(kp) != len(kset):
                raise ValueError(f"model predicts {len(kp)} keypoints but the keypoint set has {len(kset)}")
            uv, cf = from_yolo_pixels(kp[:, :2]), kp[:, 2]
        else:
            uv, cf = np.full((len(kset), 2), np.nan), np.zeros(len(kset))
        r = solve_keypoint_pose(uv, cf, kset.points, intr, kset.names, c["pose"])
        used = [kset.names.index(n) for n in r.used] if r.success else []
        rows.append({"image": str(img), "success": bool(r.success), "cam_from_world": r.cam_from_world,
                     "inliers": len(r.used), "reproj_error_px": r.reproj_error_px if r.success else None,
                     "keypoints_used": list(r.used), "keypoints_2d": uv[used].tolist(),
                     "timings": {"total": float(p["time_s"])}, "message": r.message})
        if progress:
            progress((i + 1) / len(images), Path(img).name)
    return rows


def _estimate_heatmap(weights: Path, images: list[str], intrinsics: list, c: dict, progress=None) -> list[dict]:
    from pose_addon.core.dataset import load_keypoints

    from ..keypoints import pipeline
    from ..keypoints.heatmap_train import load_heatmap_model
    from ..keypoints.labels import KeypointSet
    from ..keypoints.pose import solve_keypoint_pose

    ds = Dataset.load(c["dataset"]) if c.get("dataset") else None
    _, meta = load_heatmap_model(weights, "cpu", ds)
    kset = KeypointSet(list(meta["names"]), meta["points"])
    if c.get("keypoints"):
        kps = load_keypoints(c["keypoints"])
        given = KeypointSet([k.name for k in kps], [k.position for k in kps])
        load_heatmap_model(weights, "cpu", None, given)  # refuses another keypoint set
    model = pipeline.KeypointModel(weights, kset, None, weights.parent, meta, "heatmap")
    dets = pipeline._detect_heatmap(model, ds, list(images), c)
    rows = []
    for i, (img, intr, d) in enumerate(zip(images, intrinsics, dets)):
        r = solve_keypoint_pose(d["uv"], d["conf"], kset.points, intr, kset.names, pipeline.pose_conf(model, c))
        used = [kset.names.index(n) for n in r.used] if r.success else []
        rows.append({"image": str(img), "success": bool(r.success), "cam_from_world": r.cam_from_world,
                     "inliers": len(r.used), "n_inliers": len(r.used),
                     "reproj_error_px": r.reproj_error_px if r.success else None,
                     "keypoints_used": list(r.used), "keypoints_2d": d["uv"][used].tolist(),
                     "timings": {"total": float(d["time_s"])}, "message": r.message})
        if progress:
            progress((i + 1) / len(images), Path(img).name)
    return rows
