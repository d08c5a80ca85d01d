"""A stand-in for "your own model, your own photos": a Kenney house (or any glb) exported as an off-centre, Y-up,
vertex-coloured PLY, "photos" rendered at street level from known cameras and saved as JPEG with EXIF (focal
length, sensor pitch, 35 mm equivalent; one stored rotated with an EXIF orientation, one unreadable), then the
``localize`` command run on them and its cameras compared with the truth in the PLY's own frame.

    .venv/bin/python -m tests.localize_standin --out runs/standin [--n-references 60 --n-photos 12
        --width 640 --height 480 --samples 16 --intrinsics known,exif,estimate --method sift]

prints one line of figures per intrinsics mode and writes ``figures.json``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
KENNEY = ROOT.parent / "shared" / "data" / "buildings" / "kenney_city_kit_suburban" / "glb" / "building-type-a.glb"
OFFSET = np.array([250.0, 3.0, -120.0])  # the PLY sits far from its origin (model units)
LENS_MM, SENSOR_MM = 30.0, 36.0  # the render config's camera


def write_ply(src: Path, out: Path, offset=OFFSET) -> np.ndarray:
    """``src`` (a glb, Y-up by glTF) as a binary PLY with per-vertex sRGB colours, moved by ``offset``; returns
    its vertices ``[N, 3]`` (the model frame)."""
    import trimesh

    scene = trimesh.load(src, force="scene")
    parts = []
    for node in scene.graph.nodes_geometry:
        T, name = scene.graph[node]
        g = scene.geometry[name].copy()
        g.apply_transform(T)
        g.visual = g.visual.to_color()
        parts.append(g)
    mesh = trimesh.util.concatenate(parts)
    mesh.apply_translation(offset)
    out.parent.mkdir(parents=True, exist_ok=True)
    mesh.export(out, file_type="ply")
    return np.asarray(mesh.vertices, np.float64)


def _exif(orientation: int = 1, width: int = 640):
    from PIL import Image
    from PIL.TiffImagePlugin import IFDRational

    exif = Image.Exif()
    exif[0x0112] = orientation
    sub = exif.get_ifd(0x8769)
    sub[0x920A] = IFDRational(int(LENS_MM * 100), 100)  # FocalLength, mm
    sub[0xA20E] = IFDRational(int(round(width / SENSOR_MM * 25.4 * 1000)), 1000)  # FocalPlaneXResolution, px/inch
    sub[0xA210] = 2  # FocalPlaneResolutionUnit: inch
    sub[0xA405] = int(round(LENS_MM))  # FocalLengthIn35mmFilm (36 mm wide frame)
    return exif


def render_photos(ply: Path, out: Path, cache: Path, n: int, width: int, height: int, samples: int,
                  up_axis: str = "Y", progress: bool = False) -> dict:
    """Render ``n`` street-level views of ``ply`` (through the same Blender import as ``localize``), save them as
    JPEG with EXIF under ``out/photos`` (the second one rotated by EXIF orientation 6, plus an unreadable
    ``broken.jpg``); returns ``{stem: {"cam_from_model", "K", "dataset", "frame"}}``."""
    from PIL import Image

    from ml_backend import blender_runner
    from ml_backend.scenes import parse_scene
    from pose_addon.core.dataset import Dataset, atomic_write_json
    from pose_addon.core.model_frame import rebase_pose
    from pose_addon.core.render_config import LightingConfig, RenderConfig, RenderGroup
    from pose_addon.core.sampling import placement_preset

    spec = parse_scene(str(ply), None, "textured", up_axis)
    lo, hi = spec.world_bounds()
    sampler = placement_preset("street", lo, hi, n=n, seed=7, layout="random")
    sampler.jitter_m = 0.03 * float((hi - lo).max())  # photos do not all aim at the centre
    light = LightingConfig(sun_elevation_deg=(30.0, 60.0), sun_strength=(2.5, 4.5))
    cfg = RenderConfig(groups=[RenderGroup("photo", sampler, light, noise_std=2.0)], width=width, height=height,
                       samples=samples)
    cfg_path = out / "photos.render.json"
    atomic_write_json(cfg_path, cfg.to_dict())
    ds_dir = blender_runner.render_dataset(str(ply), cfg_path, out / "photo_renders", cache, progress=progress,
                                           up_axis=up_axis)
    ds = Dataset.load(ds_dir)
    world_from_model = np.linalg.inv(np.asarray(ds.scene["model_from_world"], np.float64))
    photos = out / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    truth = {}
    for i, f in enumerate(ds.split("photo")):
        img = np.asarray(Image.open(ds.path(f.image)).convert("RGB"))
        stem = f"photo_{i:03d}"
        if i == 1:  # stored turned 90 deg counter-clockwise; orientation 6 says "turn clockwise to display"
            Image.fromarray(np.ascontiguousarray(np.rot90(img, 1))).save(photos / f"{stem}.jpg", quality=95,
                                                                           exif=_exif(6, width))
        else:
            Image.fromarray(img).save(photos / f"{stem}.jpg", quality=95, exif=_exif(1, width))
        truth[stem] = {"cam_from_model": rebase_pose(f.cam_from_world, world_from_model), "K": f.intrinsics.K,
                       "frame": f.id}
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    return {"truth": truth, "dataset": ds, "world_from_model": world_from_model}


def pose_errors(est: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(camera-centre distance in model units, rotation angle in degrees)."""
    c = lambda T: -T[:3, :3].T @ T[:3, 3]  # noqa: E731
    dR = est[:3, :3] @ truth[:3, :3].T
    ang = float(np.degrees(np.arccos(np.clip((np.trace(dR) - 1) / 2, -1, 1))))
    return float(np.linalg.norm(c(est) - c(truth))), ang


