"""Train BuildingPoseNetCached on cached features.

    python -m ml_backend regression train --config cfg.json --set epochs=200 --set lr=5e-4 [--resume]

Config keys (:data:`default_config`; a JSON file, then ``--set key=value`` overrides, values parsed as JSON):
features (training HDF5 from :mod:`.features`), out (run folder), seed, val_fraction (share of *viewpoints* held
out -- every augmented view of a held-out image is held out with it), epochs, batch_size, lr, weight_decay,
schedule (``cosine`` | ``plateau`` | ``none``), patience (early stopping, epochs without a better validation
score), hidden, dropout, rotation (``6d`` | ``quat``), learned_weights, beta, geodesic_weight, wandb (log to
Weights & Biases when installed; ``WANDB_MODE=offline`` works), progress.

Outputs in ``out``: ``best.pt`` and ``last.pt`` (state dicts, config, extractor meta, scene normalization, RNG
states: loadable with ``torch.load(weights_only=True)``), ``metrics.csv``, ``tb/`` (TensorBoard), ``curves.png``,
``config.json``. The validation score is ``median_t_m + median_R_deg / 2`` (1 m weighs like 2 deg).

Data-parallel: when a ``torch.distributed`` process group is set up (Ray Train's ``TorchTrainer``, torchrun;
see :mod:`ml_backend.distributed.train`), every rank draws the same permutation, takes its share of each batch
(``batch[rank::world]``), weights its loss by its share and the gradients are summed over the ranks (gloo
all-reduce), which is the gradient of the whole batch's loss; parameters stay identical on every rank and only
rank 0 writes. The checkpoints are the single-process ones (``--resume`` continues them on one machine).
"""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from pose_addon.core.dataset import atomic_write_bytes, atomic_write_json

from ..progress import progress_bar
from .features import load_features
from .model import BuildingPoseNetCached, PoseLoss, geodesic_deg

__all__ = ["default_config", "merge_config", "parse_overrides", "train", "load_checkpoint", "evaluate_features",
           "PosePredictor"]

default_config: dict[str, Any] = {
    "features": None, "out": None, "seed": 0, "val_fraction": 0.1, "epochs": 300, "batch_size": 64, "lr": 1e-3,
    "weight_decay": 1e-4, "schedule": "cosine", "patience": 60, "hidden": [1024, 512], "dropout": 0.1,
    "rotation": "6d", "learned_weights": True, "beta": 1.0, "geodesic_weight": 0.1, "wandb": False,
    "progress": True, "threads": 2, "translation": "cam",
}


def merge_config(base: Optional[dict] = None, overrides: Optional[dict] = None) -> dict:
    """``default_config`` <- ``base`` <- ``overrides``; unknown keys are an error."""
    cfg = dict(default_config)
    for d in (base or {}, overrides or {}):
        unknown = set(d) - set(default_config)
        if unknown:
            raise ValueError(f"unknown training options {sorted(unknown)}; known: {sorted(default_config)}")
        cfg.update(d)
    return cfg


def parse_overrides(items: list[str]) -> dict:
    """``["lr=1e-3", "hidden=[512]"]`` -> dict (values parsed as JSON, else kept as strings)."""
    out = {}
    for it in items:
        if "=" not in it:
            raise ValueError(f"override {it!r} is not key=value")
        k, v = it.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except ValueError:
            out[k.strip()] = v
    return out


def _normalization(x: np.ndarray, translation: str) -> dict:
    """Scene normalization of the regressed translation vectors ``x [N, 3]`` (metres)."""
    c = x.mean(0)
    s = float(np.linalg.norm(x - c, axis=1).mean())
    return {"translation": translation, "centre": c.tolist(), "scale": max(s, 1e-6)}


def _targets(T: np.ndarray, translation: str) -> np.ndarray:
    """What the net regresses from cam_from_world ``[N, 4, 4]``: ``t`` (``cam``) or the centre ``-R^T t``."""
    if translation == "cam":
        return T[:, :3, 3].copy()
    if translation == "centre":
        return -np.einsum("bji,bj->bi", T[:, :3, :3], T[:, :3, 3])
    raise ValueError(f"translation must be 'cam' or 'centre', got {translation!r}")


