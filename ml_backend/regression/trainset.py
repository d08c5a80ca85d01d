"""Training views for the learned methods: a dataset's Blender references plus views rendered worker-side.

Rendering training views through Blender costs seconds a frame; the worker's OpenGL renderer
(:mod:`ml_backend.render`) draws the baked ``scene.glb`` in ~20 ms. Its images lack Cycles' shadows and light,
so each is lit with a random Lambert light and ambient level on a random sky colour, with sensor noise. The
training dataset is written in the dataset schema (split ``reference``, so the SIFT database of
``retrieval_nn_train`` covers exactly the same images); each frame's ``source`` extra says ``blender`` or ``gl``.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np

from pose_addon.core.dataset import Dataset, DatasetError, Frame, atomic_write_bytes, write_depth
from pose_addon.core.sampling import SamplerConfig, aabb_inside_fn, sample_cameras

from ..progress import progress_bar

__all__ = ["build_train_dataset", "train_dataset_state"]


def train_dataset_state(out_dir: Path | str, plan: dict) -> str:
    """``missing``, ``ok`` (complete, built to ``plan``) or ``stale`` (incomplete, unreadable, other settings or an
    earlier state of the same source dataset: rebuilt) of the training set in ``out_dir``.

    Raises:
        DatasetError: ``out_dir`` holds the training views of another dataset (the message names both digests).
    """
    out = Path(out_dir)
    if not out.exists():
        return "missing"
    try:
        ds = Dataset.load(out)
    except Exception:  # a crash mid-write or a foreign folder without a manifest: rebuilt
        return "stale"
    old = ds.manifest.get("render", {}).get("train_plan") or {}
    if old.get("source_digest") != plan["source_digest"] and old.get("source_dataset") != plan["source_dataset"]:
        raise DatasetError(f"{out} holds the training views of {old.get('source_dataset', '?')} (digest "
                           f"{old.get('source_digest', 'none')}), not of {plan['source_dataset']} (digest "
                           f"{plan['source_digest']}): choose another folder or delete it")
    return "ok" if ds.complete and old == plan else "stale"


def build_train_dataset(dataset_dir: Path | str, out_dir: Path | str, n_render: int = 300, seed: int = 2,
                        progress: bool = True) -> Path:
    """Copy ``dataset_dir``'s references and render ``n_render`` extra views into ``out_dir`` (cached).

    Poses are sampled like the bench's references (distance/elevation ranges of the references' sampler) with
    another seed. Returns ``out_dir``; a complete existing one with the same plan is reused, a stale one rebuilt
    (:func:`train_dataset_state`); the manifest records the source dataset and its references' digest.

    Raises:
        DatasetError: ``out_dir`` holds the training views of another dataset (the message names both digests).
    """
    from ..render import SceneRenderer

    src = Dataset.load(dataset_dir)
    out = Path(out_dir)
    refs = src.reference_frames()
    if not refs:
        raise ValueError(f"{src.root} has no reference frames to train on")
    plan = {"source_dataset": str(Path(dataset_dir).resolve()), "source_digest": src.digest(refs),
            "n_blender": len(refs), "n_gl": int(n_render), "seed": int(seed)}
    if train_dataset_state(out, plan) == "ok":
        return out
    if out.exists():
        shutil.rmtree(out)
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    ds = Dataset.create(tmp, dict(src.scene), {"train_plan": plan, "engine": "mixed: Blender references + moderngl"},
                        {"reference": len(refs) + n_render})
    (tmp / "images").mkdir(parents=True)
    (tmp / "depth").mkdir()
    for f in refs:
        for rel in (f.image, f.depth):
            shutil.copyfile(src.path(rel), tmp / rel)
        ds.add_frame(Frame(f.id, "reference", f.image, f.depth, f.intrinsics, f.cam_from_world,
                           {"source": "blender"}))
    shutil.copyfile(src.path(src.scene.get("gltf", "scene.glb")), tmp / "scene.glb")
    sampler = src.manifest.get("render", {}).get("config", {}).get("groups", [{}])[0].get("sampler", {})
    scfg = SamplerConfig(n=n_render, layout="random", distance=tuple(sampler.get("distance", (25.0, 40.0))),
                         elevation_deg=tuple(sampler.get("elevation_deg", (5.0, 35.0))), seed=seed)
    intr = refs[0].intrinsics
    boxes = np.asarray(src.scene.get("boxes", []), np.float64)
    target = np.asarray(src.scene.get("target", [0, 0, 0]), np.float64)
    b = np.asarray(src.scene["bounds"], np.float64)
    corners = np.array([[x, y, z] for x in b[:, 0] for y in b[:, 1] for z in b[:, 2]])
    poses = sample_cameras(scfg, target, intr, target_points=corners,
                           inside_fn=aabb_inside_fn(boxes) if len(boxes) else None)
    rng = np.random.default_rng(seed)
    with SceneRenderer(tmp / "scene.glb") as r:
        for i, T in enumerate(progress_bar(poses, desc="train views", unit="view", disable=not progress)):
            el, az = np.radians(rng.uniform(25, 70)), np.radians(rng.uniform(0, 360))
            r.set_lighting((float(np.cos(el) * np.cos(az)), float(np.cos(el) * np.sin(az)), float(np.sin(el))),
                           float(rng.uniform(0.35, 0.7)))
            rgb, depth = r.render(T, intr)
            sky = rng.uniform(0.5, 0.65) * np.array([1.0, 1.0, rng.uniform(1.0, 1.1)]) * 255
            img = np.where((depth > 0)[..., None], rgb.astype(np.float32) * rng.uniform(0.8, 1.2), sky)
            img = np.clip(img + rng.normal(0, 2.0, img.shape), 0, 255).astype(np.uint8)
            fid = f"train_{i:04d}"
            ok, png = cv2.imencode(".png", img[:, :, ::-1])
            atomic_write_bytes(tmp / f"images/{fid}.png", png.tobytes())
            write_depth(tmp / f"depth/{fid}.npz", depth)
            ds.add_frame(Frame(fid, "reference", f"images/{fid}.png", f"depth/{fid}.npz", intr, T, {"source": "gl"}))
    ds.manifest["complete"] = True
    ds.save()
    tmp.rename(out)
    return out
