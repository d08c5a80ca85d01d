"""Headless entry point: ``blender -b --python tools/blender_entry.py -- COMMAND ARGS``.

Commands::

    render-dataset --scene SPEC --config CONFIG.json --out DIR [--scale F] [--scale-longest M]   (alias: render)
    sample --scene SPEC --out POSES.json [--n N --preset orbit|street|aerial --layout L --seed S ...]
           (the placement preset scaled to the model, as the Cameras panel's; --distance, --elevation,
           --eye-height override its ranges)
    scene-info --scene SPEC [--scale F] [--scale-longest M]
    cameras --blend FILE.blend --model FILE --out CAMS.json [--up-axis A] [--collection NAME]
             (camera objects the user placed around the imported model, in the model file's frame: --seed-cameras)
    localize --model FILE|--dataset DIR --photos FILES|DIR --out DIR [any option of python -m ml_backend localize]
             [--blend OUT.blend --frame import|model|render]   (runs the worker's localize; --blend makes a new file
             with the model and one camera per localized photo)

In a real Blender the extension registers the same handler as a command-line command:
``blender --command building_pose render --scene procedural --config C.json --out DIR``.

Output protocol (stdout, one JSON object per line): ``{"event": "progress", "done", "total", "message"}`` per
frame, then ``{"event": "done", "dataset": path}`` (render-dataset) or ``{"event": "scene", ...}``
(scene-info). On failure: a one-line message on stderr, ``{"event": "error", "message": ...}`` on stdout and
exit code 1 (2 for bad arguments). Blender-only module: ``bpy`` is imported inside the commands.
"""
from __future__ import annotations

import argparse
import json
import sys

