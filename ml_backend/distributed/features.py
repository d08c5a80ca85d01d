"""Feature databases built on the Ray cluster: reference frames in chunks, one task each, merged with checks.

Each task writes its frames into a shard file next to the database (``<db>.h5.shard-START-STOP``) exactly as the
single-machine build writes its ``.partial`` file (same conf, same dataset digest, one complete group per frame,
resumable). The merge refuses a shard whose format, conf or recorded dataset digest differ from the database
being built (the message names the shard and both digests), copies the frames into the ``.partial`` file and
renames it to the database only when every reference frame is in. The result holds the same arrays and
attributes as :func:`ml_backend.matching.database.build_database` on one machine, at the same path.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import h5py

from pose_addon.core.dataset import Dataset, DatasetError

from ..matching import database as db
from .cluster import resources, run_tasks

__all__ = ["build_database", "merge_database_shards", "FRAMES_PER_TASK"]

FRAMES_PER_TASK = 16


def build_shard(dataset_dir: str, shard_path: str, conf: dict, digest: str, ids: Sequence[str]) -> int:
    """One task: the frames ``ids`` of ``dataset_dir`` into ``shard_path`` (resumed); returns how many."""
    ds = Dataset.load(dataset_dir)
    if db.reference_digest(ds, conf["split"]) != digest:
        raise DatasetError(f"dataset {dataset_dir} changed since the database build started (digest "
                           f"{db.reference_digest(ds, conf['split'])}, expected {digest})")
    want = set(ids)
    refs = [f for f in ds.reference_frames(conf["split"]) if f.id in want]
    final = Path(shard_path)
    db._write_frames(final, db._conf_json(conf), final, digest, conf, ds, refs, False)
    return len(refs)


def merge_database_shards(shards: Sequence[Path], final: Path, conf: dict, digest: str, ids: Sequence[str],
                          dataset_root: str) -> Path:
    """Copy the frames of ``shards`` into ``final``'s ``.partial`` file, checked, then rename it to ``final``.

    Raises:
        DatasetError: a shard of another format, conf or dataset digest, or frames missing after the merge.
    """
    cj = db._conf_json(conf)
    tmp = final.with_name(final.name + ".partial")
    with db._open_partial(tmp, cj, final, digest) as out:
        out.attrs["conf_name"] = conf["name"]
        out.attrs["dataset"] = dataset_root
        out.attrs["split"] = json.dumps(conf["split"])
        have = db._complete_ids(out)
        for path in shards:
            with h5py.File(path, "r") as f:
                if f.attrs.get("format") != db.FORMAT or f.attrs.get("conf") != cj:
                    raise DatasetError(f"database shard {path} was built with another format or conf")
                if f.attrs.get("dataset_digest") != digest:
                    raise DatasetError(f"database shard {path} was built from references with digest "
                                       f"{f.attrs.get('dataset_digest')}, not {digest}: delete it and rerun")
                for fid in sorted(db._complete_ids(f) - have):
                    if fid in out["frames"]:
                        del out["frames"][fid]
                    f.copy(f["frames"][fid], out["frames"], name=fid)
                    have.add(fid)
            out.flush()
        missing = sorted(set(ids) - have)
        if missing:
            raise DatasetError(f"{len(missing)} reference frames missing after merging the database shards "
                               f"(e.g. {missing[0]})")
    os.replace(tmp, final)
    for path in shards:
        Path(path).unlink(missing_ok=True)
    return final


def build_database(dataset_dir: Path | str, out_path: Path | str, conf: Optional[dict | str] = None,
                   progress: bool = True, frames_per_task: Optional[int] = None) -> Path:
    """:func:`ml_backend.matching.database.build_database` on the Ray cluster (same arguments, same file and content).

    Raises:
        DatasetError: as the single-machine build, or a shard that fails the merge checks. ShardError: a task
            failed after its retries.
    """
    conf = db.resolve_conf(conf)
    ds = Dataset.load(dataset_dir)
    final, refs, digest, complete = db.database_target(ds, out_path, conf)
    final = final.resolve()
    if complete:
        return final
    ids = [f.id for f in refs]
    root = str(ds.root.resolve())
    frames_per_task = frames_per_task or resources().batch or FRAMES_PER_TASK
    if frames_per_task < 1:
        raise ValueError(f"frames per task must be at least 1, got {frames_per_task}")
    chunks = [ids[a:a + frames_per_task] for a in range(0, len(ids), frames_per_task)]
    shards = [final.with_name(f"{final.name}.shard-{a:06d}-{a + len(c):06d}")
              for a, c in zip(range(0, len(ids), frames_per_task), chunks)]
    run_tasks(build_shard, [(root, str(s), conf, digest, tuple(c)) for s, c in zip(shards, chunks)],
              [s.name for s in shards], desc="database shards", progress=progress, retry_exceptions=(OSError,))
    return merge_database_shards(shards, final, conf, digest, ids, root)
