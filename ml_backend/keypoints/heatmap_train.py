"""Training of the heatmap keypoint model (:mod:`.heatmap`): random crops of labelled views, time-bounded,
resumable, with curves; the saved model records the keypoints and the digest of the dataset it was trained on.

Samples: each labelled view (``[H, W, 3]`` image, keypoints ``uv [K, 2]`` OpenCV px, visibility ``vis [K]``: 2
visible, 1 occluded, 0 outside) gives crops in four regimes matching the detector's passes: the whole image
letterboxed (pass 1), a loose crop of 1.6-3.2 times the keypoints' extent, a tight crop of 1.1-1.6 times it
(the refining passes use 1.35), and a close-up of 0.45-0.9 times it centred near one keypoint (the detector's
close-ups use 0.5 x 1.35), each rotated a little, with colour, blur, noise and JPEG jitter.

Loss: per keypoint in the crop, the cross entropy between the softmax of its heatmap and a Gaussian of
``sigma_cells`` around the true position (occluded keypoints weighted ``occluded_weight``), plus binary cross
entropies of the presence head (the keypoint lies in the crop) and, for the keypoints in the crop, of the
visibility head (it is seen, not occluded).

Files in ``out_dir``: ``checkpoint.pt`` (after every epoch, atomic; resumed from), ``model.pt`` (final),
``model.json`` (the model's metadata and history), ``curves.png``. Everything is read back with
``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from pose_addon.core.dataset import Dataset, atomic_write_json

from ..integrity import load_torch_file
from ..progress import write as progress_write
from .heatmap import (
    DETECTOR_ZOOM,
    HIDDEN_WEIGHT,
    STRIDE,
    KeypointHeatNet,
    TwoPassDetector,
    apply_affine,
    crop_affine,
    input_to_cell,
    load_image_rgb,
    resolve_device,
    to_tensor,
    warp_crop,
)
from .labels import OCCLUDED, VISIBLE, KeypointSet, frame_keypoints

__all__ = ["TrainView", "default_train_conf", "load_views", "make_sample", "train_heatmap", "load_heatmap_model",
           "ModelMismatch", "MODEL_FORMAT", "dataset_digest", "plot_curves", "is_heatmap_model",
           "detector_for"]

MODEL_FORMAT = "building-pose-heatmap-keypoints"

default_train_conf: dict = {
    "size": 224,  # crop side (network input, px)
    "width": 48,  # FPN channels
    "batch": 12,
    "time_s": 1800.0,  # training wall-time budget (the loop stops after the batch that passes it; a larger one
    # continues a finished run)
    "samples_per_epoch": 240,  # crops per epoch (a checkpoint after each)
    "lr": 1e-3,
    "weight_decay": 1e-4,
    "freeze": "s8",  # ImageNet layers kept fixed up to this stage: "none", "s4" or "s8" (stride 8; their backward
    # pass at high resolution costs more than the rest of the step on a CPU)
    "sigma_cells": 1.25,
    "occluded_weight": 0.5,
    "presence_weight": 0.2,
    "visibility_weight": 0.2,
    "p_whole": 0.15,  # share of whole-image crops
    "p_loose": 0.2,  # share of loose crops
    "p_zoom": 0.3,  # share of close-ups around one keypoint (the rest are tight)
    "rot_deg": 6.0,
    "blender_share": 0.35,  # share of crops drawn from the Blender-rendered views (the rest: worker GL views)
    "val_views": 24,  # views held out for the validation curve
    "seed": 0,
    "threads": 2,
    "device": None,  # None / "auto": CUDA when available
    "pretrained": True,  # False only in tests of code paths
    "progress": True,
}


class ModelMismatch(ValueError):
    """A keypoint model used with another dataset or keypoint set than it was trained on."""


@dataclass
class TrainView:
    """One labelled view: ``rgb [H, W, 3]`` uint8, ``uv [K, 2]`` OpenCV px, ``vis [K]`` (2/1/0), ``source``."""

    rgb: np.ndarray
    uv: np.ndarray
    vis: np.ndarray
    source: str
    id: str


def dataset_digest(dataset: Dataset) -> str:
    """The identity a keypoint model records: :meth:`Dataset.digest` of the dataset's reference frames."""
    return dataset.digest(dataset.reference_frames())