from .core.model_frame import DEFAULT_LONGEST_SIDE_M
from .core.render_config import GROUND_STYLES
from .core.sampling import PRESETS

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
    r = sub.add_parser("render-dataset", aliases=["render"], help="render a dataset (RGB, depth, poses) of a scene")
    r.add_argument("--scene", required=True, help="procedural, procedural:SEED or a .glb/.gltf/.obj/.ply path")
    r.add_argument("--config", required=True, help="RenderConfig JSON file")
    r.add_argument("--out", required=True, help="dataset folder (resumed if it holds the same dataset)")
    r.add_argument("--scale", type=float, default=None, help="explicit scale factor for a mesh file")
    r.add_argument("--scale-longest", type=float, default=DEFAULT_LONGEST_SIDE_M,
                   help=f"metres of the mesh's longest side without --scale (default {DEFAULT_LONGEST_SIDE_M:g})")
    r.add_argument("--bake-resolution", type=int, default=1024, help="texture size of scene.glb (default 1024)")
    r.add_argument("--ground", default="textured", choices=GROUND_STYLES,
                   help="ground under the building: procedural texture (default), one flat colour, or none")
    r.add_argument("--up-axis", default=None, help="the mesh file's up axis: Z, Y, X, -Z, -Y, -X (default: Y "
                   "for glTF and OBJ, Z for PLY)")
    r.add_argument("--frames", default=None, help="START:STOP: render only these frames of the plan (groups in "
                   "order, STOP exclusive) into a shard folder that merges into the full dataset")
    m = sub.add_parser("sample", help="sample cameras around a scene and write their poses as JSON")
    m.add_argument("--scene", required=True, help="procedural, procedural:SEED or a .glb/.gltf/.obj/.ply path")
    m.add_argument("--out", required=True, help="JSON file: intrinsics and cam_from_world per camera")
    m.add_argument("--n", type=int, default=50, help="number of cameras (default 50)")
    m.add_argument("--preset", default="orbit", choices=PRESETS,
                   help="placement scaled to the model's size, as the Cameras panel's: orbit (default; 25-40 m "
                        "away and 5-35 deg up for a 15 m model), street (eye height around the model) or aerial")
    m.add_argument("--layout", default="fibonacci", choices=["fibonacci", "rings", "random"])
    m.add_argument("--distance", type=float, nargs=2, default=None, metavar=("MIN", "MAX"),
                   help="metres from the model's centre (street: horizontal), instead of the preset's")
    m.add_argument("--elevation", type=float, nargs=2, default=None, metavar=("MIN", "MAX"),
                   help="degrees above the horizon, instead of the preset's (not with --preset street)")
    m.add_argument("--eye-height", type=float, nargs=2, default=None, metavar=("MIN", "MAX"),
                   help="metres above the model's lowest point, instead of 1.5-2 (--preset street only)")
    m.add_argument("--azimuth", type=float, nargs=2, default=(0.0, 360.0), metavar=("MIN", "MAX"))
    m.add_argument("--roll", type=float, default=0.0)
    m.add_argument("--jitter", type=float, default=0.0)
    m.add_argument("--min-coverage", type=float, default=0.05)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--width", type=int, default=640)
    m.add_argument("--height", type=int, default=480)
    m.add_argument("--lens", type=float, default=30.0)
    m.add_argument("--scale", type=float, default=None, help="explicit scale factor for a mesh file")
    m.add_argument("--scale-longest", type=float, default=DEFAULT_LONGEST_SIDE_M,
                   help=f"metres of the mesh's longest side without --scale (default {DEFAULT_LONGEST_SIDE_M:g})")
    m.add_argument("--up-axis", default=None, help="the mesh file's up axis (default: Y for glTF and OBJ, Z for PLY)")
    s = sub.add_parser("scene-info", help="load a scene and print its info as JSON")
    s.add_argument("--scene", required=True)
    s.add_argument("--scale", type=float, default=None)
    s.add_argument("--scale-longest", type=float, default=DEFAULT_LONGEST_SIDE_M)
    s.add_argument("--ground", default="textured", choices=GROUND_STYLES)
    s.add_argument("--up-axis", default=None)
    c = sub.add_parser("cameras", help="write the camera objects of a .blend in the model file's frame (JSON)")
    c.add_argument("--blend", required=True, help="the .blend holding the model (as Blender's importer placed it) "
                   "and the cameras")
    c.add_argument("--model", required=True, help="the model file that was imported (its format fixes the turn "
                   "Blender's importer applied: glTF and OBJ Y-up to Z-up, PLY none)")
    c.add_argument("--up-axis", default=None, help="the up axis the importer turned to Z, when not the format's")
    c.add_argument("--collection", default=None, help="only the cameras of this collection")
    c.add_argument("--out", required=True)
    lo = sub.add_parser("localize", help="localize photos with the worker (python -m ml_backend localize) and "
                        "optionally import the cameras into a .blend")
    lo.add_argument("--blend", default=None, help="also make a new .blend here holding the model (imported as "
                    "File > Import does) and one camera per localized photo with the photo as background")
    lo.add_argument("--frame", default="import", choices=["import", "model", "render"],
                    help="the world of the .blend: import (default: the model as Blender's importer places it, "
                         "glTF and OBJ turned Z up), model (the file's own coordinates) or render (scaled to "
                         "15 m, centred, Z up, as the references were rendered)")
    return p  # localize's other arguments pass through to python -m ml_backend localize (see main)


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

    frames = None
    if args.frames:
        try:
            frames = tuple(int(x) for x in args.frames.split(":"))
            if len(frames) != 2:
                raise ValueError
        except ValueError:
            raise ValueError(f"--frames must be START:STOP (integers), got {args.frames!r}") from None
    ds = render.render_dataset(args.scene, config, args.out, progress=progress, scale=args.scale,
                               scale_longest=args.scale_longest, bake_resolution=args.bake_resolution,
                               ground=args.ground, up_axis=args.up_axis, frames=frames)
    _emit({"event": "done", "dataset": str(Path(ds.root).resolve()), "frames": len(ds.frames)})
    return 0


def _scene_info(args) -> int:
    from .blender import scene_io

    info = scene_io.load_scene(args.scene, scale_longest=args.scale_longest, scale=args.scale, ground=args.ground,
                               up_axis=args.up_axis)
    _emit({"event": "scene", **info})
    return 0


