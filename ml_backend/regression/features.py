"""Cache image features of a dataset in HDF5, with augmented views, for BuildingPoseNetCached.

File layout (one file per dataset split + extractor + augmentation conf)::

    features   [N, D] float32   one row per (image, view); view 0 is the unaugmented image
    image_ids  [N]    str       frame id of each row
    view       [N]    int32     0 = original, k > 0 = k-th augmented view
    cam_from_world [N, 4, 4] float64 (OpenCV axes, world = Blender world)
    attrs: extractor (name), extractor_version, preprocessing (JSON), augment (JSON), dataset, split

Extraction runs in chunks; every chunk is an HDF5 shard written to a temporary name and renamed, so an interrupted
run resumes from the last complete shard; the final file is assembled the same way (temp + rename) and the shards
removed. A finished file is reused when its conf matches.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Optional

import cv2
import h5py
import numpy as np

from pose_addon.core.dataset import Dataset

from ..progress import progress_bar
from .extractors import Extractor, load_rgb, to_tensor

__all__ = ["default_augment", "augment_image", "features_path", "extract_features", "load_features"]

default_augment = {"n_views": 0, "crop_scale": (0.94, 1.0), "brightness": (0.7, 1.3), "contrast": (0.7, 1.3),
                   "saturation": (0.7, 1.3), "blur_p": 0.4, "blur_sigma": (0.3, 1.5), "noise_std": (0.0, 6.0)}


def augment_image(img: np.ndarray, rng: np.random.Generator, conf: dict) -> np.ndarray:
    """One augmented copy of ``img [H, W, 3]`` uint8: small crop-and-resize, colour jitter, blur, noise."""
    h, w = img.shape[:2]
    s = rng.uniform(*conf["crop_scale"])
    ch, cw = int(round(h * s)), int(round(w * s))
    y0, x0 = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    x = cv2.resize(img[y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    x *= rng.uniform(*conf["brightness"])
    m = x.mean()
    x = (x - m) * rng.uniform(*conf["contrast"]) + m
    g = x.mean(2, keepdims=True)
    x = (x - g) * rng.uniform(*conf["saturation"]) + g
    if rng.random() < conf["blur_p"]:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(*conf["blur_sigma"]))
    x += rng.normal(0, rng.uniform(*conf["noise_std"]), x.shape)
    return np.clip(x, 0, 255).astype(np.uint8)


def _conf_key(extractor: Extractor, augment: dict, dataset: Path, split: str, digest: str) -> tuple[str, str]:
    conf = {"extractor": extractor.meta(), "augment": augment, "dataset": str(Path(dataset).resolve()),
            "split": split, "dataset_digest": digest}
    cj = json.dumps(conf, sort_keys=True)
    return cj, hashlib.sha1(cj.encode()).hexdigest()[:10]


def features_path(out_dir: Path | str, extractor: Extractor, augment: dict, dataset: Path | str, split: str,
                  digest: str) -> Path:
    """File name encoding the extractor, the augmentation, the dataset/split and the frames' digest."""
    _, h = _conf_key(extractor, augment, Path(dataset), split, digest)
    return Path(out_dir) / f"feats-{extractor.name.replace(':', '_')}-{split}-v{augment['n_views']}-{h}.h5"


