"""What differs between a sharded result and the single-machine one (empty lists: identical).

Timings are left out (``render_s`` of frames, ``time_s`` of photos); everything else must match exactly: image
pixels, file bytes, manifest entries, database arrays and attributes, localize rows."""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from pose_addon.core.dataset import Dataset

__all__ = ["dataset_differences", "database_differences", "localize_differences"]

_TIMINGS = ("render_s", "time_s")


def _strip(d: dict) -> dict:
    return {k: v for k, v in d.items() if k not in _TIMINGS}


def _pixels(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise OSError(f"cannot read image {path}")
    return img


def dataset_differences(a: Path | str, b: Path | str) -> list[str]:
    """Differences between datasets ``a`` and ``b``: manifest (scene, render, planned, complete, frames in order,
    without timings), the pixels of every image (Blender stamps date and render time into PNG text), the bytes of every
    depth, normal and mask file and of scene.glb."""
    da, db = Dataset.load(a), Dataset.load(b)
    out = []
    for key in ("scene", "render", "planned", "complete", "reference_splits"):
        if da.manifest.get(key) != db.manifest.get(key):
            out.append(f"manifest {key} differs")
    if [f.id for f in da.frames] != [f.id for f in db.frames]:
        out.append(f"frame ids differ: {[f.id for f in da.frames][:5]}... vs {[f.id for f in db.frames][:5]}...")
        return out
    for fa, fb in zip(da.frames, db.frames):
        if _strip(fa.to_dict()) != _strip(fb.to_dict()):
            out.append(f"frame {fa.id}: manifest entry differs")
        if not np.array_equal(_pixels(da.path(fa.image)), _pixels(db.path(fb.image))):
            out.append(f"frame {fa.id}: {fa.image} differs")
        for rel in (fa.depth, fa.extras.get("normals"), fa.extras.get("mask")):
            if rel and (da.path(rel).read_bytes() != db.path(rel).read_bytes()):
                out.append(f"frame {fa.id}: {rel} differs")
    g = da.scene.get("gltf")
    if g and da.path(g).read_bytes() != db.path(g).read_bytes():
        out.append(f"{g} differs")
    return out


def database_differences(a: Path | str, b: Path | str) -> list[str]:
    """Differences between two feature databases: root attributes but the dataset path, frame ids, and every
    frame's arrays and attributes."""
    out = []
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        for k in sorted(set(fa.attrs) | set(fb.attrs)):
            if k != "dataset" and str(fa.attrs.get(k)) != str(fb.attrs.get(k)):
                out.append(f"attribute {k} differs: {fa.attrs.get(k)!r} vs {fb.attrs.get(k)!r}")
        ia, ib = sorted(fa["frames"]), sorted(fb["frames"])
        if ia != ib:
            return out + [f"frame ids differ ({len(ia)} vs {len(ib)})"]
        for fid in ia:
            ga, gb = fa["frames"][fid], fb["frames"][fid]
            for k in sorted(set(ga) | set(gb)):
                if k not in ga or k not in gb or not np.array_equal(ga[k][()], gb[k][()]):
                    out.append(f"frame {fid}: {k} differs")
            for k in sorted(set(ga.attrs) | set(gb.attrs)):
                if not np.array_equal(np.asarray(ga.attrs.get(k)), np.asarray(gb.attrs.get(k))):
                    out.append(f"frame {fid}: attribute {k} differs")
    return out


def localize_differences(a: Path | str, b: Path | str) -> list[str]:
    """Differences between two ``localize`` output folders: poses.json (rows without ``time_s``, in order) and
    the COLMAP / nerfstudio exports."""
    ja, jb = (json.loads((Path(x) / "poses.json").read_text("utf-8")) for x in (a, b))
    out = [f"poses.json {k} differs" for k in sorted(set(ja) | set(jb)) if k not in ("photos", "dataset")
           and ja.get(k) != jb.get(k)]
    if len(ja["photos"]) != len(jb["photos"]):
        return out + [f"{len(ja['photos'])} vs {len(jb['photos'])} photos"]
    for ra, rb in zip(ja["photos"], jb["photos"]):
        if _strip(ra) != _strip(rb):
            keys = sorted(k for k in set(ra) | set(rb) if k not in _TIMINGS and ra.get(k) != rb.get(k))
            out.append(f"photo {ra.get('stem')}: {', '.join(keys)} differ")
    for rel in ("colmap/cameras.txt", "colmap/images.txt"):
        if (Path(a) / rel).read_bytes() != (Path(b) / rel).read_bytes():
            out.append(f"{rel} differs")
    ta, tb = ([{**fr, "file_path": str((Path(x) / fr["file_path"]).resolve())}
               for fr in json.loads((Path(x) / "transforms.json").read_text("utf-8"))["frames"]] for x in (a, b))
    if ta != tb:
        out.append("transforms.json differs")
    return out
