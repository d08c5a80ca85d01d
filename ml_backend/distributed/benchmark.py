"""Throughput of the single-machine path and of the Ray backend on 1, 2, ... local Ray workers, with a check that
every sharded result equals the single-machine one.

    python -m ml_backend scale-bench [--frames 40 --photos 20 --workers 1,2 --width 320 --height 240
        --samples 8 --scene procedural --out runs/scale]

One render config of ``frames - photos`` references and ``photos`` queries (the bench's orbit band); the query
images serve as the photos (their intrinsics given as ``fx,fy,cx,cy``). Per row: the render (frames a minute),
the SIFT database of the references (frames a minute) and ``localize`` of the photos (photos a minute), each
compared with the single-machine result (``compare``: pixels, depth bytes, manifest entries, database arrays,
localize rows; timings excepted). A Ray row starts a local Ray instance with that many CPUs (one task per CPU);
its start-up time is reported apart. Writes ``OUT/results.json`` and prints the table.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Optional

from pose_addon.core.dataset import Dataset, atomic_write_json

__all__ = ["add_arguments", "run"]


def add_arguments(p) -> None:
    p.add_argument("--frames", type=int, default=40, help="frames rendered (references + photos)")
    p.add_argument("--photos", type=int, default=20, help="query frames localized as photos")
    p.add_argument("--workers", default="1,2", help="Ray worker counts to measure (local instances)")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--scene", default="procedural")
    p.add_argument("--frames-per-task", type=int, default=5, help="frames per render task")
    p.add_argument("--photos-per-task", type=int, default=5, help="photos per localize task")
    p.add_argument("--method", default="sift")
    p.add_argument("--out", default="runs/scale")


def _per_min(n: int, s: float) -> float:
    return 60.0 * n / s if s > 0 else float("nan")


def _stage(out: Path, cfg_path: Path, spec, photos_fn, args, sharded: bool,
           ref_dataset: Optional[Path] = None) -> dict:
    """Render, database and localize into ``out``; sharded through the connected Ray instance or not."""
    from .. import blender_runner
    from ..localize_photos import LocalizeOptions, localize_photos
    from ..matching.database import build_database
    from . import features as dfeatures
    from . import localize as dlocalize
    from . import render as drender

    ds_dir = out / "dataset"
    t0 = time.perf_counter()
    if sharded:
        drender.render_dataset(spec.spec, cfg_path, ds_dir, out / "cache", scale=spec.scale, progress=False,
                               ground=spec.ground, frames_per_task=args.frames_per_task)
    else:
        blender_runner.render_dataset(spec.spec, cfg_path, ds_dir, out / "cache", scale=spec.scale,
                                      progress=False, ground=spec.ground)
    t_render = time.perf_counter() - t0
    # database and localize run on the single-machine dataset, so their results compare one to one
    ref = Dataset.load(ref_dataset or ds_dir)
    cache = out / "cache"
    workdir = cache / "localize" / ref.root.name / "db"
    t0 = time.perf_counter()
    db = (dfeatures.build_database if sharded else build_database)(ref.root, workdir, "sift", progress=False)
    t_db = time.perf_counter() - t0
    photos, intr = photos_fn(ref)
    opts = LocalizeOptions(photos=photos, out=out / "localize", dataset=str(ref.root), intrinsics=intr,
                           method=args.method, cache=cache, progress=False)
    t0 = time.perf_counter()
    res = (dlocalize.localize_photos(opts, photos_per_task=args.photos_per_task) if sharded
           else localize_photos(opts))
    t_loc = time.perf_counter() - t0
    n_ref = len(ref.reference_frames())
    return {"render_s": t_render, "frames": len(Dataset.load(ds_dir).frames), "db_s": t_db, "db_frames": n_ref,
            "localize_s": t_loc, "photos": len(photos), "localized": res["summary"]["n_localized"],
            "db": str(db), "dataset": str(ds_dir), "localize": str(out / "localize")}


def run(args) -> int:
    """Entry of ``python -m ml_backend scale-bench``: prints the throughput table."""
    from ..bench import make_render_config
    from ..scenes import parse_scene
    from . import cluster, compare

    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    if not 0 < args.photos < args.frames or any(w < 1 for w in workers):
        raise ValueError("need 0 < --photos < --frames and worker counts of at least 1")
    spec = parse_scene(args.scene)
    cfg = make_render_config(spec, args.frames - args.photos, args.photos, args.width, args.height,
                             samples=args.samples)
    out = Path(args.out).resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    cfg_path = out / "render.json"
    atomic_write_json(cfg_path, cfg.to_dict())

    def photos_fn(ds: Dataset):
        q = ds.split("query")
        k = q[0].intrinsics
        return [str(ds.path(f.image)) for f in q], f"{k.fx!r},{k.fy!r},{k.cx!r},{k.cy!r}"

    if cluster.active():
        raise RuntimeError("scale-bench starts its own local Ray instances; run it without --ray")
    rows = {"1 machine, no Ray": _stage(out / "single", cfg_path, spec, photos_fn, args, False)}
    single = rows["1 machine, no Ray"]
    for w in workers:
        t0 = time.perf_counter()
        cluster.connect("local", num_cpus=w, task=cluster.TaskResources(num_cpus=1))
        startup = time.perf_counter() - t0
        try:
            r = _stage(out / f"ray{w}", cfg_path, spec, photos_fn, args, True, Path(single["dataset"]))
        finally:
            cluster.shutdown()
        r["ray_start_s"] = startup
        r["identical"] = {
            "render": not compare.dataset_differences(single["dataset"], r["dataset"]),
            "database": not compare.database_differences(single["db"], r["db"]),
            "localize": not compare.localize_differences(single["localize"], r["localize"])}
        rows[f"Ray, {w} worker{'s' if w > 1 else ''}"] = r
    for r in rows.values():
        r.update(frames_per_min=_per_min(r["frames"], r["render_s"]),
                 db_frames_per_min=_per_min(r["db_frames"], r["db_s"]),
                 photos_per_min=_per_min(r["photos"], r["localize_s"]))
    atomic_write_json(out / "results.json", {"config": {k: v for k, v in vars(args).items() if k != "func"},
                                              "rows": rows})
    print(format_table(rows, args))
    return 0 if all(all(r.get("identical", {}).values()) for r in rows.values()) else 1


def format_table(rows: dict, args) -> str:
    """The throughput table of :func:`run`'s rows."""
    head = (f"{'':<20}{'render frames/min':>18}{'db frames/min':>15}{'localize photos/min':>21}"
            f"{'Ray start s':>12}  identical to 1 machine (render, db, localize)")
    lines = [f"{args.frames} frames ({args.frames - args.photos} references + {args.photos} photos) at "
             f"{args.width}x{args.height}, {args.samples} samples, scene {args.scene}, method {args.method}",
             head, "-" * len(head)]
    for name, r in rows.items():
        ident = r.get("identical")
        same = "-" if ident is None else ", ".join("yes" if ident[k] else "NO" for k in ("render", "database",
                                                                                      "localize"))
        start = f"{r['ray_start_s']:.1f}" if "ray_start_s" in r else "-"
        lines.append(f"{name:<20}{r['frames_per_min']:>18.1f}{r['db_frames_per_min']:>15.1f}"
                     f"{r['photos_per_min']:>21.1f}{start:>12}  {same}")
    lines.append("localized: " + ", ".join(f"{n}: {r['localized']}/{r['photos']}" for n, r in rows.items()))
    return "\n".join(lines)
