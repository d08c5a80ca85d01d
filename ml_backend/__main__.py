"""Command line of the worker.

    python -m ml_backend bench --scene SCENE --methods retrieval_nn,sift --out DIR [--n-references 100
        --n-queries 60 --width 640 --height 480 --scale F --cache DIR --engine CYCLES --samples 16]
    python -m ml_backend demo [same options; defaults: procedural building, out runs/demo]
    python -m ml_backend localize --model FILE|--dataset DIR --photos FILES|DIR --out DIR [--intrinsics exif|estimate|
        fx,fy,cx,cy|calib.json --method sift --up-axis Y --preset street --n-references 60]  (see localize_photos.py)
    python -m ml_backend methods   (the methods and their options, as JSON)
    python -m ml_backend build-db --dataset DIR --out DIR [--conf sift]
    python -m ml_backend scale-bench [--frames 40 --photos 20 --workers 1,2 --out runs/scale]  (Ray throughput)
    python -m ml_backend run-method --method NAME --dataset DIR --workdir DIR --out FILE [--conf JSON]
    python -m ml_backend regression extract|train|infer ...   (see ml_backend/regression/cli.py)
    python -m ml_backend serve [--host 127.0.0.1] [--port 0] [--unix PATH] [--parent-pid PID] [--token-file F]
    python -m ml_backend ping-bench [--clients 10 --requests 1000 --dataset DIR]

bench, demo, localize and build-db take ``--ray ADDRESS|local``: rendering, database building and localization
run as Ray tasks with the same results (see ml_backend/distributed and docs/scale-out.md).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from pose_addon.core.render_config import ENGINES, GROUND_STYLES

from .distributed.cluster import add_ray_arguments

__all__ = ["main", "build_parser"]


def _bench_args(p: argparse.ArgumentParser, out_default: Optional[str]) -> None:
    p.add_argument("--scene", default="procedural", help="procedural, procedural:SEED or a .glb/.gltf/.obj/.ply")
    p.add_argument("--methods", default="retrieval_nn,sift", help="comma-separated method names")
    p.add_argument("--method-queries", default="",
                   help="slow rows on a query subset, e.g. 'loftr=20,disk+lightglue=20'")
    p.add_argument("--out", required=out_default is None, default=out_default, help="output folder")
    p.add_argument("--n-references", type=int, default=100)
    p.add_argument("--n-queries", type=int, default=60)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--scale", type=float, default=None, help="explicit scale factor of a mesh file")
    p.add_argument("--ground", default="textured", choices=GROUND_STYLES,
                   help="ground under the building: procedural texture (default), one flat colour, or none")
    p.add_argument("--query-blur", type=float, default=0.0, help="Gaussian blur sigma (px) of the query images")
    p.add_argument("--query-style", default="render", choices=("render", "photo"),
                   help="queries rendered like the references, or like photos (materials, sky, lens distortion, "
                        "exposure, white balance, vignetting, blur, JPEG, occluders; see PhotoStyle)")
    p.add_argument("--photo-seed", type=int, default=0, help="seed of the photo-style effects")
    p.add_argument("--band", default="orbit", choices=("orbit", "street"),
                   help="camera band of references and queries (placement presets)")
    p.add_argument("--cache", default=None, help="cache folder (default: <checkout>/.cache/ml_backend)")
    p.add_argument("--engine", default=ENGINES[0], choices=ENGINES)
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--dataset", default=None, help="use an existing dataset folder instead of rendering")
    p.add_argument("--no-viz", action="store_true", help="skip the PNG figures")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_ray_arguments(p)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ml_backend", description="Building pose ML worker")
    sub = p.add_subparsers(dest="command", required=True)
    _bench_args(sub.add_parser("bench", help="render, localize and report metrics"), None)
    _bench_args(sub.add_parser("demo", help="bench on the procedural building into runs/demo"), "runs/demo")
    bp = sub.add_parser("bench-plot", help="one recall figure of several bench runs (render vs photo queries)")
    bp.add_argument("runs", nargs="+", help="bench output folders (results.json + errors.json)")
    bp.add_argument("--out", required=True, help="PNG to write")
    from . import localize_photos

    loc = sub.add_parser("localize", help="localize photos against a model or a dataset; cameras in the model's "
                         "frame (JSON, COLMAP, nerfstudio)")
    localize_photos.add_arguments(loc)
    add_ray_arguments(loc)
    sub.add_parser("methods", help="list the methods and their options (JSON)")
    b = sub.add_parser("build-db", help="build the feature database of a dataset's reference split")
    b.add_argument("--dataset", required=True)
    b.add_argument("--out", required=True, help="folder (file name encodes the conf) or a .h5 path")
    b.add_argument("--conf", default="sift")
    add_ray_arguments(b)
    from .distributed import benchmark as scale_bench

    scale_bench.add_arguments(sub.add_parser("scale-bench", help="throughput on 1 machine and on local Ray workers, "
                                             "results checked equal (frames/min, photos/min)"))
    r = sub.add_parser("run-method", help="run one method on a dataset (used by bench, one process each)")
    r.add_argument("--method", required=True)
    r.add_argument("--dataset", required=True)
    r.add_argument("--workdir", required=True)
    r.add_argument("--out", required=True, help="JSON file for {'rows': [...]} or {'skipped': reason}")
    r.add_argument("--conf", default="{}", help="method conf as JSON")
    from .regression import cli as regression_cli  # regression extract / train / infer

    regression_cli.add_parser(sub)
    from .keypoints import cli as keypoints_cli  # keypoints-labels / -train / -viz / -eval

    keypoints_cli.add_parsers(sub)
    from .service import ping_bench, server

    server.add_arguments(sub.add_parser("serve", help="run the worker service (see ml_backend/service)"))
    ping_bench.add_arguments(sub.add_parser("ping-bench", help="round-trip times of the worker service"))
    from . import tools  # match-pair / show-keypoints / pose-overlay

    tools.add_parsers(sub)
    return p


def _bench(args) -> int:
    from .bench import BenchOptions, format_table, run_bench

    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    mq = {k.strip(): int(v) for k, v in (x.split("=") for x in args.method_queries.split(",") if x.strip())}
    opts = BenchOptions(scene=args.scene, methods=methods, out=Path(args.out), n_references=args.n_references,
                        n_queries=args.n_queries, width=args.width, height=args.height, scale=args.scale,
                        cache=Path(args.cache) if args.cache else None, engine=args.engine, samples=args.samples,
                        progress=not args.quiet, viz=not args.no_viz, method_queries=mq or None,
                        ground=args.ground, query_blur_px=args.query_blur, query_style=args.query_style,
                        photo_seed=args.photo_seed, band=args.band)
    results = run_bench(opts, Path(args.dataset) if args.dataset else None)
    print(format_table(results))
    print(f"results: {Path(args.out) / 'results.json'}")
    return 0


def _run_method(args) -> int:
    from pose_addon.core.dataset import Dataset, atomic_write_json

    from .bench import EXIT_UNAVAILABLE
    from .methods import MethodUnavailable, get_method

    try:
        module = get_method(args.method)
        rows = module.run(Dataset.load(args.dataset), Path(args.workdir), json.loads(args.conf))
    except MethodUnavailable as e:
        atomic_write_json(args.out, {"skipped": str(e)})
        sys.stderr.write(f"{args.method} skipped: {e}\n")
        return EXIT_UNAVAILABLE
    atomic_write_json(args.out, {"rows": rows})
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        from .service import server

        return server.serve(args)
    if args.command == "ping-bench":
        from .service import ping_bench

        return ping_bench.run(args)
    from pose_addon.core.dataset import DatasetError

    from .blender_runner import BlenderError
    from .distributed.cluster import ShardError, active, connect_from_args
    from .intrinsics import IntrinsicsError
    from .matching.extractors import ImageReadError
    from .methods import MethodUnavailable
    from .scenes import SceneSpecError

    try:
        connect_from_args(args)  # --ray ADDRESS|local: the sharded paths of ml_backend.distributed
        if args.command == "bench-plot":
            from .bench import plot_runs

            print(plot_runs([Path(r) for r in args.runs], Path(args.out)))
            return 0
        if args.command in ("bench", "demo"):
            return _bench(args)
        if args.command == "regression":
            from .regression import cli as regression_cli

            return regression_cli.dispatch(args)
        if args.command.startswith("keypoints-"):
            from .keypoints import cli as keypoints_cli

            return keypoints_cli.dispatch(args)
        if args.command in ("match-pair", "show-keypoints", "pose-overlay"):
            from . import tools

            return tools.dispatch(args)
        if args.command == "localize":
            from . import localize_photos

            return localize_photos.run(args)
        if args.command == "methods":
            from .methods.interface import describe_methods

            print(json.dumps(describe_methods(), indent=1))
            return 0
        if args.command == "scale-bench":
            from .distributed import benchmark as scale_bench

            return scale_bench.run(args)
        if args.command == "build-db":
            from .matching.database import build_database

            if active():  # --ray: reference frames in chunks as Ray tasks, merged into the same file
                from .distributed.features import build_database
            print(build_database(args.dataset, args.out, args.conf))
            return 0
        return _run_method(args)
    except (SceneSpecError, BlenderError, DatasetError, ImageReadError, OSError, ValueError, KeyError,
            IntrinsicsError, MethodUnavailable, ShardError) as e:
        sys.stderr.write(f"error: {e}\n")  # OSError: disk full, permission denied, missing file (named)
        return 1


if __name__ == "__main__":
    sys.exit(main())