def load_views(dataset: Dataset, frames: Sequence, kset: KeypointSet, source: str) -> list[TrainView]:
    """Labelled views of ``frames`` (depth-tested visibility; frames without depth count every in-image point)."""
    out = []
    for f in frames:
        uv, vis = frame_keypoints(kset, f, dataset.read_depth(f) if f.depth else None)
        if (vis >= OCCLUDED).sum() < 2:
            continue
        out.append(TrainView(load_image_rgb(dataset.path(f.image)), np.nan_to_num(uv, nan=-1e4), vis, source, f.id))
    return out


def _photometric(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = img.astype(np.float32)
    if rng.random() < 0.8:  # brightness / contrast / per-channel gain
        out = (out - 128.0) * rng.uniform(0.7, 1.3) + 128.0 + rng.uniform(-30, 30)
        out *= rng.uniform(0.9, 1.1, size=3)[None, None, :]
    if rng.random() < 0.5:  # saturation
        g = out.mean(2, keepdims=True)
        out = g + (out - g) * rng.uniform(0.5, 1.4)
    if rng.random() < 0.4:
        out = 255.0 * (np.clip(out / 255.0, 0, 1) ** rng.uniform(0.7, 1.4))
    if rng.random() < 0.35:
        out = cv2.GaussianBlur(out, (0, 0), float(rng.uniform(0.3, 1.3)))
    if rng.random() < 0.6:
        out += rng.normal(0, rng.uniform(1.0, 6.0), out.shape)
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(60, 95))])
        out = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return out


def keypoint_extent(uv: np.ndarray, vis: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre ``[2]`` and longest side (px) of the box of the in-image keypoints."""
    p = uv[vis >= OCCLUDED]
    lo, hi = p.min(0), p.max(0)
    return (lo + hi) / 2.0, float(max((hi - lo).max(), 8.0))


def make_sample(view: TrainView, rng: np.random.Generator, size: int, conf: dict,
                regime: Optional[str] = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One augmented crop: ``(crop [S, S, 3] uint8, uv [K, 2] input px, vis [K] in the crop, 0 outside)``.

    ``regime``: ``whole``, ``loose``, ``tight`` or ``zoom`` (default: drawn with ``p_whole`` / ``p_loose`` /
    ``p_zoom``); ``"eval"``: the refining pass's crop (1.35 x the extent, no jitter, no photometric change).
    """
    h, w = view.rgb.shape[:2]
    c, ext = keypoint_extent(view.uv, view.vis)
    angle = 0.0
    if regime is None:
        r, edges = rng.random(), np.cumsum([conf["p_whole"], conf["p_loose"], conf.get("p_zoom", 0.0)])
        regime = ("whole", "loose", "zoom", "tight")[int(np.searchsorted(edges, r, side="right"))]
    if regime == "eval":
        side = 1.35 * ext
    elif regime == "whole":
        c = np.array([(w - 1) / 2.0, (h - 1) / 2.0]) + rng.uniform(-0.03, 0.03, 2) * max(w, h)
        side = max(w, h) * rng.uniform(0.95, 1.12)
    elif regime == "zoom":
        side = ext * math.exp(rng.uniform(math.log(0.45), math.log(0.9)))
        c = view.uv[rng.choice(np.nonzero(view.vis >= OCCLUDED)[0])] + rng.uniform(-0.06, 0.06, 2) * side
    elif regime == "loose":
        side = ext * math.exp(rng.uniform(math.log(1.6), math.log(3.2)))
        c = c + rng.uniform(-0.15, 0.15, 2) * side
    else:
        side = ext * rng.uniform(1.1, 1.6)
        c = c + rng.uniform(-0.07, 0.07, 2) * side
    if regime != "eval":
        angle = float(np.clip(rng.normal(0, conf["rot_deg"] / 2), -conf["rot_deg"], conf["rot_deg"]))
    A = crop_affine(c, side, size, angle)
    border = 114.0 if regime == "eval" else float(rng.uniform(0, 255))
    crop = warp_crop(view.rgb, A, size, border)
    if regime != "eval":
        crop = _photometric(crop, rng)
    uv = apply_affine(A, view.uv)
    inside = (uv >= 0).all(1) & (uv <= size - 1).all(1)
    vis = np.where(inside, view.vis, 0)
    return crop, uv, vis


def _gaussian_targets(uv_in: np.ndarray, hw: tuple, sigma: float) -> np.ndarray:
    """``[B, K, h, w]`` normalized Gaussians at ``uv_in [B, K, 2]`` (input px)."""
    h, w = hw
    cell = input_to_cell(uv_in)
    xs, ys = np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)
    gx = np.exp(-0.5 * ((xs[None, None, :] - cell[..., 0:1]) / sigma) ** 2)
    gy = np.exp(-0.5 * ((ys[None, None, :] - cell[..., 1:2]) / sigma) ** 2)
    t = gy[..., :, None] * gx[..., None, :]
    return (t / np.clip(t.sum((2, 3), keepdims=True), 1e-12, None)).astype(np.float32)


