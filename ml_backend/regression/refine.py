"""Render-and-compare refinement: render the building at the current pose (worker-side, with depth), match the
query's SIFT features against the render's, lift the render's keypoints through its depth, solve PnP; repeat
until the camera moves less than ``min_step_m`` / ``min_step_deg`` or ``max_iterations`` is reached.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from pose_addon.core.cameras import Intrinsics, camera_center
from pose_addon.core.poses import rotation_angle_deg

from .. import matching
from ..features import sift
from ..lifting import lift_keypoints
from ..pnp import solve_pnp

__all__ = ["default_conf", "RefineResult", "refine_pose"]

default_conf: dict[str, Any] = {
    "max_iterations": 4,
    "min_step_m": 0.01,
    "min_step_deg": 0.05,
    "threshold_px": 2.5,  # at 640 px width, scaled with the image
    "min_inliers": 20,
    "matching": {"ratio": 0.85},
    "sift": {},
    "pnp_backend": "poselib",
    "lifting": {"max_curvature": 0.01},  # rendered depth is exact at pixel centres but rasterized edges are hard
}


@dataclass
class RefineResult:
    """``cam_from_world [4, 4]`` (OpenCV axes): the refined pose, or the initial one when no step succeeded."""

    cam_from_world: np.ndarray
    success: bool
    iterations: int
    n_inliers: int
    history: list = field(default_factory=list)
    message: str = ""


def refine_pose(query_rgb: np.ndarray, intrinsics: Intrinsics, cam_from_world_init: np.ndarray, renderer,
                conf: Optional[dict] = None, query_features: Optional[sift.Features] = None) -> RefineResult:
    """Refine an estimated pose of a query image against renders of the building.

    Args:
        query_rgb: ``[H, W, 3]`` uint8 (or grey ``[H, W]``) undistorted query image.
        intrinsics: query camera (OpenCV convention, no distortion).
        cam_from_world_init: ``[4, 4]`` initial estimate (OpenCV axes).
        renderer: a :class:`ml_backend.render.SceneRenderer` of the building.
    """
    c = {**default_conf, **(conf or {})}
    qf = query_features or sift.extract(query_rgb, c["sift"])
    T = np.asarray(cam_from_world_init, np.float64)
    thr = float(c["threshold_px"]) * max(intrinsics.width, intrinsics.height) / 640.0
    hist, ok_any, n_inl, msg = [], False, 0, ""
    for it in range(int(c["max_iterations"])):
        rgb, depth = renderer.render(T, intrinsics)
        rf = sift.extract(rgb, c["sift"])
        m = matching.match_descriptors(qf.descriptors, rf.descriptors, c["matching"])
        if len(m) < 4:
            msg = f"iteration {it}: {len(m)} matches"
            break
        p3, valid = lift_keypoints(rf.keypoints[m[:, 1]], depth, intrinsics, T, c["lifting"])
        p2 = qf.keypoints[m[:, 0]][valid]
        res = solve_pnp(p2, p3[valid], intrinsics, thr, c["pnp_backend"])
        if not res.success or res.n_inliers < int(c["min_inliers"]):
            msg = f"iteration {it}: {res.n_inliers} inliers ({res.message})"
            break
        dt = float(np.linalg.norm(camera_center(res.cam_from_world) - camera_center(T)))
        dr = rotation_angle_deg(res.cam_from_world[:3, :3], T[:3, :3])
        T, ok_any, n_inl = res.cam_from_world, True, res.n_inliers
        hist.append({"iteration": it, "n_matches": int(len(m)), "n_inliers": int(res.n_inliers), "step_m": dt,
                     "step_deg": dr})
        if dt < c["min_step_m"] and dr < c["min_step_deg"]:
            break
    return RefineResult(T, ok_any, len(hist), n_inl, hist, msg)
