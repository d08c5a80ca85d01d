"""Camera pose from detected semantic keypoints: confidence filter, PnP (RANSAC or all-point), weighted refinement."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional

import cv2
import numpy as np

from pose_addon.core.cameras import Intrinsics, project_points
from pose_addon.core.poses import axis_angle_to_matrix, make_pose, matrix_to_axis_angle

from ..pnp import MIN_POINTS, solve_pnp

__all__ = ["KeypointPose", "solve_keypoint_pose", "default_conf"]

default_conf: dict = {
    "min_conf": 0.5,  # keypoint confidence to keep a detection
    "threshold_px": 8.0,  # RANSAC inlier threshold at the image's resolution
    "ransac_min": 6,  # RANSAC (poselib) from this many keypoints; fewer: all-point SQPnP without outlier rejection
    "weighted": True,  # refine the pose with residuals weighted by confidence
    "backend": "poselib",
}


@dataclass
class KeypointPose:
    """Result of :func:`solve_keypoint_pose`.

    Attributes:
        success: a pose from at least 4 keypoints.
        cam_from_world: ``[4, 4]`` OpenCV axes, or None.
        used: names of the keypoints the final pose rests on (inliers).
        n_detected: keypoints above the confidence.
        reproj_error_px: mean reprojection error of the used keypoints (inf on failure).
        solver: ``ransac:<backend>`` or ``sqpnp``; message: why it failed.
    """

    success: bool
    cam_from_world: Optional[np.ndarray]
    used: list = field(default_factory=list)
    n_detected: int = 0
    reproj_error_px: float = float("inf")
    solver: str = ""
    message: str = ""


def _weighted_refine(T: np.ndarray, p2: np.ndarray, p3: np.ndarray, K: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Levenberg-Marquardt on ``sqrt(w)``-weighted reprojection residuals (Cauchy-robust, 6 DoF)."""
    from scipy.optimize import least_squares

    sw = np.sqrt(np.clip(w, 1e-3, None))[:, None]

    def resid(x):
        uv, z = project_points(K, make_pose(axis_angle_to_matrix(x[:3]), x[3:]), p3)
        r = (uv - p2) * sw
        return np.where(np.isfinite(r), r, 1e3).ravel()

    x0 = np.concatenate([matrix_to_axis_angle(T[:3, :3]), T[:3, 3]])
    sol = least_squares(resid, x0, loss="cauchy", f_scale=3.0, max_nfev=50)
    return make_pose(axis_angle_to_matrix(sol.x[:3]), sol.x[3:])


def solve_keypoint_pose(uv: np.ndarray, conf: np.ndarray, points3d: np.ndarray, intrinsics: Intrinsics,
                        names: Optional[Sequence[str]] = None, cfg: Optional[dict] = None) -> KeypointPose:
    """Pose of a camera that sees keypoints ``points3d`` at ``uv``.

    Args:
        uv: ``[K, 2]`` detected keypoints, OpenCV pixels of the image described by ``intrinsics``.
        conf: ``[K]`` confidences in [0, 1] (ones for ground truth).
        points3d: ``[K, 3]`` the keypoints in the world (metres).
        names: ``[K]`` keypoint names for the report (default ``"0"``, ``"1"``, ...).
        cfg: overrides of :data:`default_conf`.

    Returns:
        :class:`KeypointPose`; failure (never an exception) with a clear message when fewer than 4 keypoints are
        above the confidence or PnP finds no pose.
    """
    c = dict(default_conf, **(cfg or {}))
    uv = np.asarray(uv, np.float64).reshape(-1, 2)
    conf = np.asarray(conf, np.float64).reshape(-1)
    p3 = np.asarray(points3d, np.float64).reshape(-1, 3)
    names = list(names) if names is not None else [str(i) for i in range(len(p3))]
    keep = np.nonzero((conf >= c["min_conf"]) & np.isfinite(uv).all(1))[0]
    n = len(keep)
    if n < MIN_POINTS:
        return KeypointPose(False, None, [], n, message=f"only {n} keypoints above confidence {c['min_conf']:g}; "
                                                        f"PnP needs at least {MIN_POINTS}")
    K = intrinsics.K
    if n >= c["ransac_min"]:
        r = solve_pnp(uv[keep], p3[keep], intrinsics, c["threshold_px"], c["backend"])
        if not r.success:
            return KeypointPose(False, None, [], n, message=r.message)
        T, inl, solver = r.cam_from_world, keep[r.inliers], f"ransac:{c['backend']}"
    else:
        ok, rvec, tvec = cv2.solvePnP(p3[keep], uv[keep], K, None, flags=cv2.SOLVEPNP_SQPNP)
        if not ok:
            return KeypointPose(False, None, [], n, message="SQPnP found no pose")
        rvec, tvec = cv2.solvePnPRefineLM(p3[keep], uv[keep], K, None, rvec, tvec)
        T, inl, solver = make_pose(axis_angle_to_matrix(rvec.reshape(3)), tvec.reshape(3)), keep, "sqpnp"
    if c["weighted"] and len(inl) >= MIN_POINTS:
        T = _weighted_refine(T, uv[inl], p3[inl], K, conf[inl])
    proj, z = project_points(K, T, p3[inl])
    if (z <= 0).any():
        return KeypointPose(False, None, [], n, solver=solver, message="PnP pose puts keypoints behind the camera")
    err = float(np.mean(np.linalg.norm(proj - uv[inl], axis=1)))
    return KeypointPose(True, T, [names[i] for i in inl], n, err, solver)