def loss_fn(logits: torch.Tensor, presence: torch.Tensor, visible: torch.Tensor, uv: np.ndarray, vis: np.ndarray,
            conf: dict) -> torch.Tensor:
    """Heatmap cross entropy + presence and visibility BCE (see the module docstring); ``visible`` ``[B, K]``
    logits."""
    B, K, h, w = logits.shape
    target = torch.from_numpy(_gaussian_targets(uv, (h, w), conf["sigma_cells"])).to(logits.device)
    wts = np.where(vis == VISIBLE, 1.0, np.where(vis == OCCLUDED, conf["occluded_weight"], 0.0)).astype(np.float32)
    wt = torch.from_numpy(wts).to(logits.device)
    logp = torch.log_softmax(logits.view(B, K, -1), -1)
    ce = -(target.view(B, K, -1) * logp).sum(-1)
    hm = (ce * wt).sum() / wt.sum().clamp(min=1.0)
    in_crop = torch.from_numpy((vis >= OCCLUDED).astype(np.float32)).to(logits.device)
    seen = torch.from_numpy((vis == VISIBLE).astype(np.float32)).to(logits.device)
    vis_bce = F.binary_cross_entropy_with_logits(visible, seen, reduction="none")
    return (hm + conf["presence_weight"] * F.binary_cross_entropy_with_logits(presence, in_crop)
            + conf["visibility_weight"] * (vis_bce * in_crop).sum() / in_crop.sum().clamp(min=1.0))


