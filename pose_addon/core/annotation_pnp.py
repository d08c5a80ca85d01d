"""Small numpy-only PnP for the extension's manual annotation (no worker needed).

The PnP of the methods is :mod:`ml_backend.pnp` (robust: poselib, pycolmap or OpenCV RANSAC); this one exists
because the extension cannot import those libraries and must solve a few clicks without a worker.

For a handful of clicked 2D-3D pairs: DLT (six or more points, also gives the focal length), a planar
homography start (four or more coplanar points, common on facades) and look-at starts around the points feed a
Levenberg-Marquardt refinement of the reprojection error. The worker's robust PnP (poselib) is preferred when it
runs; this solver has no outlier rejection and expects correct clicks.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .cameras import project_points
from .poses import axis_angle_to_matrix, make_pose, matrix_to_axis_angle, project_to_so3
from .sampling import look_at

__all__ = ["PnPSolution", "solve_pnp_numpy"]


@dataclass
class PnPSolution:
    """``cam_from_world`` (OpenCV axes), the K used or estimated, per-point reprojection errors in pixels."""

    cam_from_world: np.ndarray
    K: np.ndarray
    errors_px: np.ndarray
    focal_estimated: bool = False
    notes: list = field(default_factory=list)

    @property
    def rmse_px(self) -> float:
        return float(np.sqrt(np.mean(self.errors_px ** 2)))


def _residuals(params: np.ndarray, p2: np.ndarray, p3: np.ndarray, K: np.ndarray, with_f: bool) -> np.ndarray:
    R = axis_angle_to_matrix(params[:3])
    t = params[3:6]
    Kx = K.copy()
    if with_f:
        Kx[0, 0] = Kx[1, 1] = np.exp(params[6])
    pc = p3 @ R.T + t
    z = pc[:, 2]
    behind = np.maximum(0.0, 1e-3 - z) * 1e4  # heavy penalty for points behind the camera
    zs = np.where(z > 1e-3, z, 1e-3)
    uv = pc[:, :2] / zs[:, None] * np.diag(Kx)[:2] + Kx[:2, 2]
    return np.concatenate([(uv - p2).ravel(), behind])


def _lm(params: np.ndarray, p2, p3, K, with_f: bool, iters: int = 100) -> tuple[np.ndarray, float]:
    lam = 1e-3
    r = _residuals(params, p2, p3, K, with_f)
    cost = float(r @ r)
    for _ in range(iters):
        J = np.empty((len(r), len(params)))
        for j in range(len(params)):
            d = np.zeros_like(params)
            d[j] = 1e-6 * max(1.0, abs(params[j]))
            J[:, j] = (_residuals(params + d, p2, p3, K, with_f) - r) / d[j]
        A = J.T @ J
        g = J.T @ r
        improved = False
        for _ in range(10):
            step = np.linalg.solve(A + lam * np.diag(np.diag(A) + 1e-9), -g)
            cand = params + step
            rc = _residuals(cand, p2, p3, K, with_f)
            c = float(rc @ rc)
            if c < cost:
                params, r, cost, lam = cand, rc, c, max(lam / 10, 1e-12)
                improved = True
                break
            lam *= 10
        if not improved or np.linalg.norm(step) < 1e-12:
            break
    return params, cost


def _dlt(p2: np.ndarray, p3: np.ndarray) -> np.ndarray | None:
    """3x4 projection matrix from >= 6 correspondences (normalized DLT), or None if degenerate."""
    if len(p2) < 6:
        return None
    m2, s2 = p2.mean(0), np.sqrt(2) / max(np.linalg.norm(p2 - p2.mean(0), axis=1).mean(), 1e-9)
    m3, s3 = p3.mean(0), np.sqrt(3) / max(np.linalg.norm(p3 - p3.mean(0), axis=1).mean(), 1e-9)
    T2 = np.array([[s2, 0, -s2 * m2[0]], [0, s2, -s2 * m2[1]], [0, 0, 1]])
    T3 = np.diag([s3, s3, s3, 1.0])
    T3[:3, 3] = -s3 * m3
    x = (np.c_[p2, np.ones(len(p2))] @ T2.T)
    X = (np.c_[p3, np.ones(len(p3))] @ T3.T)
    rows = []
    for (u, v, w), Xi in zip(x, X):
        rows.append(np.r_[np.zeros(4), -w * Xi, v * Xi])
        rows.append(np.r_[w * Xi, np.zeros(4), -u * Xi])
    _, S, Vt = np.linalg.svd(np.array(rows))
    if S[-2] < 1e-9 * S[0]:
        return None  # coplanar or otherwise degenerate
    P = np.linalg.inv(T2) @ Vt[-1].reshape(3, 4) @ T3
    return P


def _decompose(P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """P = K [R | t] -> (K, cam_from_world) with positive focal lengths and det(R) = +1."""
    M = P[:, :3]
    if np.linalg.det(M) < 0:
        P, M = -P, -M
    # RQ decomposition through QR of the flipped matrix
    Q, Rm = np.linalg.qr(np.flipud(M).T)
    K = np.flipud(np.fliplr(Rm.T))
    R = np.flipud(Q.T)
    D = np.diag(np.sign(np.diag(K)))
    K, R = K @ D, D @ R
    t = np.linalg.solve(K, P[:, 3])
    K = K / K[2, 2]
    return K, make_pose(project_to_so3(R), t)


def _homography_start(p2: np.ndarray, p3: np.ndarray, K: np.ndarray) -> np.ndarray | None:
    """Pose from >= 4 (nearly) coplanar points via the plane homography, or None."""
    c = p3.mean(0)
    _, S, Vt = np.linalg.svd(p3 - c)
    if S[2] > 1e-3 * S[0]:
        return None
    e1, e2 = Vt[0], Vt[1]
    q = np.c_[(p3 - c) @ e1, (p3 - c) @ e2]
    A = []
    xn = np.c_[p2, np.ones(len(p2))] @ np.linalg.inv(K).T
    for (x, y), (u, v, _) in zip(q, xn):
        A.append([x, y, 1, 0, 0, 0, -u * x, -u * y, -u])
        A.append([0, 0, 0, x, y, 1, -v * x, -v * y, -v])
    H = np.linalg.svd(np.array(A))[2][-1].reshape(3, 3)
    H /= np.linalg.norm(H[:, 0])
    if H[2, 2] < 0:
        H = -H
    r1, r2 = H[:, 0], H[:, 1]
    R_plane = project_to_so3(np.c_[r1, r2, np.cross(r1, r2)])
    t = H[:, 2]
    # plane frame -> world: p = c + e1 x + e2 y (+ n z)
    B = np.c_[e1, e2, np.cross(e1, e2)]
    R = R_plane @ B.T
    return make_pose(R, t - R @ c)


def solve_pnp_numpy(points2d: np.ndarray, points3d: np.ndarray, K: np.ndarray | None = None,
                    image_size: tuple[int, int] | None = None) -> PnPSolution:
    """Pose (and focal length when ``K`` is None) from clicked correspondences.

    Args:
        points2d: ``[N, 2]`` pixels (OpenCV convention).
        points3d: ``[N, 3]`` world points (metres).
        K: 3x3 intrinsics, or None to estimate a single focal length (principal point at the image centre;
            needs ``image_size`` (width, height) and at least six points).

    Raises:
        ValueError: fewer than four points (six without K), or shapes that do not match.
    """
    p2 = np.asarray(points2d, dtype=np.float64).reshape(-1, 2)
    p3 = np.asarray(points3d, dtype=np.float64).reshape(-1, 3)
    if len(p2) != len(p3):
        raise ValueError(f"{len(p2)} image points but {len(p3)} 3D points")
    if len(p2) < 4:
        raise ValueError(f"need at least 4 correspondences to solve a pose, got {len(p2)}")
    with_f = K is None
    notes = []
    if with_f:
        if len(p2) < 6:
            raise ValueError(f"estimating the focal length needs at least 6 correspondences, got {len(p2)}")
        if image_size is None:
            raise ValueError("image_size (width, height) is needed to estimate the focal length")
        w, h = image_size
        K = np.array([[max(w, h), 0, w / 2 - 0.5], [0, max(w, h), h / 2 - 0.5], [0, 0, 1.0]])
    K = np.asarray(K, dtype=np.float64)

    starts: list[tuple[np.ndarray, float]] = []
    P = _dlt(p2, p3)
    if P is not None:
        K_dlt, T = _decompose(P)
        f = float(np.sqrt(abs(K_dlt[0, 0] * K_dlt[1, 1])))
        starts.append((T, f if with_f and np.isfinite(f) and f > 0 else K[0, 0]))
        notes.append("dlt")
    Th = _homography_start(p2, p3, K)
    if Th is not None:
        starts.append((Th, K[0, 0]))
        notes.append("homography")
    def refine_all(cands):
        out = None
        for T, f in cands:
            params = np.r_[matrix_to_axis_angle(T[:3, :3]), T[:3, 3]]
            if with_f:
                params = np.r_[params, np.log(f)]
            params, cost = _lm(params, p2, p3, K, with_f, iters=30)
            if out is None or cost < out[1]:
                out = (params, cost)
        return out

    best = refine_all(starts) if starts else None
    good_px = 10.0  # a closed-form start that already explains the clicks this well needs no global search
    if best is None or np.sqrt(best[1] / len(p2)) > good_px:
        centroid = p3.mean(0)
        spread3 = max(np.linalg.norm(p3 - centroid, axis=1).mean(), 1e-6)
        spread2 = max(np.linalg.norm(p2 - p2.mean(0), axis=1).mean(), 1e-6)
        dist = K[0, 0] * spread3 / spread2
        golden = np.pi * (3 - np.sqrt(5))
        grid = []
        for i in range(24):
            zi = 1 - 2 * (i + 0.5) / 24
            ri = np.sqrt(1 - zi * zi)
            eye = centroid + dist * np.array([ri * np.cos(i * golden), ri * np.sin(i * golden), zi])
            grid.append((look_at(eye, centroid), K[0, 0]))
        notes.append("look-at search")
        cand = refine_all(grid)
        if best is None or cand[1] < best[1]:
            best = cand
    params, _ = _lm(best[0], p2, p3, K, with_f, iters=200)
    Kout = K.copy()
    if with_f:
        Kout[0, 0] = Kout[1, 1] = float(np.exp(params[6]))
    T = make_pose(axis_angle_to_matrix(params[:3]), params[3:6])
    uv, z = project_points(Kout, T, p3)
    err = np.linalg.norm(uv - p2, axis=1)
    if (z <= 0).any():
        notes.append("some points are behind the camera: check the clicks")
    return PnPSolution(T, Kout, err, with_f, notes)