def _sample(args) -> int:
    import numpy as np

    from .blender import scene_io
    from .core.dataset import atomic_write_json
    from .core.render_config import RenderConfig
    from .core.sampling import aabb_inside_fn, placement_preset, sample_cameras

    intr = RenderConfig(width=args.width, height=args.height, lens_mm=args.lens).intrinsics()
    info = scene_io.load_scene(args.scene, scale_longest=args.scale_longest, scale=args.scale,
                               up_axis=args.up_axis)
    lo, hi = (np.asarray(b, np.float64) for b in info["bounds"])
    extra = {"eye_height_m": tuple(args.eye_height)} if args.eye_height is not None else {}
    cfg = placement_preset(args.preset, lo, hi, n=args.n, seed=args.seed, layout=args.layout, **extra)
    if args.distance is not None:
        cfg.distance = tuple(args.distance)
    if args.elevation is not None:
        cfg.elevation_deg = tuple(args.elevation)
    cfg.azimuth_deg, cfg.roll_deg, cfg.jitter_m = tuple(args.azimuth), args.roll, args.jitter
    cfg.min_coverage = args.min_coverage
    poses = sample_cameras(cfg, np.asarray(info["target"]), intr, scene_io.building_vertices(),
                           aabb_inside_fn(np.asarray(info["boxes"])))
    atomic_write_json(args.out, {"scene": info["name"], "preset": args.preset, "model_size_m": float(np.max(hi - lo)),
                                 "sampler": cfg.to_dict(), "intrinsics": intr.to_dict(),
                                 "convention": "cam_from_world, OpenCV camera axes",
                                 "cam_from_world": [T.tolist() for T in poses]})
    _emit({"event": "done", "poses": str(args.out), "n": len(poses)})
    return 0


def _check_sample_args(args) -> None:
    """Options of ``sample`` that do not fit its preset: a bad-arguments error before any scene is loaded."""
    street = args.preset == "street"
    if street and args.elevation is not None:
        raise _ArgError("sample: --elevation does not apply to --preset street (its cameras stand at eye height: "
                        "use --eye-height)")
    if not street and args.eye_height is not None:
        raise _ArgError("sample: --eye-height applies to --preset street only")
    for name in ("distance", "elevation", "eye_height"):
        rng = getattr(args, name)
        if rng is not None and not rng[0] <= rng[1]:
            raise _ArgError(f"sample: --{name.replace('_', '-')} MIN MAX must be ordered, got {rng[0]:g} {rng[1]:g}")


def _cameras(args) -> int:
    """Camera objects of a .blend -> ``{"format": "building-pose-cameras", "cam_from_model": [4x4], "names"}``
    (OpenCV axes, the model file's frame: the .blend's world is the file's frame turned by Blender's importer)."""
    from pathlib import Path

    import bpy
    import numpy as np

    from .blender import camera as bcam
    from .core.dataset import atomic_write_json
    from .core.model_frame import default_up_axis, rebase_pose, up_axis_rotation

    blend = Path(args.blend)
    if not blend.is_file():
        raise FileNotFoundError(f".blend not found: {blend}")
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    objs = bpy.data.collections[args.collection].all_objects if args.collection else bpy.data.objects
    cams = sorted((o for o in objs if o.type == "CAMERA"), key=lambda o: o.name)
    if not cams:
        raise ValueError(f"no camera objects in {blend}" + (f" (collection {args.collection})" if args.collection
                                                             else ""))
    blend_from_model = np.eye(4)
    blend_from_model[:3, :3] = up_axis_rotation(args.up_axis or default_up_axis(args.model))
    poses = [rebase_pose(bcam.get_cam_from_world(o), blend_from_model) for o in cams]
    atomic_write_json(args.out, {"format": "building-pose-cameras", "version": 1, "model": str(args.model),
                                 "frame": "model file, OpenCV camera axes", "names": [o.name for o in cams],
                                 "cam_from_model": [T.tolist() for T in poses]})
    _emit({"event": "done", "cameras": str(args.out), "n": len(cams)})
    return 0


