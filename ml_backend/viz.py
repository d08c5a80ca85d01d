"""Figures: cumulative recall vs error, and a query with the model's sharp edges drawn at a pose (PNG)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from pose_addon.core.cameras import project_points
from pose_addon.core.dataset import Dataset, Frame

__all__ = ["plot_recall_curves", "load_model_edges", "draw_edges", "draw_model_edges"]

#: glTF Y-up (x, y, z) -> Blender world Z-up (x, -z, y), for files exported with Y up.
BLENDER_FROM_GLTF_YUP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def plot_recall_curves(errors: dict[str, tuple[Sequence[float], Sequence[float]]], out_png: Path | str) -> Path:
    """Cumulative share of queries under a translation (m, log axis) / rotation (deg) error, one line per method.

    Args:
        errors: ``{method: (t_errors [Q] metres, R_errors [Q] degrees)}``; inf = not localized.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, (t, r) in errors.items():
        for ax, e in zip(axes, (t, r)):
            e = np.sort(np.asarray(e, np.float64))
            n = max(len(e), 1)
            fin = e[np.isfinite(e)]
            if len(fin):
                ax.step(np.concatenate([[fin[0] * 0.5], fin]), np.arange(len(fin) + 1) / n, where="post",
                        label=name)
    for ax, label in zip(axes, ("translation error (m)", "rotation error (deg)")):
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("share of queries")
        ax.set_ylim(0, 1.02)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right")
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png


def load_model_edges(glb_path: Path | str, gltf_up: str = "Z", angle_deg: float = 30.0) -> np.ndarray:
    """Sharp and boundary edges of a glTF model as segments ``[E, 2, 3]`` in the world frame (Z up, metres).

    ``gltf_up`` is the dataset manifest's ``scene["gltf_up"]``: "Z" when the file holds Blender world
    coordinates, "Y" for standard Y-up glTF.
    """
    import trimesh

    glb_path = Path(glb_path)
    if not glb_path.is_file():
        raise FileNotFoundError(f"model file not found: {glb_path}")
    scene = trimesh.load(glb_path, force="scene")
    meshes = [g for g in scene.dump() if isinstance(g, trimesh.Trimesh) and len(g.faces)]
    if not meshes:
        raise ValueError(f"{glb_path} holds no triangle mesh")
    mesh = trimesh.util.concatenate(meshes)
    mesh.merge_vertices()  # glTF splits vertices at UV seams: merge to find adjacency
    sharp = mesh.face_adjacency_edges[mesh.face_adjacency_angles > np.radians(angle_deg)]
    edges_sorted = np.sort(mesh.edges, axis=1)
    uniq, counts = np.unique(edges_sorted, axis=0, return_counts=True)
    boundary = uniq[counts == 1]
    segs = mesh.vertices[np.concatenate([sharp, boundary])]
    if gltf_up.upper() == "Y":
        segs = segs @ BLENDER_FROM_GLTF_YUP.T
    return np.asarray(segs, np.float64)


def _visible_pieces(segments: np.ndarray, T: np.ndarray, K: np.ndarray, depth: np.ndarray,
                    step_px: float = 3.0, tol: float = 0.03) -> np.ndarray:
    """Split world segments ``[E, 2, 3]`` into short pieces and keep those not hidden behind ``depth``."""
    uv, z = project_points(K, T, segments.reshape(-1, 3))
    uv = uv.reshape(-1, 2, 2)
    length = np.linalg.norm(uv[:, 1] - uv[:, 0], axis=1)
    length = np.where(np.isfinite(length), length, 0.0)
    h, w = depth.shape
    pieces = []
    for seg, n in zip(segments, np.clip(np.ceil(length / step_px), 1, 2000).astype(int)):
        t = np.linspace(0.0, 1.0, n + 1)
        pts = seg[0] + (seg[1] - seg[0]) * t[:, None]
        mid = (pts[:-1] + pts[1:]) / 2
        muv, mz = project_points(K, T, mid)
        x = np.rint(muv[:, 0]).astype(np.int64, copy=False) if np.isfinite(muv).all() else np.full(len(mid), -1)
        y = np.rint(muv[:, 1]).astype(np.int64, copy=False) if np.isfinite(muv).all() else np.full(len(mid), -1)
        inside = (x >= 0) & (x < w) & (y >= 0) & (y < h) & (mz > 0)
        d = np.zeros(len(mid))
        d[inside] = depth[y[inside], x[inside]]
        # visible: no surface there (background), or the edge is not behind the surface
        vis = inside & ((d <= 0) | (mz <= d * (1 + tol) + 0.05))
        for i in np.nonzero(vis)[0]:
            pieces.append(pts[i:i + 2])
    return np.asarray(pieces, np.float64).reshape(-1, 2, 3)