def _split(ids: np.ndarray, frac: float, seed: int) -> np.ndarray:
    """Bool mask ``[N]`` of validation rows: whole viewpoints (image ids) held out."""
    uniq = np.array(sorted(set(ids.tolist())))
    rng = np.random.default_rng(seed)
    n_val = int(round(frac * len(uniq))) if frac > 0 else 0
    val_ids = set(rng.choice(uniq, n_val, replace=False).tolist()) if n_val else set()
    return np.array([i in val_ids for i in ids])


def _world() -> tuple[int, int]:
    """``(world size, rank)`` of the torch.distributed process group, ``(1, 0)`` without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def _sum_over_ranks(params: list, value: float) -> float:
    """Sum every parameter's gradient (missing ones as zeros) and ``value`` over the ranks."""
    import torch.distributed as dist

    for q in params:
        if q.requires_grad:
            if q.grad is None:
                q.grad = torch.zeros_like(q)
            dist.all_reduce(q.grad, op=dist.ReduceOp.SUM)
    v = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(v, op=dist.ReduceOp.SUM)
    return float(v[0])


def _save(path: Path, obj: dict) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path | str) -> dict:
    """A checkpoint (``weights_only=True``); JSON fields (config, extractor, normalization, history) decoded."""
    from ..integrity import CorruptFile, load_torch_file

    path = Path(path)
    ck = load_torch_file(path, "regression checkpoint")  # names the file when it is truncated or foreign
    if not isinstance(ck, dict) or not {"model", "config", "extractor", "normalization"} <= set(ck):
        raise CorruptFile(path, "not a regression checkpoint (needs model, config, extractor, normalization)")
    try:
        for k in ("config", "extractor", "normalization", "history", "val_ids"):
            if isinstance(ck.get(k), str):
                ck[k] = json.loads(ck[k])
    except ValueError as e:
        raise CorruptFile(path, f"corrupt regression checkpoint ({k}: {e})") from None
    return ck


def _poses(x_norm: torch.Tensor, R: torch.Tensor, norm: dict) -> np.ndarray:
    """Normalized translations ``[B, 3]`` + rotations ``[B, 3, 3]`` -> cam_from_world ``[B, 4, 4]`` (float64).

    ``norm["translation"]`` says what was regressed: ``cam`` = ``t`` of cam_from_world (the world origin in
    camera axes), ``centre`` = the camera centre in world axes.
    """
    x = x_norm.double().numpy() * norm["scale"] + np.asarray(norm["centre"])
    Rn = R.double().numpy()
    T = np.tile(np.eye(4), (len(x), 1, 1))
    T[:, :3, :3] = Rn
    T[:, :3, 3] = x if norm.get("translation", "centre") == "cam" else -np.einsum("bij,bj->bi", Rn, x)
    return T


def evaluate_features(model: BuildingPoseNetCached, feats: np.ndarray, T_gt: np.ndarray, norm: dict) -> dict:
    """Median errors of ``model`` on features ``[N, D]`` with ground truth cam_from_world ``[N, 4, 4]``."""
    model.eval()
    with torch.no_grad():
        c, R = model(torch.from_numpy(feats).float())
    T = _poses(c, R, norm)
    Rg = T_gt[:, :3, :3]
    cg = -np.einsum("bji,bj->bi", Rg, T_gt[:, :3, 3])
    ce = -np.einsum("bji,bj->bi", T[:, :3, :3], T[:, :3, 3])
    te = np.linalg.norm(ce - cg, axis=1)
    re = geodesic_deg(torch.from_numpy(T[:, :3, :3]), torch.from_numpy(Rg)).numpy()
    return {"median_t_m": float(np.median(te)), "median_R_deg": float(np.median(re)), "n": int(len(te))}


