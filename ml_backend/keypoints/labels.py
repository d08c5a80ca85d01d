"""Keypoint sets and Ultralytics pose labels from rendered datasets.

Frames: keypoints are 3D points in the dataset's world frame (Blender world, Z up, metres); a frame's
``cam_from_world`` (OpenCV axes) and intrinsics (OpenCV pixels: centre of the top-left pixel at (0, 0)) project
them. Ultralytics' normalized coordinates are continuous image coordinates (the image's top-left *corner* at 0,
its right edge at 1), i.e. ``x_norm = (u_opencv + 0.5) / W``; predictions come back in the same continuous
convention and :func:`from_yolo_pixels` turns them back into OpenCV pixels.

Label line (one per image that shows the building)::

    0 cx cy w h  x1 y1 v1  x2 y2 v2 ...     (all normalized; v = 2 visible, 1 occluded, 0 outside: x = y = 0)
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from pose_addon.core.cameras import project_points
from pose_addon.core.dataset import (
    Dataset,
    DatasetError,
    Frame,
    Keypoint,
    atomic_write_bytes,
    load_keypoints,
    save_keypoints,
)
from pose_addon.core.keypoints import MIN_VIEW_SHARE, suggest_keypoints, visible_in_view

__all__ = ["KeypointSet", "keypoint_set_for_dataset", "load_building_mesh", "frame_keypoints", "frame_bbox",
           "label_line", "parse_label_line", "suggest_outer_corners", "view_counts", "from_yolo_pixels",
           "write_yolo_dataset", "YoloSource",
           "VISIBLE", "OCCLUDED", "OUTSIDE", "DEFAULT_OKS_SIGMA", "TRAIN_OKS_SIGMA",
           "train_yaml_path"]

VISIBLE, OCCLUDED, OUTSIDE = 2, 1, 0
#: OKS sigma of every building keypoint for evaluation (COCO's eyes are 0.025, hips 0.107): corners are sharp,
#: well-defined points.
DEFAULT_OKS_SIGMA = 0.03
#: OKS sigma of ultralytics' keypoint *loss* (``1 - exp(-d^2 / (8 sigma^2 area))``). With 0.03 the loss saturates for
#: the errors of a randomly initialised model (50 px on a 160 px box gives exp(-18)), its gradient vanishes and a
#: model trained from scratch never learns the keypoints (pose mAP 0 after 42 CPU epochs); 0.1 keeps a gradient out
#: to about a quarter of the box and is near-quadratic close to the optimum.
TRAIN_OKS_SIGMA = 0.1
GROUND_NAMES = ("ground", "floor", "terrain", "plane")


@dataclass
class KeypointSet:
    """Named 3D keypoints of a scene and the points that bound the object (for the detection box).

    Attributes:
        names: ``[K]`` unique names.
        points: ``[K, 3]`` world (Blender, Z up, metres).
        hull: ``[M, 3]`` world points whose projections bound the building in an image (mesh hull vertices, or the
            keypoints themselves when no mesh is known).
        views: ``[K]`` how many reference views see each keypoint unoccluded, or None.
    """

    names: list
    points: np.ndarray
    hull: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    views: Optional[np.ndarray] = None  # [K] reference views that see each keypoint (when counted)

    def __post_init__(self):
        self.points = np.asarray(self.points, np.float64).reshape(-1, 3)
        self.hull = np.asarray(self.hull, np.float64).reshape(-1, 3)
        if len(self.hull) == 0:
            self.hull = self.points.copy()
        if len(self.names) != len(self.points):
            raise ValueError(f"{len(self.names)} names for {len(self.points)} keypoints")
        if len(set(self.names)) != len(self.names):
            raise ValueError("keypoint names must be unique")

    def __len__(self) -> int:
        return len(self.names)

    def digest(self) -> str:
        """Short hash of names and positions (cache keys of labels and models)."""
        blob = json.dumps({"names": list(self.names), "points": np.round(self.points, 5).tolist()})
        return hashlib.sha256(blob.encode()).hexdigest()[:10]

    def save(self, path: Path | str, scene: str = "") -> None:
        """Write the extension's keypoint JSON (:func:`pose_addon.core.dataset.save_keypoints`)."""
        save_keypoints(path, [Keypoint(n, tuple(p)) for n, p in zip(self.names, self.points)], scene)