def evaluate(poses: dict, truth: dict, diagonal: float) -> dict:
    """Figures of a ``poses.json`` against the truth (model frame): shares, medians, worst localized error."""
    rows = {r["stem"]: r for r in poses["photos"]}
    t_err, r_err, f_err = [], [], []
    for stem, gt in truth.items():
        r = rows.get(stem)
        if r is None or r["status"] != "ok":
            continue
        dt, dr = pose_errors(np.asarray(r["cam_from_world"]), gt["cam_from_model"])
        t_err.append(dt)
        r_err.append(dr)
        f_err.append(abs(r["K"][0][0] / gt["K"][0, 0] - 1))
    med = lambda v: float(np.median(v)) if v else None  # noqa: E731
    return {"n_photos": len(truth), "n_localized": len(t_err), "localized": len(t_err) / max(1, len(truth)),
            "median_centre_rel_diag": None if not t_err else med(t_err) / diagonal, "median_R_deg": med(r_err),
            "max_R_deg": max(r_err) if r_err else None, "median_focal_rel_err": med(f_err),
            "broken_reported": rows.get("broken", {}).get("status") == "failed"
            and bool(rows.get("broken", {}).get("reason"))}


def run_localize(ply: Path, photos: Path, out: Path, cache: Path, intrinsics: str, n_references: int, width: int,
                 height: int, samples: int, method: str = "sift", extra: list = ()) -> dict:
    """``python -m ml_backend localize`` as a user runs it; returns its poses.json."""
    cmd = [sys.executable, "-m", "ml_backend", "localize", "--model", str(ply), "--up-axis", "Y", "--photos",
           str(photos), "--out", str(out), "--intrinsics", intrinsics, "--method", method, "--n-references",
           str(n_references), "--width", str(width), "--height", str(height), "--samples", str(samples),
           "--cache", str(cache), "--quiet", *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"localize failed ({proc.returncode}): {proc.stderr[-3000:]}")
    return json.loads((out / "poses.json").read_text())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--glb", default=str(KENNEY))
    p.add_argument("--n-references", type=int, default=60)
    p.add_argument("--n-photos", type=int, default=12)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--method", default="sift")
    p.add_argument("--intrinsics", default="known,exif,estimate")
    a = p.parse_args(argv)
    out = Path(a.out).resolve()
    cache = out / "cache"
    ply = out / "scan.ply"
    verts = write_ply(Path(a.glb), ply)
    diag = float(np.linalg.norm(verts.max(0) - verts.min(0)))
    ph = render_photos(ply, out, cache, a.n_photos, a.width, a.height, a.samples, progress=True)
    K = next(iter(ph["truth"].values()))["K"]
    modes = {"known": f"{K[0, 0]},{K[1, 1]},{K[0, 2]},{K[1, 2]}", "exif": "exif", "estimate": "estimate"}
    figures = {}
    for mode in a.intrinsics.split(","):
        poses = run_localize(ply, out / "photos", out / f"localize-{mode}", cache, modes[mode], a.n_references,
                             a.width, a.height, a.samples, a.method)
        figures[mode] = evaluate(poses, ph["truth"], diag)
        print(f"{mode}: {json.dumps(figures[mode])}")
    (out / "figures.json").write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
