"""Dataset rendering sharded into Blender processes, one Ray task per range of frames, merged into one dataset.

The plan (the render config's groups, their cameras in order) is cut into ranges of ``frames_per_task``; each
task runs Blender's ``render-dataset --frames START:STOP`` into its own shard folder next to the output
(``DATASET.shards/frames-START-STOP/``), which is itself a resumable dataset render. When every shard is complete
the frames are linked (or copied) into ``DATASET`` in plan order and its manifest is written last, so the result
is the dataset one Blender process renders: the same files byte for byte, the same frames, scene and render
entries (only the per-frame ``render_s`` timings differ). A rerun skips complete shards and finishes the others;
a complete ``DATASET`` is returned untouched.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from pose_addon.core import dataset as core_dataset
from pose_addon.core.dataset import Dataset, DatasetError
from pose_addon.core.render_config import RenderConfig

from .. import blender_runner
from .cluster import resources, run_tasks

__all__ = ["render_dataset", "shard_ranges", "merge_shards", "FRAMES_PER_TASK"]

FRAMES_PER_TASK = 8  # one Blender start (~5 s: scene load) per this many frames


def shard_ranges(n_frames: int, frames_per_task: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``0..n_frames`` in pieces of at most ``frames_per_task``."""
    if frames_per_task < 1:
        raise ValueError(f"frames per task must be at least 1, got {frames_per_task}")
    return [(a, min(a + frames_per_task, n_frames)) for a in range(0, n_frames, frames_per_task)]


def _shard_dir(out: Path, r: tuple[int, int]) -> Path:
    return out.with_name(out.name + ".shards") / f"frames-{r[0]:06d}-{r[1]:06d}"


def _shard_complete(path: Path, r: tuple[int, int], digest: Optional[str]) -> bool:
    try:
        ds = Dataset.load(path)
    except DatasetError:
        return False
    shard = ds.manifest.get("shard") or {}
    return (ds.complete and (shard.get("start"), shard.get("stop")) == tuple(r)
            and (digest is None or ds.manifest.get("render", {}).get("digest") == digest)
            and len(ds.frames) == r[1] - r[0] and all(ds.has_frame_files(f.id) for f in ds.frames))


def render_shard(scene_spec: str, config_path: str, shard_dir: str, cache_dir: str, frames: tuple[int, int],
                 scale: Optional[float], ground: str, up_axis: Optional[str], extra: Sequence[str]) -> dict:
    """One task: render frames ``[start, stop)`` of the plan into ``shard_dir`` (resuming it); returns what it
    did (``frames``, ``seconds``, ``node``)."""
    t0 = time.perf_counter()
    blender_runner.render_dataset(scene_spec, config_path, shard_dir, cache_dir, scale=scale, progress=False,
                                  ground=ground, up_axis=up_axis,
                                  extra=[*extra, "--frames", f"{frames[0]}:{frames[1]}"])
    return {"frames": frames[1] - frames[0], "seconds": time.perf_counter() - t0, "node": socket.gethostname()}


