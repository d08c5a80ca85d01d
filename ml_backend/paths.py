"""Folders of this checkout the worker uses by default (each computed here only)."""
from __future__ import annotations

from pathlib import Path

__all__ = ["REPO_ROOT", "CACHE_DIR", "WORKER_DATA_DIR"]

#: the checkout holding ``ml_backend``, ``pose_addon`` and ``tools`` (first on a Python child's ``PYTHONPATH``)
REPO_ROOT = Path(__file__).resolve().parents[1]
#: default cache of the CLI, the benchmark and the trained models (renders, databases, checkpoints)
CACHE_DIR = REPO_ROOT / ".cache" / "ml_backend"
#: default data folder of ``python -m ml_backend serve`` (``--data-dir`` / ``POSE_WORKER_DATA`` override it)
WORKER_DATA_DIR = REPO_ROOT / ".cache" / "worker"