def _atomic_torch_save(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def plot_curves(history: list[dict], path: Path) -> Path:
    """Training loss and validation median keypoint error per epoch, as a PNG (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    ax[0].plot(ep, [h["loss"] for h in history], "-o", ms=3)
    ax[0].set_xlabel("epoch")
    ax[0].set_ylabel("training loss")
    ax[0].grid(alpha=0.3)
    ax[1].plot(ep, [h["val_median_px"] for h in history], "-o", ms=3, label="median")
    ax[1].plot(ep, [h["val_p90_px"] for h in history], "-o", ms=3, label="90th percentile")
    if any(np.isfinite(h.get("val_zoom_median_px", math.nan)) for h in history):
        ax[1].plot(ep, [h.get("val_zoom_median_px", math.nan) for h in history], "-o", ms=3,
                   label="median, close-ups")
    ax[1].set_yscale("log")
    ax[1].set_xlabel("epoch")
    ax[1].set_ylabel("validation keypoint error (image px)")
    ax[1].legend()
    ax[1].grid(alpha=0.3, which="both")
    t = history[-1]["elapsed_s"] if history else 0
    fig.suptitle(f"heatmap keypoints: {len(history)} epochs, {t / 60:.1f} min")
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)
    return path


@torch.no_grad()
def _validate(model: KeypointHeatNet, views: list[TrainView], size: int, device: str,
              zoom: float = 0.0) -> tuple[float, float, float]:
    """Median and 90th percentile error (image px) of visible keypoints on tight (evaluation) crops, and with
    ``zoom`` > 0 the median error of close-ups (the detector's: ``zoom`` x the tight side) of one visible keypoint
    per view, centred 2 px off it (NaN without)."""
    from .heatmap import decode_heatmaps, invert_affine

    model.eval()
    errs, zoom_errs = [], []
    for i, v in enumerate(views):
        c, ext = keypoint_extent(v.uv, v.vis)
        A = crop_affine(c, 1.35 * ext, size)
        logits, pres, _ = model(to_tensor(warp_crop(v.rgb, A, size)[None]).to(device))
        xy, _ = decode_heatmaps(logits, pres)
        uv = apply_affine(invert_affine(A), xy[0])
        ok = v.vis == VISIBLE
        errs.append(np.linalg.norm(uv[ok] - v.uv[ok], axis=1))
        if zoom > 0 and ok.any():
            k = np.nonzero(ok)[0][i % int(ok.sum())]
            Az = crop_affine(v.uv[k] + np.array([1.2, -1.6]), zoom * 1.35 * ext, size)
            logits, pres, _ = model(to_tensor(warp_crop(v.rgb, Az, size)[None]).to(device))
            xy, _ = decode_heatmaps(logits[:, k:k + 1], pres[:, k:k + 1])
            zoom_errs.append(float(np.linalg.norm(apply_affine(invert_affine(Az), xy[0]) - v.uv[k])))
    model.train()
    e = np.concatenate(errs) if errs else np.array([np.inf])
    return float(np.median(e)), float(np.percentile(e, 90)), float(np.median(zoom_errs)) if zoom_errs else math.nan


def _frozen_modules(model: KeypointHeatNet, freeze: str) -> list:
    if freeze not in ("none", "s4", "s8"):
        raise ValueError(f"freeze must be none, s4 or s8, got {freeze!r}")
    return {"none": [], "s4": [model.stem, model.s4], "s8": [model.stem, model.s4, model.s8]}[freeze]


def _set_train_mode(model: KeypointHeatNet, freeze: str) -> None:
    model.train()
    for m in _frozen_modules(model, freeze):
        m.eval()


def train_heatmap(views: list[TrainView], kset: KeypointSet, out_dir: Path | str, digest: str,
                  conf: Optional[dict] = None, on_event: Optional[Callable[[dict], None]] = None,
                  meta_extra: Optional[dict] = None) -> Path:
    """Train (or resume) the heatmap model on ``views``; returns the path of ``model.pt``.

    Args:
        views: labelled views; ``val_views`` of them (at random, at most a fifth) are held out for the curve.
        kset: the keypoints the views are labelled with.
        out_dir: checkpoint, model, metadata and curves (see the module docstring).
        digest: the training dataset's identity (:func:`dataset_digest`), recorded in the model.
        on_event: progress events ``{"event": "progress", "done", "total", "message", "loss", "elapsed_s"}``.

    A ``checkpoint.pt`` from a run with another keypoint set, dataset or configuration is refused (ValueError
    naming it); delete it to start over. A larger ``time_s`` continues a finished run.
    """
    c = dict(default_train_conf, **(conf or {}))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(int(c["threads"]))
    device = resolve_device(c["device"])
    train, val = _split_views(views, c)
    identity = {"format": MODEL_FORMAT, "version": 1, "names": list(kset.names), "points": kset.points.tolist(),
                "keypoints_digest": kset.digest(), "dataset_digest": digest, "size": int(c["size"]),
                "stride": STRIDE, "width": int(c["width"]),
                "train_conf": {k: c[k] for k in sorted(c) if k not in ("progress", "device", "threads", "time_s")}}
    model = KeypointHeatNet(len(kset), int(c["width"]), bool(c["pretrained"])).to(device)
    for m in _frozen_modules(model, str(c["freeze"])):
        for p in m.parameters():
            p.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=float(c["lr"]),
                            weight_decay=float(c["weight_decay"]))
    ckpt_path, model_path = out / "checkpoint.pt", out / "model.pt"
    st = _resume(ckpt_path, identity, model, opt)
    budget = float(c["time_s"])
    from ..progress import progress_bar

    # one bar over the whole time budget, in thousandths: in a job every update is a progress event of the training
    bar = progress_bar(total=1000, initial=_permille(st.elapsed, budget), desc="keypoints training",
                       disable=not c["progress"], file=sys.stderr,
                       bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}")
    while st.elapsed < budget:
        t_ep, cpu_ep = time.perf_counter(), time.process_time()
        loss = _train_epoch(model, opt, train, c, device, st, bar)
        t_v = time.perf_counter()
        med, p90, zmed = (_validate(model, val, int(c["size"]), device, DETECTOR_ZOOM if c.get("p_zoom") else 0.0)
                          if val else (math.nan, math.nan, math.nan))
        st.elapsed += time.perf_counter() - t_v
        bar.update(max(0, _permille(st.elapsed, budget) - bar.n))
        st.epoch += 1
        st.history.append({"epoch": st.epoch, "step": st.step, "loss": loss, "val_median_px": med,
                           "val_p90_px": p90, "val_zoom_median_px": zmed, "elapsed_s": round(st.elapsed, 1),
                           "lr": st.lr,
                           "epoch_wall_s": round(time.perf_counter() - t_ep, 1),
                           "epoch_cpu_s": round(time.process_time() - cpu_ep, 1),
                           "load_avg": round(os.getloadavg()[0], 2)})
        _atomic_torch_save({"identity": identity, "model": model.state_dict(), "opt": opt.state_dict(),
                            "epoch": st.epoch, "step": st.step, "elapsed_s": st.elapsed, "history": st.history},
                           ckpt_path)
        plot_curves(st.history, out / "curves.png")
        msg = (f"epoch {st.epoch}: loss {loss:.3f}, validation median {med:.2f} px (p90 {p90:.1f}"
               + (f", close-ups {zmed:.2f} px" if np.isfinite(zmed) else "") + f"), "
               f"{st.elapsed / 60:.1f}/{budget / 60:.0f} min")
        if on_event:
            on_event({"event": "progress", "done": min(st.elapsed, budget), "total": budget, "message": msg,
                      "loss": loss, "elapsed_s": st.elapsed, "val_median_px": med})
        elif c["progress"]:
            progress_write(f"[keypoints] {msg}")  # above the bar, in a terminal or the job's log
        st.val_txt = f", validation median {med:.1f} px"
    bar.close()
    meta = dict(identity, backbone=model.backbone_version, history=st.history, epochs=st.epoch, steps=st.step,
                train_s=float(st.elapsed), device=device, n_train_views=len(train), n_val_views=len(val),
                **(meta_extra or {}))
    _atomic_torch_save({"meta": meta, "state_dict": model.state_dict()}, model_path)
    atomic_write_json(out / "model.json", meta)
    return model_path


@dataclass
class _State:
    """Where a training run is: epochs and steps done, training seconds spent, the history of epochs."""

    epoch: int = 0
    step: int = 0
    elapsed: float = 0.0
    history: list = field(default_factory=list)
    lr: float = 0.0
    val_txt: str = ""


def _split_views(views: list[TrainView], c: dict) -> tuple[list[TrainView], list[TrainView]]:
    """``(train, val)``: ``val_views`` views at random (at most a fifth) held out for the validation curve."""
    order = np.random.default_rng(int(c["seed"])).permutation(len(views))
    n_val = min(int(c["val_views"]), max(0, len(views) // 5))
    train = [views[i] for i in order[n_val:]]
    if not train:
        raise ValueError("no labelled training views (every view shows fewer than 2 keypoints)")
    return train, [views[i] for i in order[:n_val]]


def _resume(ckpt_path: Path, identity: dict, model: KeypointHeatNet, opt: torch.optim.Optimizer) -> _State:
    """The state of ``ckpt_path`` loaded into ``model`` and ``opt`` (a fresh state without one); ValueError when
    the checkpoint belongs to another training."""
    if not ckpt_path.is_file():
        return _State()
    ck = load_torch_file(ckpt_path, "keypoint training checkpoint")
    if ck.get("identity") != identity:
        raise ValueError(f"{ckpt_path} belongs to another training (keypoints, dataset or configuration "
                         f"differ); delete it to start over")
    model.load_state_dict(ck["model"])
    opt.load_state_dict(ck["opt"])
    return _State(int(ck["epoch"]), int(ck["step"]), float(ck["elapsed_s"]), list(ck["history"]))


def _train_epoch(model: KeypointHeatNet, opt: torch.optim.Optimizer, train: list[TrainView], c: dict, device: str,
                 st: _State, bar) -> float:
    """``samples_per_epoch`` crops in batches (Blender-rendered views drawn with ``blender_share``), warm-up then
    cosine learning rate over the time budget; stops early when the budget is spent. Mean loss."""
    rng = np.random.default_rng([int(c["seed"]), st.epoch])
    _set_train_mode(model, str(c["freeze"]))
    blender = [v for v in train if v.source == "blender"]
    other = [v for v in train if v.source != "blender"]
    size, budget, batch = int(c["size"]), float(c["time_s"]), int(c["batch"])
    losses: list[float] = []
    done = 0
    while done < int(c["samples_per_epoch"]):
        t_b = time.perf_counter()
        crops, uvs, viss = [], [], []
        for _ in range(batch):
            pool = blender if blender and (not other or rng.random() < c["blender_share"]) else other
            cr, uv, vs = make_sample(pool[int(rng.integers(len(pool)))], rng, size, c)
            crops.append(cr)
            uvs.append(uv)
            viss.append(vs)
        frac = min(1.0, st.elapsed / budget)
        st.lr = float(c["lr"]) * min(1.0, (st.step + 1) / 30.0) * max(0.02, 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = st.lr
        logits, pres, visible = model(to_tensor(np.stack(crops)).to(device))
        loss = loss_fn(logits, pres, visible, np.stack(uvs), np.stack(viss), c)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        st.step += 1
        done += batch
        losses.append(loss.item())
        st.elapsed += time.perf_counter() - t_b
        bar.set_postfix_str(f"epoch {st.epoch + 1}, loss {losses[-1]:.3f}{st.val_txt}, "
                            f"{st.elapsed / 60:.1f}/{budget / 60:.1f} min")
        bar.update(max(0, _permille(st.elapsed, budget) - bar.n))
        if st.elapsed >= budget:
            break
    return float(np.mean(losses))


def _permille(elapsed: float, budget: float) -> int:
    """Thousandths of the time budget spent (1000 once it is)."""
    return 1000 if budget <= 0 else min(1000, int(1000 * elapsed / budget))


def is_heatmap_model(path: Path | str) -> bool:
    """Whether ``path`` is a heatmap keypoint ``model.pt`` (False for YOLO weights or anything else)."""
    try:
        ck = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception:  # YOLO checkpoints hold pickled modules: weights_only refuses them
        return False
    return isinstance(ck, dict) and isinstance(ck.get("meta"), dict) and ck["meta"].get("format") == MODEL_FORMAT


def load_heatmap_model(path: Path | str, device: Optional[str] = None,
                       dataset: Optional[Dataset] = None, kset: Optional[KeypointSet] = None
                       ) -> tuple[KeypointHeatNet, dict]:
    """A trained model and its metadata from ``model.pt`` (``torch.load(weights_only=True)``).

    Raises:
        FileNotFoundError: no such file. ValueError: not a heatmap keypoint model.
        ModelMismatch: ``dataset`` (by :func:`dataset_digest`) or ``kset`` differ from those it was trained on.
    """
    path = Path(path)
    ck = load_torch_file(path, "keypoint model")
    meta = ck.get("meta") if isinstance(ck, dict) else None
    if not meta or meta.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path} is not a heatmap keypoint model (format {MODEL_FORMAT!r})")
    if dataset is not None:
        d = dataset_digest(dataset)
        if d != meta["dataset_digest"]:
            raise ModelMismatch(f"keypoint model {path} was trained on dataset {meta['dataset_digest']} "
                                f"({meta.get('dataset', '?')}), not on {dataset.root} ({d}); train one for it")
    if kset is not None and (list(kset.names) != list(meta["names"])
                             or not np.allclose(kset.points, np.asarray(meta["points"]), atol=1e-4)):
        raise ModelMismatch(f"keypoint model {path} was trained on other keypoints ({len(meta['names'])}: "
                            f"{meta['keypoints_digest']}) than given ({len(kset)}: {kset.digest()})")
    model = KeypointHeatNet(len(meta["names"]), int(meta["width"]), pretrained=False,
                            visibility="visible.weight" in ck["state_dict"])
    model.load_state_dict(ck["state_dict"])
    return model.to(resolve_device(device)).eval(), meta


def detector_for(path: Path | str, device: Optional[str] = None, dataset: Optional[Dataset] = None,
                 kset: Optional[KeypointSet] = None, passes: int = 2,
                 zoom: Optional[float] = None, hidden_weight: Optional[float] = None) -> tuple[TwoPassDetector, dict]:
    """A :class:`TwoPassDetector` of a saved model (see :func:`load_heatmap_model`).

    ``zoom``: close-up side (share of the last crop; 0: none); None: :data:`.heatmap.DETECTOR_ZOOM` for a model trained
    with close-ups, none for one trained without. ``hidden_weight``: None for
    :data:`.heatmap.HIDDEN_WEIGHT`.
    """
    model, meta = load_heatmap_model(path, device, dataset, kset)
    if zoom is None:
        zoom = DETECTOR_ZOOM if float(meta.get("train_conf", {}).get("p_zoom", 0.0)) > 0 else 0.0
    det = TwoPassDetector(model, int(meta["size"]), resolve_device(device), passes, zoom=float(zoom),
                          hidden_weight=HIDDEN_WEIGHT if hidden_weight is None else float(hidden_weight))
    return det, meta
