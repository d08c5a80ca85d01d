"""Localize a folder of photos against a model (or a rendered dataset) and write the cameras in the model's frame.

    python -m ml_backend localize --model FILE | --dataset DIR --photos FILES|DIR --out DIR
        [--intrinsics exif|estimate|fx,fy,cx,cy|calib.json] [--method sift] [--up-axis Z|Y|-Y|X|...]
        [--preset orbit|street|aerial] [--n-references N] [--scale F] [--options JSON] [--seed-cameras JSON]

With ``--model`` the references are rendered once through Blender (placement preset, or the band of cameras the
user placed: ``--seed-cameras``; cached by model content and settings under ``--cache``); with ``--dataset`` the
dataset's reference splits serve. Each photo is read with its EXIF orientation applied, gets its intrinsics, and
goes through the method (:mod:`.methods.interface`); a photo that cannot be read, has no usable intrinsics or
fails the acceptance rule is reported with its reason and the batch goes on.

Output folder (the layout the extension's importer reads)::

    poses.json        {"format": "building-pose-localize", "version": 1, "model", "model_from_world", "method",
                       "intrinsics", "photos": [{"image", "stem", "status": "ok"|"failed", "reason", "width",
                       "height", "K", "dist", "cam_from_world" (OpenCV axes, model frame), "n_inliers",
                       "inlier_ratio", "confidence", "time_s", "in_band", "band_note"}], "summary": {...}}
    colmap/           cameras.txt, images.txt, points3D.txt (localized photos, model frame)
    transforms.json   nerfstudio (localized photos, model frame, OpenGL camera axes)

``in_band`` says whether the camera lies in the band the references cover (distance and elevation, or eye
height for the street preset); a photo outside it was localized from references seen from elsewhere.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from pose_addon.core.cameras import Intrinsics
from pose_addon.core.dataset import Dataset, Frame, atomic_write_json, json_safe, write_colmap, write_nerfstudio
from pose_addon.core.model_frame import rebase_pose
from pose_addon.core.render_config import ENGINES, GROUND_STYLES, LightingConfig, RenderConfig, RenderGroup
from pose_addon.core.sampling import PRESETS, SamplerConfig, in_band, placement_from_cameras, placement_preset

from .distributed.cluster import active as distributed_active
from .estimate import estimate_photo, list_photos
from .intrinsics import IntrinsicsError, load_photo, parse_intrinsics_arg, resolve
from .methods.interface import Method, open_method
from .paths import CACHE_DIR
from .scenes import DEFAULT_LONGEST_M

__all__ = ["LocalizeOptions", "localize_photos", "reference_dataset", "reference_bands", "unique_stems",
           "localize_one", "summarize", "write_outputs", "FORMAT", "VERSION"]

FORMAT = "building-pose-localize"
VERSION = 1


@dataclass
class LocalizeOptions:
    """What ``localize`` is asked to do (see the module docstring)."""

    photos: list = field(default_factory=list)  # files and/or folders
    out: Path = Path("runs/localize")
    model: Optional[str] = None
    dataset: Optional[str] = None
    intrinsics: str = "exif"
    method: str = "sift"
    options: dict = field(default_factory=dict)  # method options (see methods.interface)
    up_axis: Optional[str] = None
    scale: Optional[float] = None
    preset: str = "street"
    n_references: int = 60
    width: int = 640
    height: int = 480
    samples: int = 16
    engine: str = "CYCLES"
    ground: str = "textured"
    reference_splits: Optional[list] = None
    seed_cameras: Optional[str] = None  # JSON of cameras placed by the user (cam_from_model): references around them
    cache: Optional[Path] = None
    progress: bool = True


def reference_config(preset: str, bounds: tuple, n: int, width: int, height: int, engine: str,
                     samples: int) -> RenderConfig:
    """Render config of the references: one ``reference`` group placed by ``preset`` around ``bounds``."""
    if preset not in PRESETS:
        raise ValueError(f"unknown --preset {preset!r}; choose one of {', '.join(PRESETS)}")
    sampler = placement_preset(preset, bounds[0], bounds[1], n=n, seed=0)
    cfg = RenderConfig(groups=[RenderGroup("reference", sampler, LightingConfig(), noise_std=0.0)], width=width,
                       height=height, engine=engine, samples=samples)
    cfg.validate()
    return cfg


def reference_dataset(opts: LocalizeOptions) -> Dataset:
    """The dataset whose references the photos are localized against: ``opts.dataset``, or the (cached) render
    of ``opts.model`` with the placement preset."""
    if bool(opts.model) == bool(opts.dataset):
        raise ValueError("give exactly one of --model (a mesh file) or --dataset (a rendered dataset)")
    if opts.dataset:
        return Dataset.load(opts.dataset)
    from .bench import ensure_dataset
    from .scenes import parse_scene

    spec = parse_scene(opts.model, opts.scale, opts.ground, opts.up_axis)
    bounds = spec.world_bounds()
    cfg = reference_config(opts.preset, bounds, opts.n_references, opts.width, opts.height, opts.engine,
                           opts.samples)
    if opts.seed_cameras:  # the band of the user's cameras instead of a preset
        cams = read_seed_cameras(opts.seed_cameras)
        model_from_world = np.linalg.inv(spec.world_from_model())
        world = [rebase_pose(T, model_from_world) for T in cams]
        cfg.groups[0].sampler = placement_from_cameras(world, (bounds[0] + bounds[1]) / 2, float(bounds[0][2]),
                                                       n=opts.n_references)
    cache = Path(opts.cache) if opts.cache else CACHE_DIR
    return Dataset.load(ensure_dataset(spec, cfg, cache, opts.progress))


def read_seed_cameras(path: str | Path) -> list[np.ndarray]:
    """``cam_from_model`` poses ``[4, 4]`` (OpenCV axes, the model file's frame) of a cameras JSON: ``{"format":
    "building-pose-cameras", "cam_from_model": [4x4, ...]}`` as the headless ``cameras`` command writes it."""
    p = Path(path)
    try:
        d = json.loads(p.read_text("utf-8"))
        poses = [np.asarray(T, np.float64) for T in d["cam_from_model"]]
    except FileNotFoundError:
        raise FileNotFoundError(f"seed cameras file not found: {p}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{p}: expected {{'cam_from_model': [4x4, ...]}}: {e}") from None
    if not poses or any(T.shape != (4, 4) for T in poses):
        raise ValueError(f"{p}: 'cam_from_model' must be a non-empty list of 4x4 matrices")
    return poses


def reference_bands(ds: Dataset) -> list[SamplerConfig]:
    """The placement bands (samplers) of ``ds``'s reference groups, from its render config: what a localized
    camera is checked against (``in_band``); empty when the manifest does not record them."""
    groups = ds.manifest.get("render", {}).get("config", {}).get("groups", [])
    splits = set(ds.reference_splits())
    return [SamplerConfig.from_dict(g["sampler"]) for g in groups if g.get("split") in splits and "sampler" in g]


def _photo_row(path: Path, stem: str) -> dict:
    return {"image": str(path.resolve()), "stem": stem, "status": "failed", "reason": None, "width": None,
            "height": None, "K": None, "dist": None, "cam_from_world": None, "n_inliers": 0, "inlier_ratio": 0.0,
            "confidence": 0.0, "time_s": 0.0}


def localize_photos(opts: LocalizeOptions, on_progress: Optional[Callable[[float, str], None]] = None) -> dict:
    """Localize every photo of ``opts.photos``; writes ``opts.out`` (see the module docstring), returns poses.json.

    Raises:
        ValueError / FileNotFoundError / DatasetError: bad arguments, no photos, a missing model or dataset.
    """
    from .progress import progress_bar

    spec = parse_intrinsics_arg(opts.intrinsics)
    photos = [p for arg in opts.photos for p in list_photos(arg)]
    if not photos:
        raise ValueError("no photos given")
    ds = reference_dataset(opts)
    model_from_world = np.asarray(ds.scene.get("model_from_world", np.eye(4)), np.float64)
    world_from_model = np.linalg.inv(model_from_world)
    bands = reference_bands(ds)
    target = np.asarray(ds.scene.get("target", [0, 0, 0]), np.float64)
    cache = Path(opts.cache) if opts.cache else CACHE_DIR
    rows = []
    stems = unique_stems(photos)
    with open_method(opts.method, ds, cache / "localize" / ds.root.name, opts.options) as method:
        bar = progress_bar(photos, desc=f"localize {opts.method}", unit="photo", disable=not opts.progress)
        for i, path in enumerate(bar):
            row = localize_one(method, path, stems[i], spec, world_from_model, bands, target)
            rows.append(row)
            bar.set_postfix_str(f"{row['stem']}: {row['status']}"[:40])
            if on_progress:
                on_progress((i + 1) / len(photos), f"{row['stem']}: {row['status']} {row['reason'] or ''}")
    result = {"format": FORMAT, "version": VERSION, "model": ds.scene.get("source") or str(ds.root),
              "dataset": str(ds.root.resolve()), "model_from_world": model_from_world.tolist(),
              "method": opts.method, "intrinsics": opts.intrinsics, "photos": rows,
              "summary": summarize(rows)}
    write_outputs(result, Path(opts.out))
    return json_safe(result)


def unique_stems(photos: Sequence[Path]) -> list[str]:
    """One name per photo, in order: its file stem, with ``_1``, ``_2``... after the first of a repeated stem."""
    seen: dict[str, int] = {}
    out = []
    for p in photos:
        n = seen.get(p.stem, 0)
        seen[p.stem] = n + 1
        out.append(p.stem if n == 0 else f"{p.stem}_{n}")
    return out


def localize_one(method: Method, path: Path, stem: str, spec: dict, world_from_model: np.ndarray,
                 bands: Sequence[SamplerConfig], target: np.ndarray) -> dict:
    """The ``poses.json`` row of one photo localized with the opened ``method`` (through
    :func:`ml_backend.estimate.estimate_photo`, as the ``estimate`` job and request do).

    Args:
        spec: the intrinsics spec (:func:`ml_backend.intrinsics.parse_intrinsics_arg`); ``estimate`` solves the
            focal length.
        world_from_model: ``[4, 4]``, the model file's frame in the render world (the inverse of the manifest's
            ``model_from_world``); the row's ``cam_from_world`` is in the model's frame (OpenCV camera axes).
        bands: :func:`reference_bands`; ``target`` ``[3]`` (render world) the point they are placed around.

    A photo that cannot be read, has unusable intrinsics or fails the acceptance rule gives a ``failed`` row with
    the reason (never raises for it); a missing model file raises and stops the batch.
    """
    import time

    row = _photo_row(path, stem)
    t0 = time.perf_counter()
    try:
        rgb = load_photo(path)
        intr = resolve(path, spec)
        est = estimate_photo(method, path, rgb, intr, estimate_focal=spec["source"] == "estimate")
    except (IntrinsicsError, ValueError) as e:  # this photo; a missing model file stops the batch
        row.update(reason=str(e), time_s=time.perf_counter() - t0)
        return row
    k = Intrinsics.from_dict(est["intrinsics"])
    row.update(width=k.width, height=k.height, K=k.K.tolist(), dist=list(k.dist[:2]) if k.dist else None,
               n_inliers=est["n_inliers"], inlier_ratio=est["inlier_ratio"], confidence=est["confidence"],
               time_s=time.perf_counter() - t0, reproj_error_px=est["reproj_error_px"])
    if not est["success"] or est["cam_from_world"] is None:
        row["reason"] = est["reason"] or "not localized"
        return row
    T = np.asarray(est["cam_from_world"], np.float64)  # render world
    row.update(status="ok", cam_from_world=rebase_pose(T, world_from_model).tolist())
    if bands:
        checks = [in_band(b, target, T) for b in bands]
        row["in_band"] = any(ok for ok, _ in checks)
        row["band_note"] = "" if row["in_band"] else checks[0][1]
    return row


def summarize(rows: Sequence[dict]) -> dict:
    """``poses.json``'s ``summary`` of the photo rows: ``n_photos``, ``n_localized``, ``outside_band`` (stems of
    photos localized outside the references' band) and ``failed`` (stem -> reason)."""
    ok = [r for r in rows if r["status"] == "ok"]
    return {"n_photos": len(rows), "n_localized": len(ok),
            "outside_band": [r["stem"] for r in ok if r.get("in_band") is False],
            "failed": {r["stem"]: r["reason"] for r in rows if r["status"] != "ok"}}


