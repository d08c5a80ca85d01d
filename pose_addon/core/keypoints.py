"""Keypoints: suggestion of well-spread salient points of a mesh (corners on sharp edges, farthest-point sampling)
and how many views see each keypoint (depth test against a view's rendered depth, or an occlusion test the caller
gives, e.g. Blender's ray cast).

numpy only, so it runs in Blender (the Keypoints panel) and in the worker alike.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Optional

import numpy as np

from .cameras import Intrinsics, project_points

__all__ = ["weld_vertices", "sharp_edges", "corner_vertices", "farthest_point_sampling", "candidate_pools",
           "choose_keypoints", "suggest_keypoints", "MIN_VIEW_SHARE", "min_views", "visible_in_view", "view_counts"]

#: a keypoint seen by fewer than this share of the reference views is too rarely seen to be learned
MIN_VIEW_SHARE = 0.15

#: ``occluded(eye [3], points [M, 3]) -> bool [M]``: True where the scene hides a world point from a camera at ``eye``
OcclusionTest = Callable[[np.ndarray, np.ndarray], np.ndarray]


def weld_vertices(vertices: np.ndarray, faces: np.ndarray, tol: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
    """Merge coincident vertices (split by UV seams or flat shading): returns ``(vertices [V', 3], faces [F, 3])``."""
    v = np.asarray(vertices, dtype=np.float64)
    key = np.round(v / tol).astype(np.int64)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    return v[first], inverse.reshape(-1)[np.asarray(faces)]


def sharp_edges(vertices: np.ndarray, faces: np.ndarray, angle_deg: float = 30.0) -> np.ndarray:
    """Edges ``[E, 2]`` (vertex indices) whose two triangles meet at more than ``angle_deg``, plus open edges."""
    v, f = np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64)
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    area2 = np.linalg.norm(n, axis=1)
    keep = area2 > 1e-12
    f, n = f[keep], n[keep] / area2[keep, None]
    e = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    face_of = np.tile(np.arange(len(f)), 3)
    order = np.lexsort((e[:, 1], e[:, 0]))
    e, face_of = e[order], face_of[order]
    same = np.all(e[1:] == e[:-1], axis=1)
    sharp = []
    i = 0
    while i < len(e):
        j = i + 1
        while j < len(e) and same[j - 1]:
            j += 1
        normals = n[face_of[i:j]]
        if j - i == 1:
            sharp.append(e[i])
        else:
            cos = np.clip(normals @ normals.T, -1, 1)
            if np.degrees(np.arccos(cos.min())) > angle_deg:
                sharp.append(e[i])
        i = j
    return np.array(sharp, dtype=np.int64).reshape(-1, 2)


def corner_vertices(vertices: np.ndarray, edges: np.ndarray, angle_deg: float = 30.0) -> np.ndarray:
    """Vertices where sharp edges of at least two directions (more than ``angle_deg`` apart) meet."""
    v = np.asarray(vertices, dtype=np.float64)
    dirs: dict[int, list[np.ndarray]] = {}
    for a, b in edges:
        d = v[b] - v[a]
        d /= max(np.linalg.norm(d), 1e-12)
        dirs.setdefault(int(a), []).append(d)
        dirs.setdefault(int(b), []).append(-d)
    cos_max = np.cos(np.radians(angle_deg))
    out = []
    for i, ds in dirs.items():
        D = np.array(ds)
        if len(D) >= 2 and np.abs(D @ D.T).min() < cos_max:
            out.append(i)
    return np.array(sorted(out), dtype=np.int64)


def farthest_point_sampling(points: np.ndarray, k: int, start: int | None = None) -> np.ndarray:
    """Indices of ``k`` points ``[N, 3]`` picked greedily to be far from each other (deterministic).

    Starts from the point farthest from the centroid unless ``start`` is given.
    """
    p = np.asarray(points, dtype=np.float64)
    k = min(k, len(p))
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    first = int(np.argmax(np.linalg.norm(p - p.mean(0), axis=1))) if start is None else start
    chosen = [first]
    d = np.linalg.norm(p - p[first], axis=1)
    for _ in range(k - 1):
        i = int(np.argmax(d))
        chosen.append(i)
        d = np.minimum(d, np.linalg.norm(p - p[i], axis=1))
    return np.array(chosen, dtype=np.int64)


def candidate_pools(vertices: np.ndarray, faces: np.ndarray, angle_deg: float = 30.0,
                    min_z: float | None = None) -> list[np.ndarray]:
    """Keypoint candidates ``[M_i, 3]`` (world) of a triangle mesh in order of preference: corners where sharp
    edges meet, vertices on sharp edges, all vertices; ``min_z`` drops those below a height (e.g. the ground)."""
    v, f = weld_vertices(vertices, faces)
    edges = sharp_edges(v, f, angle_deg)
    corners = corner_vertices(v, edges, angle_deg)
    pools = []
    for pool in (corners, np.unique(edges), np.arange(len(v))):
        if min_z is not None:
            pool = pool[v[pool, 2] >= min_z]
        pools.append(v[pool])
    return pools


def choose_keypoints(pools: list[np.ndarray], k: int,
                     seen_by: Optional[Callable[[np.ndarray], np.ndarray]] = None, min_views: int = 1,
                     max_counted: int = 2000) -> np.ndarray:
    """``k`` well-spread points ``[k', 3]`` by farthest-point sampling from the first of ``pools``
    (:func:`candidate_pools`) that holds ``k`` candidates.

    With ``seen_by(points [M, 3]) -> [M]`` (how many views see each point), candidates seen by fewer than
    ``min_views`` are left out first (a keypoint no training view shows cannot be learned); a pool of more than
    ``max_counted`` candidates is evenly thinned to that many before counting. When no pool keeps ``k`` seen
    candidates, the views are ignored.
    """
    if seen_by is not None:
        for pts in pools:
            if len(pts) < k:
                continue
            if len(pts) > max_counted:
                pts = pts[np.linspace(0, len(pts) - 1, max_counted).astype(np.int64)]
            keep = pts[np.asarray(seen_by(pts)) >= min_views]
            if len(keep) >= k:
                return keep[farthest_point_sampling(keep, k)]
    cand = pools[-1]
    for pts in pools:
        cand = pts
        if len(cand) >= k:
            break
    return cand[farthest_point_sampling(cand, k)]


def suggest_keypoints(vertices: np.ndarray, faces: np.ndarray, k: int = 16, angle_deg: float = 30.0,
                      min_z: float | None = None, seen_by: Optional[Callable[[np.ndarray], np.ndarray]] = None,
                      min_views: int = 1) -> np.ndarray:
    """Propose ``k`` well-spread salient points ``[k', 3]`` (world) of a triangle mesh.

    Candidates are corners where sharp edges meet; when there are fewer than ``k`` of them, vertices on
    sharp edges, then all vertices, fill in. ``min_z`` drops candidates below a height (e.g. the ground);
    ``seen_by`` and ``min_views`` keep to candidates enough views see (:func:`choose_keypoints`).
    """
    return choose_keypoints(candidate_pools(vertices, faces, angle_deg, min_z), k, seen_by, min_views)


def min_views(n_views: int, share: float = MIN_VIEW_SHARE) -> int:
    """The fewest views (at least 1) out of ``n_views`` that must see a keypoint for it to be learnable."""
    return max(1, int(math.ceil(share * n_views - 1e-9)))


def visible_in_view(points: np.ndarray, cam_from_world: np.ndarray, intr: Intrinsics,
                    depth: Optional[np.ndarray] = None, occluded: Optional[OcclusionTest] = None,
                    tol_rel: float = 0.02, tol_abs: float = 0.15, window: int = 1) -> np.ndarray:
    """Which world points ``[N, 3]`` a view sees: ``bool [N]``.

    A point is seen when it projects inside the image (OpenCV pixels, pinhole ``intr``) in front of the camera
    (``cam_from_world`` OpenCV axes) and is not hidden: with ``depth`` (the view's planar depth ``[H, W]``, metres,
    0 = no surface) it is hidden when the surface is nearer than ``z * (1 - tol_rel) - tol_abs`` at every pixel of
    the ``(2 * window + 1)^2`` neighbourhood (a corner on the silhouette touches background or its own faces
    there); else ``occluded(eye, points)`` decides when given; else in the image and in front is seen.
    """
    p = np.asarray(points, np.float64).reshape(-1, 3)
    T = np.asarray(cam_from_world, np.float64)
    uv, z = project_points(intr.K, T, p)
    w, h = intr.width, intr.height
    with np.errstate(invalid="ignore"):
        seen = np.isfinite(uv).all(1) & (z > 0) & (uv[:, 0] >= -0.5) & (uv[:, 0] < w - 0.5) \
            & (uv[:, 1] >= -0.5) & (uv[:, 1] < h - 0.5)
    if depth is not None:
        depth = np.asarray(depth)
        if depth.shape != (h, w):
            raise ValueError(f"depth {depth.shape} does not match the view's {h}x{w}")
        d = np.where(depth > 0, depth, np.inf)
        for i in np.nonzero(seen)[0]:
            x, y = int(round(uv[i, 0])), int(round(uv[i, 1]))
            patch = d[max(0, y - window):y + window + 1, max(0, x - window):x + window + 1]
            if patch.max() < z[i] * (1 - tol_rel) - tol_abs:
                seen[i] = False
    elif occluded is not None and seen.any():
        eye = -T[:3, :3].T @ T[:3, 3]
        idx = np.nonzero(seen)[0]
        seen[idx] = ~np.asarray(occluded(eye, p[idx]), bool)
    return seen


def view_counts(points: np.ndarray,
                views: Iterable[tuple[np.ndarray, Intrinsics, Optional[np.ndarray]]],
                occluded: Optional[OcclusionTest] = None, tol_rel: float = 0.02, tol_abs: float = 0.15
                ) -> tuple[np.ndarray, int]:
    """How many ``views`` (``(cam_from_world [4, 4] OpenCV axes, intrinsics, planar depth [H, W] or None)``, read
    one at a time, so a generator can load depth lazily) see each world point ``points [N, 3]``
    (:func:`visible_in_view`; ``occluded`` serves the views without depth). Returns ``(counts [N], views)``."""
    p = np.asarray(points, np.float64).reshape(-1, 3)
    counts = np.zeros(len(p), np.int64)
    n = 0
    for T, intr, depth in views:
        counts += visible_in_view(p, T, intr, depth, occluded, tol_rel, tol_abs)
        n += 1
    return counts, n