def load_building_mesh(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """The dataset's model without its ground: ``(vertices [V, 3] world, faces [F, 3])``.

    Reads ``scene["gltf"]`` (default ``scene.glb``) with trimesh; ``scene["gltf_up"] == "Y"`` files are turned into
    the Z-up world. Geometry named like a ground (``ground``, ``floor``, ``terrain``, ``plane``) is left out.
    """
    import trimesh

    from ..viz import BLENDER_FROM_GLTF_YUP

    path = dataset.path(dataset.scene.get("gltf", "scene.glb"))
    if not path.is_file():
        raise DatasetError(f"no model file {path}: suggesting keypoints needs the dataset's scene.glb "
                           f"(or pass a keypoint JSON)")
    scene = trimesh.load(path, force="scene")
    verts, faces, off = [], [], 0
    for node in scene.graph.nodes_geometry:
        T, geom_name = scene.graph[node]
        if any(g in f"{node} {geom_name}".lower() for g in GROUND_NAMES):
            continue
        g = scene.geometry[geom_name]
        if not isinstance(g, trimesh.Trimesh) or not len(g.faces):
            continue
        v = np.asarray(g.vertices, np.float64) @ T[:3, :3].T + T[:3, 3]
        up = 1 if str(dataset.scene.get("gltf_up", "Z")).upper() == "Y" else 2
        if np.ptp(v[:, up]) < 0.01 and len(scene.graph.nodes_geometry) > 1:  # a flat plane: the ground
            continue
        verts.append(v)
        faces.append(np.asarray(g.faces, np.int64) + off)
        off += len(v)
    if not verts:
        raise DatasetError(f"{path} holds no mesh besides the ground")
    v = np.concatenate(verts)
    if str(dataset.scene.get("gltf_up", "Z")).upper() == "Y":
        v = v @ BLENDER_FROM_GLTF_YUP.T
    return v, np.concatenate(faces)


def _hull_points(vertices: np.ndarray) -> np.ndarray:
    try:
        from scipy.spatial import ConvexHull

        return vertices[ConvexHull(vertices).vertices]
    except Exception:  # degenerate (flat) meshes: all vertices
        return vertices


def keypoint_set_for_dataset(dataset: Dataset, keypoints_path: Optional[Path | str] = None, k: int = 16,
                             angle_deg: float = 30.0, min_view_share: float = MIN_VIEW_SHARE) -> KeypointSet:
    """The keypoints to train and localize with.

    ``keypoints_path`` (the extension's JSON) if given, else the dataset's own ``keypoints.json``, else ``k``
    points suggested on the building mesh (:func:`suggest_outer_corners`: outer corners on sharp edges that at
    least ``min_view_share`` of the dataset's reference views see unoccluded, spread by farthest-point sampling,
    the ground left out), named ``kp00``, ``kp01``, ... ``views`` of the result counts the reference views that
    see each keypoint (depth-tested).
    """
    hull = np.zeros((0, 3))
    try:
        v, f = load_building_mesh(dataset)
        hull = _hull_points(v)
    except DatasetError:
        v = f = None
    path = Path(keypoints_path) if keypoints_path else dataset.root / "keypoints.json"
    refs = [fr for fr in dataset.reference_frames() if fr.depth]
    if keypoints_path or path.is_file():
        kps = load_keypoints(path)
        if len(kps) < 4:
            raise DatasetError(f"{path} holds {len(kps)} keypoints; PnP needs at least 4 (12+ recommended)")
        kset = KeypointSet([kp.name for kp in kps], np.array([kp.position for kp in kps]), hull)
        kset.views = view_counts(dataset, refs, kset.points)
        return kset
    if v is None:
        raise DatasetError(f"{dataset.root} has neither keypoints.json nor a model to suggest keypoints on")
    pts = suggest_outer_corners(v, f, k=k, angle_deg=angle_deg,
                                seen_by=(lambda p: view_counts(dataset, refs, p)) if refs else None,
                                min_views=max(1, int(np.ceil(min_view_share * len(refs)))))
    # a stable order: by height, then angle around the centre (names then mean the same corner across runs)
    c = pts.mean(0)
    order = np.lexsort((np.arctan2(pts[:, 1] - c[1], pts[:, 0] - c[0]), np.round(pts[:, 2], 2)))
    pts = pts[order]
    kset = KeypointSet([f"kp{i:02d}" for i in range(len(pts))], pts, hull)
    kset.views = view_counts(dataset, refs, kset.points)
    return kset


def view_counts(dataset: Dataset, frames: Sequence[Frame], points: np.ndarray) -> np.ndarray:
    """``[N]`` how many of ``frames`` (with depth) see each world point ``points [N, 3]`` unoccluded."""
    kset = KeypointSet([str(i) for i in range(len(points))], points)
    n = np.zeros(len(kset), np.int64)
    for fr in frames:
        _, vis = frame_keypoints(kset, fr, dataset.read_depth(fr))
        n += vis == VISIBLE
    return n


def suggest_outer_corners(vertices: np.ndarray, faces: np.ndarray, k: int = 16, angle_deg: float = 30.0,
                          hull_tol_m: float = 0.05, seen_by=None, min_views: int = 1) -> np.ndarray:
    """``k`` well-spread corners ``[k, 3]`` on the mesh's convex hull (building corners, eaves, ridge, chimney).

    Outer corners are distinctive for a detector (window corners repeat along a facade); candidates are the sharp-
    edge corners of :mod:`pose_addon.core.keypoints` within ``hull_tol_m`` of the convex hull. ``seen_by(points
    [N, 3]) -> [N]`` counts the views that see each candidate: those seen by fewer than ``min_views`` are left
    out (a corner no training view shows cannot be learned). The rest are spread by farthest-point sampling.
    With fewer than ``k`` candidates, :func:`suggest_keypoints` decides.
    """
    from pose_addon.core.keypoints import corner_vertices, farthest_point_sampling, sharp_edges, weld_vertices

    v, f = weld_vertices(vertices, faces)
    corners = corner_vertices(v, sharp_edges(v, f, angle_deg), angle_deg)
    try:
        from scipy.spatial import ConvexHull

        eq = ConvexHull(v).equations
        outer = corners[(v[corners] @ eq[:, :3].T + eq[:, 3]).max(1) > -hull_tol_m]
    except Exception:
        outer = np.zeros(0, np.int64)
    if seen_by is not None and len(outer):
        seen = np.asarray(seen_by(v[outer]))
        if (seen >= min_views).sum() >= k:
            outer = outer[seen >= min_views]
    if len(outer) < k:
        return suggest_keypoints(vertices, faces, k=k, angle_deg=angle_deg)
    return v[outer[farthest_point_sampling(v[outer], k)]]


def frame_keypoints(kset: KeypointSet, frame: Frame, depth: Optional[np.ndarray] = None, tol_rel: float = 0.02,
                    tol_abs: float = 0.15, window: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Project the keypoints into a frame and flag their visibility.

    Args:
        kset: the keypoints (world).
        frame: the view (``cam_from_world`` OpenCV axes, OpenCV intrinsics).
        depth: the frame's planar depth ``[H, W]`` (metres, 0 = no surface); None: every in-image point is visible.
        tol_rel, tol_abs: a point is occluded when the rendered surface is nearer than ``z * (1 - tol_rel) -
            tol_abs`` at every pixel of the ``(2 * window + 1)^2`` neighbourhood (a corner on the silhouette touches
            background or its own faces there).

    Returns:
        ``uv [K, 2]`` OpenCV pixels, ``vis [K]`` int (2 visible, 1 occluded, 0 outside the image or behind).
    """
    intr = frame.intrinsics
    uv, z = project_points(intr.K, frame.cam_from_world, kset.points)
    w, h = intr.width, intr.height
    inside = np.isfinite(uv).all(1) & (z > 0) & (uv[:, 0] >= -0.5) & (uv[:, 0] < w - 0.5) & (uv[:, 1] >= -0.5) \
        & (uv[:, 1] < h - 0.5)
    vis = np.where(inside, VISIBLE, OUTSIDE).astype(np.int64)
    if depth is not None:  # the extension's visibility rule (pose_addon.core.keypoints), one place
        seen = visible_in_view(kset.points, frame.cam_from_world, intr, depth, tol_rel=tol_rel, tol_abs=tol_abs,
                               window=window)
        vis[inside & ~seen] = OCCLUDED
    return uv, vis


def frame_bbox(kset: KeypointSet, frame: Frame) -> Optional[tuple]:
    """Box ``(x0, y0, x1, y1)`` in continuous image coordinates (corner at 0) of the projected hull, clipped to
    the image; None when the object is not in view."""
    intr = frame.intrinsics
    uv, z = project_points(intr.K, frame.cam_from_world, kset.hull)
    ok = (z > 0) & np.isfinite(uv).all(1)
    if not ok.any():
        return None
    p = uv[ok] + 0.5
    x0, y0 = np.clip(p.min(0), 0, [intr.width, intr.height])
    x1, y1 = np.clip(p.max(0), 0, [intr.width, intr.height])
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return float(x0), float(y0), float(x1), float(y1)


def label_line(bbox: tuple, uv: np.ndarray, vis: np.ndarray, width: int, height: int, cls: int = 0) -> str:
    """One Ultralytics pose label line (normalized; OpenCV ``uv [K, 2]`` shifted by +0.5 to continuous coords)."""
    x0, y0, x1, y1 = bbox
    parts = [str(cls), f"{(x0 + x1) / 2 / width:.6f}", f"{(y0 + y1) / 2 / height:.6f}",
             f"{(x1 - x0) / width:.6f}", f"{(y1 - y0) / height:.6f}"]
    for (u, v), s in zip(uv, vis):
        if s == OUTSIDE:
            parts += ["0.000000", "0.000000", "0"]
        else:
            parts += [f"{(u + 0.5) / width:.6f}", f"{(v + 0.5) / height:.6f}", str(int(s))]
    return " ".join(parts)


def parse_label_line(line: str, n_keypoints: int, width: int, height: int) -> tuple[tuple, np.ndarray, np.ndarray]:
    """Inverse of :func:`label_line`: ``(bbox x0 y0 x1 y1 continuous px, uv [K, 2] OpenCV px, vis [K])``."""
    vals = line.split()
    if len(vals) != 5 + 3 * n_keypoints:
        raise ValueError(f"label line has {len(vals)} values, expected {5 + 3 * n_keypoints}")
    cx, cy, bw, bh = (float(x) for x in vals[1:5])
    kp = np.array(vals[5:], np.float64).reshape(-1, 3)
    uv = kp[:, :2] * [width, height] - 0.5
    return ((cx - bw / 2) * width, (cy - bh / 2) * height, (cx + bw / 2) * width, (cy + bh / 2) * height), uv, \
        kp[:, 2].astype(np.int64)


def from_yolo_pixels(xy: np.ndarray) -> np.ndarray:
    """Ultralytics' predicted keypoints (continuous image pixels) -> OpenCV pixels: ``xy - 0.5``."""
    return np.asarray(xy, np.float64) - 0.5


@dataclass
class YoloSource:
    """Frames of a dataset that go into one Ultralytics split (``train``, ``val`` or ``test``).

    ``degrade``: write a randomly blurred / noised / gamma-shifted copy of each image (seeded by frame id) instead
    of linking the original (ultralytics has no blur or noise augmentation without albumentations).
    """

    dataset: Dataset
    split: str
    yolo_split: str
    degrade: bool = False
    start: Optional[int] = None  # frames[start:stop] of the split (a split by viewpoint)
    stop: Optional[int] = None


def _degrade(img: np.ndarray, key: str) -> np.ndarray:
    rng = np.random.default_rng(int(hashlib.sha256(key.encode()).hexdigest()[:8], 16))
    out = img.astype(np.float32)
    if rng.random() < 0.5:
        out = cv2.GaussianBlur(out, (0, 0), float(rng.uniform(0.4, 1.5)))
    if rng.random() < 0.5:
        out = 255.0 * (np.clip(out / 255.0, 0, 1) ** float(rng.uniform(0.7, 1.4)))
    if rng.random() < 0.6:
        out += rng.normal(0, float(rng.uniform(1.0, 6.0)), out.shape)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def train_yaml_path(data_yaml: Path | str) -> Path:
    """The training YAML written beside a dataset's ``data.yaml`` (same data, the loss's OKS sigma)."""
    return Path(data_yaml).with_name("train.yaml")


def write_yolo_dataset(sources: Sequence[YoloSource], kset: KeypointSet, out_dir: Path | str,
                       oks_sigma: float = DEFAULT_OKS_SIGMA, class_name: str = "building",
                       train_oks_sigma: float = TRAIN_OKS_SIGMA) -> Path:
    """Write an Ultralytics pose dataset (images linked or degraded copies, labels, ``data.yaml``).

    Layout: ``out_dir/images/<split>/<dataset>_<frame>.png`` and ``out_dir/labels/<split>/<same>.txt``; labels
    computed with :func:`frame_keypoints` against each frame's depth. Stale Ultralytics ``*.cache`` files are
    removed. Returns the path of ``data.yaml`` (``kpt_shape [K, 3]``, identity ``flip_idx``, ``kpt_oks_sigmas``,
    ``kpt_names``; ``fliplr: 0`` is also passed at training time). ``train.yaml`` beside it is the same dataset with
    ``train_oks_sigma`` (the training loss's sigma, see :data:`TRAIN_OKS_SIGMA`); train with it, evaluate with
    ``data.yaml``. Everything is written atomically.
    """
    import yaml

    out = Path(out_dir).resolve()
    counts: dict = {}
    for src in sources:
        frames = src.dataset.split(src.split)[src.start:src.stop]
        if not frames:
            raise DatasetError(f"{src.dataset.root} has no frames in split {src.split!r}")
        for fr in frames:
            name = f"{src.dataset.root.name}_{fr.id}"
            img_dst = out / "images" / src.yolo_split / f"{name}.png"
            lab_dst = out / "labels" / src.yolo_split / f"{name}.txt"
            depth = src.dataset.read_depth(fr) if fr.depth else None
            uv, vis = frame_keypoints(kset, fr, depth)
            bbox = frame_bbox(kset, fr)
            text = "" if bbox is None else label_line(bbox, uv, vis, fr.intrinsics.width, fr.intrinsics.height) + "\n"
            atomic_write_bytes(lab_dst, text.encode())
            src_img = src.dataset.path(fr.image).resolve()
            if src.degrade:
                if not img_dst.is_file():
                    img = cv2.imread(str(src_img), cv2.IMREAD_COLOR)
                    if img is None:
                        raise DatasetError(f"cannot read image {src_img}")
                    ok, buf = cv2.imencode(".png", _degrade(img, name))
                    atomic_write_bytes(img_dst, buf.tobytes())
            else:
                img_dst.parent.mkdir(parents=True, exist_ok=True)
                if img_dst.is_symlink() or img_dst.exists():
                    img_dst.unlink()
                os.symlink(src_img, img_dst)
            counts[src.yolo_split] = counts.get(src.yolo_split, 0) + 1
    for cache in (out / "labels").glob("*.cache"):
        cache.unlink()
    k = len(kset)
    data = {"path": str(out), "train": "images/train", "val": "images/val" if "val" in counts else "images/train",
            "names": {0: class_name}, "kpt_shape": [k, 3], "flip_idx": list(range(k)),
            "kpt_names": {0: list(kset.names)}, "kpt_oks_sigmas": [float(oks_sigma)] * k, "fliplr": 0.0}
    if "test" in counts:
        data["test"] = "images/test"
    yaml_path = out / "data.yaml"
    atomic_write_bytes(yaml_path, yaml.safe_dump(data, sort_keys=False).encode())
    train_data = dict(data, kpt_oks_sigmas=[float(train_oks_sigma)] * k)
    atomic_write_bytes(train_yaml_path(yaml_path), yaml.safe_dump(train_data, sort_keys=False).encode())
    kset.save(out / "keypoints.json")
    atomic_write_bytes(out / "hull.json", json.dumps(kset.hull.tolist()).encode())
    atomic_write_bytes(out / "counts.json", json.dumps(counts).encode())
    return yaml_path
