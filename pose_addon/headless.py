"""Headless entry point: ``blender -b --python tools/blender_entry.py -- COMMAND ARGS``.

Commands::

    render-dataset --scene SPEC --config CONFIG.json --out DIR [--scale F] [--scale-longest M]
    scene-info --scene SPEC [--scale F] [--scale-longest M]

Output protocol (stdout, one JSON object per line): ``{"event": "progress", "done", "total", "message"}`` per
frame, then ``{"event": "done", "dataset": path}`` (render-dataset) or ``{"event": "scene", ...}``
(scene-info). On failure: a one-line message on stderr, ``{"event": "error", "message": ...}`` on stdout and
exit code 1 (2 for bad arguments). Blender-only module: ``bpy`` is imported inside the commands.
"""
from __future__ import annotations

import argparse
import json
import sys

__all__ = ["main", "build_parser"]


class _ArgError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # raise instead of exiting, so main() can report it in the protocol
        raise _ArgError(f"{self.prog}: {message}")


def _emit(obj: dict) -> None:
    from .core.dataset import json_safe

    sys.stdout.write(json.dumps(json_safe(obj), allow_nan=False) + "\n")
    sys.stdout.flush()


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="building_pose headless", description="Building Pose headless commands (run inside Blender)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    r = sub.add_parser("render-dataset", help="render a dataset (RGB, depth, poses) of a scene")
    r.add_argument("--scene", required=True, help="procedural, procedural:SEED or a .glb/.gltf/.obj/.ply path")
    r.add_argument("--config", required=True, help="RenderConfig JSON file")
    r.add_argument("--out", required=True, help="dataset folder (resumed if it holds the same dataset)")
    r.add_argument("--scale", type=float, default=None, help="explicit scale factor for a mesh file")
    r.add_argument("--scale-longest", type=float, default=15.0,
                   help="metres of the mesh's longest side when --scale is not given (default 15)")
    r.add_argument("--bake-resolution", type=int, default=1024, help="texture size of scene.glb (default 1024)")
    s = sub.add_parser("scene-info", help="load a scene and print its info as JSON")
    s.add_argument("--scene", required=True)
    s.add_argument("--scale", type=float, default=None)
    s.add_argument("--scale-longest", type=float, default=15.0)
    return p


def _render_dataset(args) -> int:
    from pathlib import Path

    from .blender import render
    from .core.render_config import RenderConfig

    cfg_path = Path(args.config)
    try:
        config = RenderConfig.from_dict(json.loads(cfg_path.read_text("utf-8")))
    except FileNotFoundError:
        raise FileNotFoundError(f"render config not found: {cfg_path}") from None
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f"bad render config {cfg_path}: {e}") from None

    def progress(done, total, message):
        _emit({"event": "progress", "done": done, "total": total, "message": message})

    ds = render.render_dataset(args.scene, config, args.out, progress=progress, scale=args.scale,
                               scale_longest=args.scale_longest, bake_resolution=args.bake_resolution)
    _emit({"event": "done", "dataset": str(Path(ds.root).resolve()), "frames": len(ds.frames)})
    return 0


def _scene_info(args) -> int:
    from .blender import scene_io

    info = scene_io.load_scene(args.scene, scale_longest=args.scale_longest, scale=args.scale)
    _emit({"event": "scene", **info})
    return 0


def main(argv: list[str]) -> int:
    """Run one command; returns the process exit code (0 ok, 1 failure, 2 bad arguments)."""
    try:
        args = build_parser().parse_args(argv)
    except _ArgError as e:
        sys.stderr.write(f"{e}\n")
        _emit({"event": "error", "message": str(e)})
        return 2
    except SystemExit as e:  # --help
        return int(e.code or 0)
    try:
        if args.command == "render-dataset":
            return _render_dataset(args)
        return _scene_info(args)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        _emit({"event": "error", "message": "interrupted"})
        return 130
    except (FileNotFoundError, ValueError, RuntimeError, OSError) as e:
        msg = str(e) or type(e).__name__
        sys.stderr.write(f"error: {msg}\n")
        _emit({"event": "error", "message": msg})
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]))
