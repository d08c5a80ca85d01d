"""Batch ``localize`` on the Ray cluster: the photos in chunks, one task each, every task opening the method once.

The reference dataset is rendered (sharded, when it is not cached) and its feature databases are built (sharded)
before any photo task starts, at the paths the single-machine ``localize`` uses, so every task opens the method
on finished files and builds nothing. Each task localizes its photos image after image with the same per-photo
code as :func:`ml_backend.localize_photos.localize_photos`; the rows come back in photo order and the outputs
(``poses.json``, ``colmap/``, ``transforms.json``) are written by the same function. Finished chunks are kept in
``OUT/.chunks/`` under a key of the references, method, options, intrinsics and photo files, so a rerun after an
interruption localizes only the chunks that were not finished.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Optional

import numpy as np

from pose_addon.core.dataset import Dataset, atomic_write_json, json_safe

from .. import localize_photos as lp
from ..estimate import list_photos
from ..intrinsics import parse_intrinsics_arg
from ..methods.interface import MATCHING_METHODS, open_method
from ..paths import CACHE_DIR
from .cluster import resources, run_tasks
from .features import build_database

__all__ = ["localize_photos", "PHOTOS_PER_TASK"]

PHOTOS_PER_TASK = 5


def localize_chunk(method: str, dataset_root: str, workdir: str, options: dict, photos: Sequence[str],
                   stems: Sequence[str], spec: dict, world_from_model: list, bands: list, target: list) -> list:
    """One task: open ``method`` once and localize ``photos``; returns their rows (as ``localize`` writes them)."""
    ds = Dataset.load(dataset_root)
    W, t = np.asarray(world_from_model, np.float64), np.asarray(target, np.float64)
    with open_method(method, ds, Path(workdir), options) as m:
        return [json_safe(lp.localize_one(m, Path(p), s, spec, W, bands, t)) for p, s in zip(photos, stems)]


def _prepare_databases(method: str, ds: Dataset, workdir: Path, options: dict, progress: bool) -> None:
    """Build the databases ``method`` opens (sharded) where it looks for them; warm other methods' caches by
    opening them once here."""
    if method in MATCHING_METHODS:
        from ..matching.database import confs
        from ..matching.localize import ensemble_conf

        names = ["sift"] + ([method] if method in confs and method != "sift" else [])
        if method == "ensemble":
            members = {**ensemble_conf, **(options.get("ensemble") or {})}["members"]
            names += [m for m in members if m in confs and m not in names]
        for name in names:
            build_database(ds.root, workdir / "db", name, progress=progress)
        return
    with open_method(method, ds, workdir, options):
        pass


def _chunk_key(ds: Dataset, opts: lp.LocalizeOptions, photos: Sequence[Path]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"dataset": ds.digest(ds.reference_frames()), "method": opts.method,
                         "options": opts.options, "intrinsics": opts.intrinsics}, sort_keys=True).encode())
    for p in photos:
        st = os.stat(p)
        h.update(json.dumps([str(Path(p).resolve()), st.st_size, st.st_mtime_ns]).encode())
    return h.hexdigest()[:16]


def localize_photos(opts: lp.LocalizeOptions, on_progress: Optional[Callable[[float, str], None]] = None,
                    photos_per_task: Optional[int] = None) -> dict:
    """:func:`ml_backend.localize_photos.localize_photos` on the Ray cluster (same options, same outputs; only
    each photo's ``time_s`` differs).

    Raises:
        as the single-machine function; ShardError when a chunk failed after its retries.
    """
    photos_per_task = photos_per_task or resources().batch or PHOTOS_PER_TASK
    if photos_per_task < 1:
        raise ValueError(f"photos per task must be at least 1, got {photos_per_task}")
    spec = parse_intrinsics_arg(opts.intrinsics)
    photos = [p for arg in opts.photos for p in list_photos(arg)]
    if not photos:
        raise ValueError("no photos given")
    ds = lp.reference_dataset(opts)
    model_from_world = np.asarray(ds.scene.get("model_from_world", np.eye(4)), np.float64)
    world_from_model = np.linalg.inv(model_from_world)
    bands = lp.reference_bands(ds)
    target = np.asarray(ds.scene.get("target", [0, 0, 0]), np.float64)
    cache = Path(opts.cache) if opts.cache else CACHE_DIR
    workdir = (cache / "localize" / ds.root.name).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    _prepare_databases(opts.method, ds, workdir, opts.options, opts.progress)
    stems = lp.unique_stems(photos)
    out = Path(opts.out)
    chunk_dir = out / ".chunks"
    starts = list(range(0, len(photos), photos_per_task))
    chunks = [(a, min(a + photos_per_task, len(photos))) for a in starts]
    rows: list = [None] * len(photos)
    keys = [_chunk_key(ds, opts, photos[a:b]) for a, b in chunks]
    todo = []
    for i, (a, b) in enumerate(chunks):
        f = chunk_dir / f"chunk-{a:06d}-{b:06d}.json"
        try:
            saved = json.loads(f.read_text("utf-8"))
            if saved.get("key") == keys[i] and len(saved.get("rows", [])) == b - a:
                rows[a:b] = saved["rows"]
                continue
        except (OSError, ValueError, AttributeError):
            pass
        todo.append(i)
    done = [len(photos) - sum(chunks[i][1] - chunks[i][0] for i in todo)]

    def keep(j: int, chunk_rows: list) -> None:
        a, b = chunks[todo[j]]
        rows[a:b] = chunk_rows
        atomic_write_json(chunk_dir / f"chunk-{a:06d}-{b:06d}.json", {"key": keys[todo[j]], "rows": chunk_rows})
        done[0] += b - a
        if on_progress:
            on_progress(done[0] / len(photos), f"{b - a} photos localized ({done[0]}/{len(photos)})")

    items = [(opts.method, str(ds.root.resolve()), str(workdir), opts.options,
              [str(p) for p in photos[chunks[i][0]:chunks[i][1]]], stems[chunks[i][0]:chunks[i][1]], spec,
              world_from_model.tolist(), bands, target.tolist()) for i in todo]
    run_tasks(localize_chunk, items, [f"photos {chunks[i][0]}-{chunks[i][1] - 1}" for i in todo],
              desc=f"localize {opts.method}", progress=opts.progress, on_result=keep, retry_exceptions=(OSError,))
    result = {"format": lp.FORMAT, "version": lp.VERSION, "model": ds.scene.get("source") or str(ds.root),
              "dataset": str(ds.root.resolve()), "model_from_world": model_from_world.tolist(),
              "method": opts.method, "intrinsics": opts.intrinsics, "photos": rows, "summary": lp.summarize(rows)}
    lp.write_outputs(result, out)
    shutil.rmtree(chunk_dir, ignore_errors=True)
    return json_safe(result)