def import_model(model: str, frame: str, poses_json) -> list:
    """Import the model file as File > Import does (each importer's default axes: glTF and OBJ turned from Y-up to
    Z-up, PLY as it is) into a "Model" collection, then move it into ``frame``'s world (``import``, ``model`` or
    ``render``, as :func:`pose_addon.core.interchange.read_localize` places the cameras of ``poses_json``);
    returns the new objects."""
    from pathlib import Path

    import bpy
    import mathutils
    import numpy as np

    from .blender.scene_io import MESH_EXTENSIONS, import_mesh, move_into
    from .core.interchange import model_to_blender_import

    path = Path(model)
    if path.suffix.lower() not in MESH_EXTENSIONS:
        raise ValueError(f"cannot import {path} into the .blend: use a .glb, .gltf, .obj or .ply file")
    new = import_mesh(path, file_import_axes=True)
    blend_from_model = model_to_blender_import(str(path))
    if frame == "import":
        frame_from_model = blend_from_model
    elif frame == "model":
        frame_from_model = np.eye(4)
    elif frame == "render":
        doc = json.loads(Path(poses_json).read_text("utf-8"))
        frame_from_model = np.linalg.inv(np.asarray(doc["model_from_world"], np.float64))
    else:
        raise ValueError(f"frame must be import, model or render, got {frame!r}")
    F = mathutils.Matrix((frame_from_model @ np.linalg.inv(blend_from_model)).tolist())
    col = bpy.data.collections.new("Model")
    bpy.context.scene.collection.children.link(col)
    move_into(new, F, col)
    return new


def _worker_python_preference() -> str:
    """The Worker Python set in the extension's preferences, or "" (not set, or not running as an add-on)."""
    import bpy

    from . import prefs

    p = prefs.get()
    return bpy.path.abspath(p.worker_python) if p is not None and p.worker_python else ""


def _localize(args) -> int:
    """Run ``python -m ml_backend localize`` with the worker's interpreter, pass its output on as progress
    events, then (``--blend``) import ``poses.json`` with the extension's importer and save the file."""
    import os
    import subprocess
    from pathlib import Path

    from .worker.process import WorkerSetupError, _project_root, find_python

    rest = [a for a in args.rest if a != "--"]
    if "--out" not in rest:
        raise ValueError("localize needs --out DIR (and --model or --dataset, --photos)")
    out = Path(rest[rest.index("--out") + 1])
    try:  # the extension's Worker Python preference (when it runs as the installed extension), else as the panel
        python = find_python(_worker_python_preference())
    except WorkerSetupError as e:
        raise RuntimeError(f"{e} (or set POSE_WORKER_PYTHON)") from None
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP")}
    root = _project_root(python)
    if root is not None:
        env["PYTHONPATH"] = str(root)
    # in the caller's folder: relative paths of the arguments mean what they say
    proc = subprocess.Popen([str(python), "-m", "ml_backend", "localize", "--quiet", *rest], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        _emit({"event": "progress", "done": len(lines), "total": 0, "message": lines[-1]})
    err = proc.stderr.read()
    if proc.wait() != 0:
        raise RuntimeError(f"localize failed: {err.strip().splitlines()[-1] if err.strip() else proc.returncode}")
    done = {"event": "done", "poses": str((out / "poses.json").resolve()), "summary": lines[-1] if lines else ""}
    if args.blend:
        import bpy

        from . import register
        from .blender.scene_io import reset_scene

        try:
            register()
        except ValueError:  # already registered (a real Blender with the extension enabled)
            pass
        reset_scene()  # a new file: not the startup file's cube, camera and light
        if "--model" in rest:
            import_model(rest[rest.index("--model") + 1], args.frame, out / "poses.json")
        res = bpy.ops.building_pose.import_localize(filepath=str(out / "poses.json"), frame=args.frame)
        if "FINISHED" not in res:
            raise RuntimeError(f"no localized camera to import from {out / 'poses.json'}")
        bpy.ops.wm.save_as_mainfile(filepath=str(Path(args.blend).resolve()))
        done["blend"] = str(Path(args.blend).resolve())
    _emit(done)
    return 0


def main(argv: list[str]) -> int:
    """Run one command; returns the process exit code (0 ok, 1 failure, 2 bad arguments)."""
    try:
        args, rest = build_parser().parse_known_args(argv)
        if rest and args.command != "localize":
            raise _ArgError(f"building_pose headless: unrecognized arguments: {' '.join(rest)}")
        args.rest = rest
        if args.command == "sample":
            _check_sample_args(args)
    except _ArgError as e:
        sys.stderr.write(f"{e}\n")
        _emit({"event": "error", "message": str(e)})
        return 2
    except SystemExit as e:  # --help
        return int(e.code or 0)
    try:
        if args.command in ("render-dataset", "render"):
            return _render_dataset(args)
        if args.command == "sample":
            return _sample(args)
        if args.command == "localize":
            return _localize(args)
        if args.command == "cameras":
            return _cameras(args)
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