def _link(src: Path, dst: Path) -> None:
    """Put ``src``'s bytes at ``dst`` atomically (a hard link when both are on one file system)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.merge.part")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def merge_shards(shard_dirs: Sequence[Path], out_dir: Path | str) -> Dataset:
    """Merge complete shard folders (in plan order) into the dataset ``out_dir``; the manifest is written last
    and marked complete.

    Raises:
        DatasetError: a shard is incomplete, of another render (digest), scene, or the shards do not cover the
            plan exactly once (the message names the shard).
    """
    out = Path(out_dir)
    shards = [Dataset.load(d) for d in shard_dirs]
    if not shards:
        raise DatasetError(f"no shards to merge into {out}")
    first = shards[0]
    digest = first.manifest.get("render", {}).get("digest")
    expect = 0
    n_plan = (first.manifest.get("shard") or {}).get("of")
    scene = {k: v for k, v in first.scene.items() if k not in ("gltf", "gltf_up")}
    for d, ds in zip(shard_dirs, shards):
        shard = ds.manifest.get("shard") or {}
        if not ds.complete or not shard:
            raise DatasetError(f"shard {d} is not a complete shard render")
        if ds.manifest.get("render", {}).get("digest") != digest or shard.get("of") != n_plan:
            raise DatasetError(f"shard {d} was rendered with another config (digest "
                               f"{ds.manifest.get('render', {}).get('digest')}, expected {digest})")
        if {k: v for k, v in ds.scene.items() if k not in ("gltf", "gltf_up")} != scene:
            raise DatasetError(f"shard {d} holds another scene than {shard_dirs[0]}")
        if shard.get("start") != expect:
            raise DatasetError(f"shard {d} starts at frame {shard.get('start')}, expected {expect}")
        expect = shard["stop"]
    if expect != n_plan:
        raise DatasetError(f"the shards cover frames 0-{expect} of a plan of {n_plan}")
    if (out / core_dataset.MANIFEST).is_file():
        old = Dataset.load(out).manifest.get("render", {}).get("digest")
        if old != digest:
            raise DatasetError(f"folder {out} holds a different dataset (config digest {old}, the shards {digest})")
    manifest = {k: v for k, v in first.manifest.items() if k not in ("shard", "frames")}
    manifest.update(complete=False, frames=[])
    merged = Dataset(out, manifest)
    frames = []
    for ds in shards:
        for f in ds.frames:
            for rel in (f.image, f.depth, f.extras.get("normals"), f.extras.get("mask")):
                if rel:
                    _link(ds.root / rel, out / rel)
            frames.append(f)
    gltf = first.scene.get("gltf")
    if gltf:
        _link(first.root / gltf, out / gltf)
    groups = [g["split"] for g in first.manifest.get("render", {}).get("config", {}).get("groups", [])]
    frames.sort(key=lambda f: (groups.index(f.split) if f.split in groups else len(groups),
                               int(f.extras.get("index", 0))))
    merged.frames = frames
    merged.manifest["complete"] = True
    merged.save()
    return merged


def render_dataset(scene_spec: str, config_path: Path | str, out_dir: Path | str, cache_dir: Path | str,
                   scale: Optional[float] = None, progress: bool = True, ground: str = "textured",
                   up_axis: Optional[str] = None, extra: Sequence[str] = (),
                   frames_per_task: Optional[int] = None) -> Path:
    """:func:`ml_backend.blender_runner.render_dataset` on the Ray cluster (same arguments, same result).

    ``cache_dir`` (Blender's isolated HOME), ``config_path`` and ``out_dir`` must be on storage every node sees;
    ``frames_per_task`` defaults to ``--ray-batch``, else :data:`FRAMES_PER_TASK`.

    Raises:
        ShardError: a shard failed after its retries. DatasetError: the shards do not merge (see
            :func:`merge_shards`).
    """
    out = Path(out_dir).resolve()
    config_path = Path(config_path).resolve()
    cfg = RenderConfig.from_dict(json.loads(config_path.read_text("utf-8")))
    cfg.validate()
    try:
        have = Dataset.load(out)
        if have.complete and "shard" not in have.manifest and \
                all(have.has_frame_files(f.id) for f in have.frames) and \
                len(have.frames) == sum(g.sampler.n for g in cfg.groups):
            return out
    except DatasetError:
        pass
    per_task = frames_per_task or resources().batch or FRAMES_PER_TASK
    ranges = shard_ranges(sum(g.sampler.n for g in cfg.groups), per_task)
    dirs = [_shard_dir(out, r) for r in ranges]
    digest = None
    if dirs and (dirs[0] / core_dataset.MANIFEST).is_file():
        try:
            digest = Dataset.load(dirs[0]).manifest.get("render", {}).get("digest")
        except DatasetError:
            digest = None
    todo = [i for i, r in enumerate(ranges) if not _shard_complete(dirs[i], r, digest)]
    items = [(scene_spec, str(config_path), str(dirs[i]), str(Path(cache_dir).resolve()), ranges[i], scale, ground,
              up_axis, tuple(extra)) for i in todo]
    run_tasks(render_shard, items, [f"frames {ranges[i][0]}:{ranges[i][1]}" for i in todo], desc="render shards",
              progress=progress, retry_exceptions=(blender_runner.BlenderError, OSError))
    merge_shards(dirs, out)
    shutil.rmtree(out.with_name(out.name + ".shards"), ignore_errors=True)
    return out