def _plot(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    ax[0].plot(ep, [h["train_loss"] for h in history])
    ax[0].set_title("train loss")
    ax[1].plot(ep, [h["val_median_t_m"] for h in history], label="val")
    ax[1].plot(ep, [h["train_median_t_m"] for h in history], label="train")
    ax[1].set_title("median translation error (m)")
    ax[1].legend()
    ax[2].plot(ep, [h["val_median_R_deg"] for h in history], label="val")
    ax[2].plot(ep, [h["train_median_R_deg"] for h in history], label="train")
    ax[2].set_title("median rotation error (deg)")
    for a in ax:
        a.set_xlabel("epoch")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


@dataclass
class _Data:
    """Cached features and targets of a run: ``X [N, D]``, normalised centres ``C [N, 3]``, rotations
    ``Rt [N, 3, 3]`` (cam_from_world), and the row indices of training (``tr``; ``tr0`` its un-augmented views)
    and validation (``va``) samples."""

    feats: np.ndarray
    T_all: np.ndarray
    ids: np.ndarray
    val: np.ndarray
    norm: dict
    X: torch.Tensor
    C: torch.Tensor
    Rt: torch.Tensor
    tr: np.ndarray
    va: np.ndarray
    tr0: np.ndarray
    extractor_meta: dict


def _load_data(cfg: dict) -> _Data:
    data = load_features(cfg["features"])
    feats, T_all, ids, views = data["features"], data["cam_from_world"], data["image_ids"], data["view"]
    attrs = data["attrs"]
    val = _split(ids, float(cfg["val_fraction"]), int(cfg["seed"]))
    if val.all() or not (~val).any():
        raise ValueError("the validation split leaves no training viewpoints")
    x_all = _targets(T_all, cfg["translation"])
    norm = _normalization(x_all[~val & (views == 0)], cfg["translation"])
    c_norm = (x_all - np.asarray(norm["centre"])) / norm["scale"]
    X = torch.from_numpy(feats).float()
    extractor_meta = {"name": attrs.get("extractor"), "version": attrs.get("extractor_version"),
                      "preprocessing": json.loads(attrs.get("preprocessing", "{}")), "dim": int(X.shape[1])}
    return _Data(feats, T_all, ids, val, norm, X, torch.from_numpy(c_norm).float(),
                 torch.from_numpy(T_all[:, :3, :3]).float(), np.nonzero(~val)[0], np.nonzero(val & (views == 0))[0],
                 np.nonzero(~val & (views == 0))[0], extractor_meta)


def _scheduler(cfg: dict, opt: torch.optim.Optimizer):
    if cfg["schedule"] == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=int(cfg["epochs"]),
                                                          eta_min=float(cfg["lr"]) * 0.01)
    if cfg["schedule"] == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=max(1, int(cfg["patience"]) // 3))
    if cfg["schedule"] == "none":
        return None
    raise ValueError(f"unknown schedule {cfg['schedule']!r}; choose cosine, plateau or none")


class _Loggers:
    """TensorBoard (and wandb when asked and installed) on the writing rank; nothing on the others."""

    def __init__(self, cfg: dict, out: Path, start: int, lead: bool):
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(str(out / "tb"), purge_step=start) if lead else None
        self.wb = None
        if cfg["wandb"] and lead:
            try:
                import wandb

                self.wb = wandb.init(project="building-pose", config=cfg, dir=str(out), resume="allow")
            except ImportError:
                print("wandb requested but not installed; logging to CSV and TensorBoard only")

    def log(self, rec: dict, epoch: int) -> None:
        for k, v in rec.items():
            if k != "epoch" and self.tb is not None:
                self.tb.add_scalar(k, v, epoch)
        if self.wb is not None:
            self.wb.log(rec, step=epoch)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wb is not None:
            self.wb.finish()


def _train_epoch(model, crit, opt, params: list, d: _Data, gen: torch.Generator, bs: int, rank: int,
                 world: int) -> float:
    """One pass over the training rows in a shuffled order (each rank its share of every batch); mean loss."""
    model.train()
    perm = d.tr[torch.randperm(len(d.tr), generator=gen).numpy()]
    tot, nb = 0.0, 0
    for i in range(0, len(perm), bs):
        b = torch.from_numpy(perm[i:i + bs])
        mine = b[rank::world]
        opt.zero_grad()
        part = 0.0
        if len(mine):
            c_p, R_p = model(d.X[mine])
            loss, _ = crit(c_p, R_p, d.C[mine], d.Rt[mine])
            (loss * (len(mine) / len(b))).backward()
            part = float(loss.detach()) * (len(mine) / len(b))
        if world > 1:
            part = _sum_over_ranks(params, part)
        opt.step()
        tot += part
        nb += 1
    return tot / max(nb, 1)


def _validate(model, d: _Data) -> tuple[dict, dict, float]:
    """Median errors on the validation and the (un-augmented) training views, and the score to minimise."""
    ev = evaluate_features(model, d.feats[d.va], d.T_all[d.va], d.norm) if len(d.va) else \
        {"median_t_m": math.nan, "median_R_deg": math.nan}
    et = evaluate_features(model, d.feats[d.tr0], d.T_all[d.tr0], d.norm)
    score = ev["median_t_m"] + ev["median_R_deg"] / 2 if len(d.va) else et["median_t_m"] + et["median_R_deg"] / 2
    return ev, et, score


def train(config: dict, resume: bool = False) -> Path:
    """Train with ``config`` (see :data:`default_config`); returns the path of ``best.pt``.

    With ``resume`` and an existing ``out/last.pt``, training continues from it (model, optimizer, schedule,
    early-stopping state and RNG states restored), ending where an uninterrupted run would.
    """
    cfg = merge_config(config)
    if not cfg["features"] or not cfg["out"]:
        raise ValueError("training needs 'features' (an HDF5 file from extract) and 'out' (a run folder)")
    torch.set_num_threads(int(cfg["threads"]))
    world, rank = _world()
    lead = rank == 0  # the rank that writes (every rank holds the same parameters)
    out = Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    d = _load_data(cfg)

    torch.manual_seed(int(cfg["seed"]))
    gen = torch.Generator().manual_seed(int(cfg["seed"]))
    model = BuildingPoseNetCached(d.X.shape[1], tuple(cfg["hidden"]), cfg["rotation"], float(cfg["dropout"]))
    crit = PoseLoss(bool(cfg["learned_weights"]), float(cfg["beta"]), geodesic_weight=float(cfg["geodesic_weight"]))
    params = list(model.parameters()) + list(crit.parameters())
    opt = torch.optim.AdamW(params, lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"]))
    sched = _scheduler(cfg, opt)
    start, best, bad, history = 0, math.inf, 0, []
    last_path, best_path = out / "last.pt", out / "best.pt"
    if resume and last_path.is_file():
        ck = load_checkpoint(last_path)
        model.load_state_dict(ck["model"])
        crit.load_state_dict(ck["loss"])
        opt.load_state_dict(ck["optimizer"])
        if sched is not None and ck.get("scheduler"):
            sched.load_state_dict(ck["scheduler"])
        start, best, bad, history = int(ck["epoch"]) + 1, float(ck["best_score"]), int(ck["bad_epochs"]), ck["history"]
        torch.set_rng_state(ck["rng_torch"])
        gen.set_state(ck["rng_gen"])
    if world > 1:  # other dropout masks per rank; the permutation generator stays shared
        torch.manual_seed(int(cfg["seed"]) * 1000 + 1 + rank)
    if lead:
        atomic_write_json(out / "config.json", cfg)
    logs = _Loggers(cfg, out, start, lead)
    bar = progress_bar(range(start, int(cfg["epochs"])), desc="train", unit="epoch",
                       disable=not cfg["progress"] or not lead, initial=start, total=int(cfg["epochs"]))
    for epoch in bar:
        loss = _train_epoch(model, crit, opt, params, d, gen, int(cfg["batch_size"]), rank, world)
        ev, et, score = _validate(model, d)
        lr = opt.param_groups[0]["lr"]
        if sched is not None:
            sched.step(score) if cfg["schedule"] == "plateau" else sched.step()
        rec = {"epoch": epoch, "lr": lr, "train_loss": loss, "val_median_t_m": ev["median_t_m"],
               "val_median_R_deg": ev["median_R_deg"], "train_median_t_m": et["median_t_m"],
               "train_median_R_deg": et["median_R_deg"], "val_score": score,
               "s_t": crit.s_t.item(), "s_R": crit.s_r.item()}
        history.append(rec)
        logs.log(rec, epoch)
        improved = score < best - 1e-9
        best, bad = (score, 0) if improved else (best, bad + 1)
        ck = {"model": model.state_dict(), "loss": crit.state_dict(), "optimizer": opt.state_dict(),
              "scheduler": sched.state_dict() if sched is not None else {}, "epoch": epoch, "best_score": best,
              "bad_epochs": bad, "rng_torch": torch.get_rng_state(), "rng_gen": gen.get_state(),
              "config": json.dumps(cfg), "extractor": json.dumps(d.extractor_meta),
              "normalization": json.dumps(d.norm), "history": json.dumps(history),
              "val_ids": json.dumps(sorted(set(d.ids[d.val].tolist()))), "val_metrics": json.dumps(ev)}
        if improved and lead:
            _save(best_path, ck)
        if lead:
            _save(last_path, ck)
        bar.set_postfix(val_t=f"{ev['median_t_m']:.2f}", val_R=f"{ev['median_R_deg']:.2f}", best=f"{best:.3f}")
        if bad >= int(cfg["patience"]):
            break
    logs.close()
    if lead:
        _write_csv(out / "metrics.csv", history)
        if history:
            _plot(history, out / "curves.png")
    return best_path


def _write_csv(path: Path, history: list[dict]) -> None:
    if not history:
        return
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(history[0]))
    w.writeheader()
    w.writerows(history)
    atomic_write_bytes(path, buf.getvalue().encode())


class PosePredictor:
    """Loads a checkpoint and its extractor; predicts ``cam_from_world [4, 4]`` (OpenCV axes) per RGB image.

    Args:
        checkpoint: ``best.pt`` / ``last.pt``.
        random_weights: tests only -- build the extractor without loading its weights.
        checkpoint_extractor: weight file of a ``clip:<arch>`` extractor.
    """

    def __init__(self, checkpoint: Path | str, random_weights: bool = False,
                 checkpoint_extractor: Optional[str] = None):
        from .extractors import create_extractor

        ck = load_checkpoint(checkpoint)
        cfg, meta = ck["config"], ck["extractor"]
        self.extractor = create_extractor(meta["name"], checkpoint_extractor, random_weights=random_weights)
        if self.extractor.meta()["version"] != meta["version"] and not random_weights:
            raise ValueError(f"checkpoint was trained on {meta['name']} weights {meta['version']}, but "
                             f"{self.extractor.meta()['version']} is loaded")
        self.model = BuildingPoseNetCached(int(meta["dim"]), tuple(cfg["hidden"]), cfg["rotation"],
                                           float(cfg["dropout"]))
        self.model.load_state_dict(ck["model"])
        self.model.eval()
        self.norm = ck["normalization"]
        self.checkpoint = ck

    def predict_features(self, feats: np.ndarray) -> np.ndarray:
        """Features ``[N, D]`` -> cam_from_world ``[N, 4, 4]``."""
        with torch.no_grad():
            c, R = self.model(torch.from_numpy(np.asarray(feats)).float())
        return _poses(c, R, self.norm)

    def predict_images(self, images: list[np.ndarray]) -> np.ndarray:
        """RGB uint8 images ``[H, W, 3]`` -> cam_from_world ``[N, 4, 4]``."""
        from .extractors import to_tensor

        out = []
        for img in images:
            out.append(self.extractor(to_tensor([img])).numpy())
        return self.predict_features(np.concatenate(out))