def write_outputs(result: dict, out: Path) -> None:
    """``poses.json``, ``colmap/`` and ``transforms.json`` of a localize result (atomic writes).

    The exports hold the localized photos only, through the dataset's COLMAP and nerfstudio writers: COLMAP
    names each photo by its file name, nerfstudio by its absolute path.
    """
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "poses.json", result)
    frames = [Frame(id=r["stem"], split="photo", image=str(Path(r["image"]).resolve()), depth=None,
                    intrinsics=Intrinsics.from_K(np.asarray(r["K"], np.float64), int(r["width"]), int(r["height"]),
                                                 r.get("dist") or ()),
                    cam_from_world=np.asarray(r["cam_from_world"], np.float64))
              for r in result["photos"] if r["status"] == "ok"]
    write_colmap([dataclasses.replace(f, image=Path(f.image).name) for f in frames], out / "colmap")
    write_nerfstudio(frames, out / "transforms.json", root=out)


def add_arguments(p) -> None:
    """The ``localize`` command's arguments (see the module docstring)."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="the building as a mesh file (.glb/.gltf/.obj/.ply): references are rendered")
    src.add_argument("--dataset", help="a rendered dataset folder whose reference splits serve as references")
    p.add_argument("--photos", nargs="+", required=True, help="photo files and/or folders of photos")
    p.add_argument("--out", required=True, help="output folder (poses.json, colmap/, transforms.json)")
    p.add_argument("--intrinsics", default="exif", help="exif, estimate, fx,fy,cx,cy (pixels) or a calibration file")
    p.add_argument("--method", default="sift", help="a method name (python -m ml_backend methods lists them)")
    p.add_argument("--options", default="{}", help="method options as JSON, e.g. '{\"min_inliers\": 30}'")
    p.add_argument("--up-axis", default=None, help="the mesh file's up axis: Z, Y, X, -Z, -Y, -X "
                   "(default: Y for glTF and OBJ, Z for PLY)")
    p.add_argument("--scale", type=float, default=None,
                   help=f"model units -> metres (default: longest side {DEFAULT_LONGEST_M:g} m)")
    p.add_argument("--preset", default="street", choices=PRESETS, help="where the references are rendered from")
    p.add_argument("--seed-cameras", default=None, help="JSON of cameras placed in Blender (headless 'cameras' "
                   "command): references are rendered in their band instead of the preset's")
    p.add_argument("--n-references", type=int, default=60)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--engine", default=ENGINES[0], choices=ENGINES)
    p.add_argument("--ground", default=GROUND_STYLES[0], choices=GROUND_STYLES)
    p.add_argument("--cache", default=None, help="cache folder (default: <checkout>/.cache/ml_backend)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args) -> int:
    """Entry of ``python -m ml_backend localize``; prints a one-line summary per photo and the totals."""
    try:
        options = json.loads(args.options)
    except ValueError as e:
        raise ValueError(f"--options is not JSON: {e}") from None
    opts = LocalizeOptions(photos=list(args.photos), out=Path(args.out), model=args.model, dataset=args.dataset,
                           intrinsics=args.intrinsics, method=args.method, options=options, up_axis=args.up_axis,
                           scale=args.scale, preset=args.preset, n_references=args.n_references, width=args.width,
                           height=args.height, samples=args.samples, engine=args.engine, ground=args.ground,
                           seed_cameras=args.seed_cameras, cache=Path(args.cache) if args.cache else None,
                           progress=not args.quiet)
    run_localize = localize_photos
    if distributed_active():  # --ray: photos in chunks as Ray tasks (see ml_backend.distributed.localize)
        from .distributed.localize import localize_photos as run_localize
    res = run_localize(opts)
    for r in res["photos"]:
        what = f"{r['n_inliers']} inliers, confidence {r['confidence']:.2f}" if r["status"] == "ok" else r["reason"]
        band = "" if r.get("in_band", True) else f" (outside the references' band: {r.get('band_note')})"
        print(f"{r['stem']}: {r['status']}: {what}{band}")
    s = res["summary"]
    print(f"{s['n_localized']} of {s['n_photos']} photos localized; results in {Path(args.out) / 'poses.json'}")
    sys.stdout.flush()
    return 0
