"""Regression training on the Ray cluster with Ray Train's ``TorchTrainer`` (gloo on CPU, NCCL with GPUs).

Every worker runs :func:`ml_backend.regression.train.train` in a torch.distributed process group set up by Ray
Train; that function shares each batch between the ranks and sums their gradients (see its module docstring),
and rank 0 writes ``best.pt`` / ``last.pt`` into the run folder, which must be on storage every node sees. The
checkpoints are the single-machine ones: ``python -m ml_backend regression train --resume`` continues them on one
machine, and this trainer continues them too (``resume``). When a worker dies, Ray Train restarts the group (up to
``max_failures`` times) and the restarted run resumes from ``last.pt``.

    python -m ml_backend regression train --config cfg.json --ray local|HOST:PORT --ray-workers 2 [--resume]

Keypoint training (ultralytics YOLO) is not distributed here: ultralytics runs its own DDP
(``torchrun``-style, ``device=0,1,...``) on one machine's GPUs.
"""
from __future__ import annotations

import uuid
from pathlib import Path

__all__ = ["train_regression"]


def _loop(cfg: dict) -> None:
    """One Ray Train worker: train (resuming when this is a restart of the same run)."""
    import torch.distributed as dist

    from ..regression.train import train

    out = Path(cfg["config"]["out"])
    marker = out / f".ray-train-{cfg['run_id']}"
    restarted = marker.is_file()  # written by rank 0 of an earlier attempt of this run
    if dist.is_initialized():
        dist.barrier()
    if dist.get_rank() == 0 and not restarted:
        out.mkdir(parents=True, exist_ok=True)
        marker.write_text("started\n")
    if dist.is_initialized():
        dist.barrier()
    train(cfg["config"], resume=bool(cfg["resume"]) or restarted)


def train_regression(config: dict, resume: bool = False, num_workers: int = 2, use_gpu: bool = False,
                     cpus_per_worker: float = 1.0, max_failures: int = 2) -> Path:
    """Train on ``num_workers`` Ray Train workers; returns the path of ``best.pt`` (as the single-machine
    :func:`~ml_backend.regression.train.train`).

    Args:
        config: the training config (see :data:`ml_backend.regression.train.default_config`); its ``out``
            folder and ``features`` file must be on shared storage.
        resume: continue from ``out/last.pt`` (written by this trainer or by a single-machine run).
        max_failures: restarts of the worker group after a worker died (each resumes from ``last.pt``).
    """
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from ..regression.train import merge_config

    cfg = merge_config(config)
    if not cfg["features"] or not cfg["out"]:
        raise ValueError("training needs 'features' (an HDF5 file from extract) and 'out' (a run folder)")
    out = Path(cfg["out"]).resolve()
    cfg.update(out=str(out), features=str(Path(cfg["features"]).resolve()), threads=max(1, int(cpus_per_worker)))
    run_id = uuid.uuid4().hex[:12]
    trainer = TorchTrainer(
        _loop, train_loop_config={"config": cfg, "resume": resume, "run_id": run_id},
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(num_workers=num_workers, use_gpu=use_gpu,
                                               resources_per_worker={"CPU": cpus_per_worker}),
        run_config=ray.train.RunConfig(name=f"regression-{run_id}", storage_path=str(out / "ray_train"),
                                       failure_config=ray.train.FailureConfig(max_failures=max_failures)))
    trainer.fit()
    (out / f".ray-train-{run_id}").unlink(missing_ok=True)
    return out / "best.pt"
