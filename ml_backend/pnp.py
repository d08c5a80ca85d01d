"""Robust absolute pose (PnP) behind one interface: poselib (default), pycolmap or OpenCV (USAC MAGSAC).

All backends take 2D points in OpenCV pixel convention and the matching pinhole intrinsics; the pinhole model
itself has no pixel-centre convention, so COLMAP's +0.5 never enters as long as points and ``cx, cy`` agree.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import cv2
import numpy as np

from pose_addon.core.cameras import Intrinsics, project_points
from pose_addon.core.poses import axis_angle_to_matrix, make_pose

__all__ = ["PnPResult", "solve_pnp", "solve_pnp_focal", "reprojection_errors", "BACKENDS", "MIN_POINTS"]

BACKENDS = ("poselib", "pycolmap", "opencv")
MIN_POINTS = 4


@dataclass
class PnPResult:
    """Outcome of :func:`solve_pnp`.

    Attributes:
        success: a pose was found with at least ``MIN_POINTS`` inliers.
        cam_from_world: ``[4, 4]`` (OpenCV axes) or None.
        inliers: ``[N]`` bool mask over the input correspondences.
        n_inliers: number of inliers.
        reproj_error_px: mean reprojection error of the inliers (pixels), inf when unsuccessful.
        message: why it failed, or the backend used.
    """

    success: bool
    cam_from_world: Optional[np.ndarray]
    inliers: np.ndarray
    n_inliers: int
    reproj_error_px: float
    message: str = ""
    info: dict = field(default_factory=dict)


def reprojection_errors(points2d: np.ndarray, points3d: np.ndarray, K: np.ndarray,
                        cam_from_world: np.ndarray) -> np.ndarray:
    """Pixel distances ``[N]`` between ``points2d [N, 2]`` and projections of ``points3d [N, 3]`` (inf behind)."""
    uv, z = project_points(K, cam_from_world, points3d)
    err = np.linalg.norm(uv - points2d, axis=1)
    return np.where(z > 0, err, np.inf)


def _fail(n: int, message: str) -> PnPResult:
    return PnPResult(False, None, np.zeros(n, bool), 0, float("inf"), message)


def _poselib(p2, p3, intr: Intrinsics, thr: float, max_iter: int, seed: int):
    import poselib

    cam = {"model": "PINHOLE", "width": intr.width, "height": intr.height,
           "params": [intr.fx, intr.fy, intr.cx, intr.cy]}
    ransac = {"max_reproj_error": float(thr), "max_iterations": int(max_iter), "min_iterations": 100,
              "success_prob": 0.9999, "seed": int(seed)}
    pose, info = poselib.estimate_absolute_pose(p2, p3, cam, ransac, {"loss_scale": float(thr) / 2})
    if info.get("num_inliers", 0) == 0:
        return None, None
    return make_pose(pose.R, pose.t), np.asarray(info["inliers"], bool)


def _pycolmap(p2, p3, intr: Intrinsics, thr: float, max_iter: int, seed: int):
    import pycolmap

    cam = pycolmap.Camera(model="PINHOLE", width=intr.width, height=intr.height,
                          params=[intr.fx, intr.fy, intr.cx, intr.cy])
    opts = pycolmap.AbsolutePoseEstimationOptions()
    opts.ransac.max_error = float(thr)
    opts.ransac.max_num_trials = int(max_iter)
    opts.ransac.random_seed = int(seed)
    out = pycolmap.estimate_and_refine_absolute_pose(p2, p3, cam, opts)
    if out is None:
        return None, None
    T = np.eye(4)
    T[:3, :] = out["cam_from_world"].matrix()
    return T, np.asarray(out["inlier_mask"], bool)


def _opencv(p2, p3, intr: Intrinsics, thr: float, max_iter: int, seed: int):
    cv2.setRNGSeed(int(seed))
    dist = np.asarray(intr.dist, np.float64) if intr.dist else None
    ok, rvec, tvec, inl = cv2.solvePnPRansac(p3, p2, intr.K, dist, iterationsCount=int(max_iter),
                                             reprojectionError=float(thr), confidence=0.9999,
                                             flags=cv2.USAC_MAGSAC)
    if not ok or inl is None or len(inl) < MIN_POINTS:
        return None, None
    mask = np.zeros(len(p2), bool)
    mask[np.asarray(inl).reshape(-1)] = True
    # polish on the inliers (Levenberg-Marquardt from the RANSAC estimate)
    rvec, tvec = cv2.solvePnPRefineLM(p3[mask], p2[mask], intr.K, dist, rvec, tvec)
    return make_pose(axis_angle_to_matrix(rvec.reshape(3)), tvec.reshape(3)), mask


def solve_pnp(points2d: np.ndarray, points3d: np.ndarray, intrinsics: Intrinsics, threshold_px: float = 3.0,
              backend: str = "poselib", max_iterations: int = 10000, seed: int = 0) -> PnPResult:
    """Robust PnP: ``cam_from_world`` from 2D-3D correspondences.

    Args:
        points2d: ``[N, 2]`` pixels, OpenCV convention.
        points3d: ``[N, 3]`` world points (metres).
        intrinsics: query camera; distortion is handled only by the ``opencv`` backend.
        threshold_px: RANSAC inlier threshold in pixels.
        backend: ``poselib`` | ``pycolmap`` | ``opencv``.

    Returns:
        :class:`PnPResult`; never raises on too few or degenerate correspondences (``success`` is False).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown PnP backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    p2 = np.ascontiguousarray(np.asarray(points2d, np.float64).reshape(-1, 2))
    p3 = np.ascontiguousarray(np.asarray(points3d, np.float64).reshape(-1, 3))
    if len(p2) != len(p3):
        raise ValueError(f"got {len(p2)} 2D points but {len(p3)} 3D points")
    n = len(p2)
    finite = np.isfinite(p2).all(1) & np.isfinite(p3).all(1)
    if finite.sum() < MIN_POINTS:
        return _fail(n, f"PnP needs at least {MIN_POINTS} correspondences, got {int(finite.sum())}")
    if backend != "opencv" and intrinsics.dist and any(abs(d) > 0 for d in intrinsics.dist):
        return _fail(n, f"backend {backend} takes undistorted points; undistort first or use backend='opencv'")
    solver = {"poselib": _poselib, "pycolmap": _pycolmap, "opencv": _opencv}[backend]
    try:
        T, mask_f = solver(p2[finite], p3[finite], intrinsics, threshold_px, max_iterations, seed)
    except (RuntimeError, cv2.error, ValueError) as e:
        return _fail(n, f"{backend} PnP failed: {e}")
    if T is None:
        return _fail(n, f"{backend} PnP found no pose")
    mask = np.zeros(n, bool)
    mask[np.nonzero(finite)[0]] = mask_f
    k = int(mask.sum())
    if k < MIN_POINTS:
        return _fail(n, f"{backend} PnP: only {k} inliers")
    err = reprojection_errors(p2[mask], p3[mask], intrinsics.K, T)
    return PnPResult(True, T, mask, k, float(np.mean(err)), backend)