def draw_edges(image: np.ndarray, K: np.ndarray, cam_from_world: np.ndarray, segments: np.ndarray,
               color: tuple = (0, 255, 0), near: float = 0.05, depth: Optional[np.ndarray] = None) -> np.ndarray:
    """Draw world segments ``[E, 2, 3]`` projected with ``K`` and ``cam_from_world`` onto a BGR image copy.

    Segments are clipped to the half-space in front of the camera (``z > near``). With ``depth`` (planar Z of
    the view, metres, 0 = none) the pieces hidden behind a surface are left out; without it occlusion is ignored.
    """
    out = image.copy()
    T = np.asarray(cam_from_world, np.float64)
    if depth is not None:
        segments = _visible_pieces(segments, T, np.asarray(K, np.float64), np.asarray(depth, np.float64))
    p = segments.reshape(-1, 3) @ T[:3, :3].T + T[:3, 3]
    a, b = p[0::2], p[1::2]
    za, zb = a[:, 2], b[:, 2]
    keep = (za > near) | (zb > near)
    a, b, za, zb = a[keep], b[keep], za[keep], zb[keep]
    # clip the part behind the near plane
    s = np.clip((near - za) / np.where(zb != za, zb - za, 1.0), 0.0, 1.0)
    a = np.where((za < near)[:, None], a + (b - a) * s[:, None], a)
    s = np.clip((near - zb) / np.where(za != zb, za - zb, 1.0), 0.0, 1.0)
    b = np.where((zb < near)[:, None], b + (a - b) * s[:, None], b)
    ident = np.eye(4)
    ua, _ = project_points(K, ident, a)
    ub, _ = project_points(K, ident, b)
    lim = 4 * max(out.shape[:2])
    for p0, p1 in zip(np.clip(ua, -lim, lim), np.clip(ub, -lim, lim)):
        cv2.line(out, tuple(int(round(v * 16)) for v in p0), tuple(int(round(v * 16)) for v in p1), color, 1,
                 cv2.LINE_AA, shift=4)
    return out


def draw_model_edges(dataset: Dataset, frame: Frame, cam_from_world: Optional[np.ndarray], out_png: Path | str,
                     draw_ground_truth: bool = True, angle_deg: float = 30.0) -> Path:
    """The frame's image with the dataset model's sharp edges at ``cam_from_world`` (green; ground truth red).

    Edges hidden behind the model are culled with the frame's rendered depth when it has one.
    """
    scene = dataset.scene
    segs = load_model_edges(dataset.path(scene.get("gltf", "scene.glb")), scene.get("gltf_up", "Z"), angle_deg)
    img = cv2.imread(str(dataset.path(frame.image)), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"cannot read image {dataset.path(frame.image)}")
    K = frame.intrinsics.K
    depth = dataset.read_depth(frame) if frame.depth and dataset.path(frame.depth).is_file() else None
    if draw_ground_truth:
        img = draw_edges(img, K, frame.cam_from_world, segs, (0, 0, 255), depth=depth)
    if cam_from_world is not None:
        img = draw_edges(img, K, np.asarray(cam_from_world), segs, (0, 255, 0), depth=depth)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out_png), img):
        raise ValueError(f"cannot write {out_png}")
    return out_png