def _write_h5(path: Path, arrays: dict, attrs: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with h5py.File(tmp, "w") as f:
            for k, v in arrays.items():
                if v.dtype.kind in "UO":
                    f.create_dataset(k, data=np.asarray(v, dtype=object), dtype=h5py.string_dtype())
                else:
                    f.create_dataset(k, data=v, chunks=True if v.ndim and len(v) else None)
            for k, v in attrs.items():
                f.attrs[k] = v
        os.replace(tmp, path)
    except OSError as e:  # disk full, permission denied: no temporary file is left behind
        tmp.unlink(missing_ok=True)
        raise OSError(e.errno, f"cannot write {path}: {os.strerror(e.errno) if e.errno else e}") from None


def extract_features(dataset_dir: Path | str, out_dir: Path | str, extractor: Extractor, split: str = "reference",
                     augment: Optional[dict] = None, chunk: int = 32, batch: int = 8, seed: int = 0,
                     progress: bool = True, frame_ids: Optional[list] = None) -> Path:
    """Extract (or finish extracting) features of a dataset split; returns the HDF5 path.

    Args:
        dataset_dir: dataset folder. split: which frames. frame_ids: restrict to these ids (else all of the split).
        extractor: from :func:`~.extractors.create_extractor`.
        augment: overrides of :data:`default_augment`; ``n_views`` augmented views per image besides the original.
        chunk: images per shard. batch: images per forward pass. seed: augmentation seed (per image and view).
    """
    aug = {**default_augment, **(augment or {})}
    aug = {k: list(v) if isinstance(v, tuple) else v for k, v in aug.items()}
    ds = Dataset.load(dataset_dir)
    frames = ds.split(split) if frame_ids is None else [ds.frame(i) for i in frame_ids]
    if not frames:
        raise ValueError(f"dataset {ds.root} has no frames in split {split!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    digest = ds.digest(frames)
    cj, _ = _conf_key(extractor, aug, ds.root, split, digest)
    final = features_path(out_dir, extractor, aug, ds.root, split, digest)
    ids = [f.id for f in frames]
    if final.is_file():
        with h5py.File(final, "r") as f:
            if f.attrs.get("conf") == cj and sorted(set(x.decode() if isinstance(x, bytes) else x
                                                        for x in f["image_ids"][:])) == sorted(ids):
                return final
    shard_dir = final.with_name(final.stem + ".shards")
    shard_dir.mkdir(exist_ok=True)
    chunks = [frames[i:i + chunk] for i in range(0, len(frames), chunk)]
    bar = progress_bar(total=len(frames), desc=f"features {extractor.name}", unit="img", disable=not progress)
    for ci, fr in enumerate(chunks):
        shard = shard_dir / f"{ci:05d}.h5"
        if shard.is_file():
            bar.update(len(fr))
            continue
        imgs, rows = [], []
        for f in fr:
            img = load_rgb(ds.path(f.image))
            rng = np.random.default_rng([seed, int(hashlib.sha1(f.id.encode()).hexdigest()[:8], 16)])
            for v in range(int(aug["n_views"]) + 1):
                imgs.append(img if v == 0 else augment_image(img, rng, aug))
                rows.append((f.id, v, f.cam_from_world))
        feats = []
        for i in range(0, len(imgs), batch):
            feats.append(extractor(to_tensor(imgs[i:i + batch])).numpy())
        _write_h5(shard, {"features": np.concatenate(feats).astype(np.float32),
                          "image_ids": np.array([r[0] for r in rows], dtype=object),
                          "view": np.array([r[1] for r in rows], np.int32),
                          "cam_from_world": np.stack([np.asarray(r[2], np.float64) for r in rows])},
                  {"conf": cj})
        bar.update(len(fr))
    bar.close()
    parts = [load_features(shard_dir / f"{ci:05d}.h5") for ci in range(len(chunks))]
    merged = {k: np.concatenate([p[k] for p in parts]) for k in ("features", "image_ids", "view", "cam_from_world")}
    meta = extractor.meta()
    _write_h5(final, merged, {"conf": cj, "extractor": meta["name"], "extractor_version": meta["version"],
                              "preprocessing": json.dumps(meta["preprocessing"]), "augment": json.dumps(aug),
                              "dataset": str(ds.root.resolve()), "split": split, "dataset_digest": digest})
    for ci in range(len(chunks)):
        (shard_dir / f"{ci:05d}.h5").unlink(missing_ok=True)
    shard_dir.rmdir()
    return final


def load_features(path: Path | str) -> dict:
    """Arrays of a feature file: ``features [N, D]``, ``image_ids [N]`` (str), ``view [N]``,
    ``cam_from_world [N, 4, 4]``, and ``attrs`` (dict)."""
    with h5py.File(path, "r") as f:
        out = {"features": f["features"][:], "view": f["view"][:], "cam_from_world": f["cam_from_world"][:],
               "image_ids": np.array([x.decode() if isinstance(x, bytes) else str(x) for x in f["image_ids"][:]],
                                     dtype=object),
               "attrs": dict(f.attrs)}
    return out