def solve_pnp_focal(points2d: np.ndarray, points3d: np.ndarray, width: int, height: int, cx: float, cy: float,
                    f_guess: float, threshold_px: float = 3.0, max_iterations: int = 10000,
                    seed: int = 0) -> tuple[PnPResult, float]:
    """Robust PnP with an unknown focal length (square pixels, principal point ``cx, cy`` known): COLMAP's P4Pf
    LO-RANSAC followed by a refinement of pose and focal length on the inliers (pycolmap).

    Args:
        points2d: ``[N, 2]`` undistorted pixels (OpenCV convention). points3d: ``[N, 3]`` world points.
        f_guess: starting focal length in pixels (only seeds the refinement).

    Returns:
        ``(result, focal_px)``; ``focal_px`` is NaN when no pose was found.
    """
    import pycolmap

    p2 = np.ascontiguousarray(np.asarray(points2d, np.float64).reshape(-1, 2))
    p3 = np.ascontiguousarray(np.asarray(points3d, np.float64).reshape(-1, 3))
    n = len(p2)
    if n < MIN_POINTS:
        return _fail(n, f"PnP needs at least {MIN_POINTS} correspondences, got {n}"), float("nan")
    cam = pycolmap.Camera(model="SIMPLE_PINHOLE", width=int(width), height=int(height),
                          params=[float(f_guess), float(cx), float(cy)])
    est = pycolmap.AbsolutePoseEstimationOptions()
    est.estimate_focal_length = True
    est.ransac.max_error = float(threshold_px)
    est.ransac.max_num_trials = int(max_iterations)
    est.ransac.random_seed = int(seed)
    ref = pycolmap.AbsolutePoseRefinementOptions()
    ref.refine_focal_length = True
    try:
        out = pycolmap.estimate_and_refine_absolute_pose(p2, p3, cam, est, ref)
    except (RuntimeError, ValueError) as e:
        return _fail(n, f"focal-length PnP failed: {e}"), float("nan")
    if out is None:
        return _fail(n, "focal-length PnP found no pose"), float("nan")
    f = float(cam.params[0])
    T = np.eye(4)
    T[:3, :] = out["cam_from_world"].matrix()
    mask = np.asarray(out["inlier_mask"], bool)
    for _ in range(2):  # re-select the inliers at the refined focal length and refine pose and focal again
        K = np.array([[f, 0, cx], [0, f, cy], [0, 0, 1.0]])
        m2 = reprojection_errors(p2, p3, K, T) < float(threshold_px)
        if m2.sum() < max(MIN_POINTS, mask.sum()):
            break
        ref2 = pycolmap.refine_absolute_pose(out["cam_from_world"], p2, p3, m2, cam, ref)
        if ref2 is None:
            break
        out = {**out, "cam_from_world": ref2["cam_from_world"]}
        f, mask = float(cam.params[0]), m2
        T[:3, :] = out["cam_from_world"].matrix()
    k = int(mask.sum())
    if k < MIN_POINTS or not np.isfinite(f) or f <= 0:
        return _fail(n, f"focal-length PnP: {k} inliers, focal {f:.1f} px"), float("nan")
    K = np.array([[f, 0, cx], [0, f, cy], [0, 0, 1.0]])
    err = reprojection_errors(p2[mask], p3[mask], K, T)
    return PnPResult(True, T, mask, k, float(np.mean(err)), "pycolmap-p4pf"), f
