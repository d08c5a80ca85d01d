"""Keypoint suggestion: well-spread salient points of a mesh (corners on sharp edges, farthest-point sampling).

numpy only, so it runs in Blender (the Keypoints panel) and in the worker alike.
"""
from __future__ import annotations

import numpy as np

__all__ = ["weld_vertices", "sharp_edges", "corner_vertices", "farthest_point_sampling", "suggest_keypoints"]


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


def suggest_keypoints(vertices: np.ndarray, faces: np.ndarray, k: int = 16, angle_deg: float = 30.0,
                      min_z: float | None = None) -> np.ndarray:
    """Propose ``k`` well-spread salient points ``[k', 3]`` (world) of a triangle mesh.

    Candidates are corners where sharp edges meet; when there are fewer than ``k`` of them, vertices on
    sharp edges, then all vertices, fill in. ``min_z`` drops candidates below a height (e.g. the ground).
    """
    v, f = weld_vertices(vertices, faces)
    edges = sharp_edges(v, f, angle_deg)
    corners = corner_vertices(v, edges, angle_deg)
    pools = [corners, np.unique(edges), np.arange(len(v))]
    cand = np.zeros(0, dtype=np.int64)
    for pool in pools:
        if min_z is not None:
            pool = pool[v[pool, 2] >= min_z]
        cand = pool
        if len(cand) >= k:
            break
    return v[cand[farthest_point_sampling(v[cand], k)]]
