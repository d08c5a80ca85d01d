"""Lift 2D keypoints to 3D world points through a rendered planar depth map.

Depth maps follow :mod:`pose_addon.core.dataset`: ``[H, W]`` planar Z (along the optical axis) in metres at
pixel centres, OpenCV convention (pixel ``[r, c]`` is centred at ``(x, y) = (c, r)``), 0 = no surface.

Interpolation is bilinear in *inverse* depth over the 2x2 pixel centres around ``(x, y)``: on a plane, 1/Z is an
affine function of the pixel coordinates, so this is exact on planar surfaces. A lookup is rejected when any
pixel of the 3x3 window around the nearest pixel has no surface, when depths in that window differ by more than
``max_depth_ratio``, or when the inverse depth bends (largest second difference along any row or column of the
window, relative to its value) by more than ``max_curvature`` -- occlusion edges and creases, where interpolating
would mix surfaces.
On a plane 1/Z is affine, so its second differences vanish however oblique the plane is. At a crease (a wall
corner, a window frame: a kink, not a jump) interpolating across the two faces errs by at most about a quarter of
the kink, i.e. ``max_curvature / 4`` of the depth. The default 0.02 (at most 0.5 %, typically a few centimetres at
30 m) keeps crease points: on flat-coloured models corners and frames are nearly the only features, and a
tolerance of 0.001 dropped 95 % of ALIKED's matches on a Kenney house (5 of 88 lifted against 83 of 88).
It needs depth sampled at pixel centres (Cycles with a tiny ``filter_width``); loosen it for jittered samples.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from pose_addon.core.cameras import Intrinsics
from pose_addon.core.poses import pose_inverse, transform_points

__all__ = ["default_conf", "interpolate_depth", "backproject", "lift_keypoints"]

default_conf: dict[str, Any] = {
    "max_depth_ratio": 1.05,  # max/min depth over the 3x3 window
    "max_curvature": 0.02,  # largest |second difference of 1/Z| in the window / (1/Z): creases up to this kink
}


def interpolate_depth(depth: np.ndarray, xy: np.ndarray, conf: Optional[dict] = None) -> tuple[np.ndarray, np.ndarray]:
    """Planar depth at continuous pixel positions.

    Args:
        depth: ``[H, W]`` planar Z in metres, 0 (or non-finite) = no surface.
        xy: ``[N, 2]`` positions (x, y), OpenCV pixel convention.
        conf: overrides of :data:`default_conf`.

    Returns:
        ``z [N]`` (metres, 0 where invalid) and ``valid [N]`` bool.
    """
    c = {**default_conf, **(conf or {})}
    d = np.asarray(depth, dtype=np.float64)
    d = np.where(np.isfinite(d) & (d > 0) & (d < 1e9), d, 0.0)
    h, w = d.shape
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    n = len(xy)
    z = np.zeros(n)
    # nearest pixel; the 3x3 window around it must lie inside the image (it contains the 2x2 bilinear support)
    finite = np.isfinite(xy).all(1)
    xy = np.where(finite[:, None], xy, -10.0)
    xn = np.rint(xy[:, 0]).astype(np.int64)
    yn = np.rint(xy[:, 1]).astype(np.int64)
    valid = finite & (xn >= 1) & (xn <= w - 2) & (yn >= 1) & (yn <= h - 2)
    idx = np.nonzero(valid)[0]
    if len(idx) == 0:
        return z, valid
    xn, yn = xn[idx], yn[idx]
    win = np.stack([d[yn + dy, xn + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=1)  # [M, 9]
    ok = (win > 0).all(1)
    safe = np.where(win > 0, win, 1.0)
    ok &= safe.max(1) <= c["max_depth_ratio"] * safe.min(1)
    inv = 1.0 / safe
    centre = inv[:, 4]
    g = inv.reshape(-1, 3, 3)  # [M, row, col]
    dxx = np.abs(g[:, :, 0] + g[:, :, 2] - 2 * g[:, :, 1]).max(1)  # every row of the window
    dyy = np.abs(g[:, 0, :] + g[:, 2, :] - 2 * g[:, 1, :]).max(1)  # every column
    ok &= np.maximum(dxx, dyy) <= c["max_curvature"] * centre
    # bilinear interpolation of 1/Z over the 2x2 support
    x, y = xy[idx, 0], xy[idx, 1]
    x0 = np.clip(np.floor(x).astype(np.int64), 0, w - 2)
    y0 = np.clip(np.floor(y).astype(np.int64), 0, h - 2)
    fx, fy = x - x0, y - y0
    q = [d[y0, x0], d[y0, x0 + 1], d[y0 + 1, x0], d[y0 + 1, x0 + 1]]
    ok &= np.all([qq > 0 for qq in q], axis=0)
    q = [1.0 / np.where(qq > 0, qq, 1.0) for qq in q]
    inv_z = (q[0] * (1 - fx) * (1 - fy) + q[1] * fx * (1 - fy) + q[2] * (1 - fx) * fy + q[3] * fx * fy)
    z[idx] = np.where(ok, 1.0 / inv_z, 0.0)
    valid[idx] = ok
    return z, valid


def backproject(xy: np.ndarray, z: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """Pixels ``[N, 2]`` (OpenCV convention) with planar depth ``[N]`` -> camera points ``[N, 3]`` (OpenCV axes)."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    z = np.asarray(z, dtype=np.float64).reshape(-1)
    x = (xy[:, 0] - intrinsics.cx) / intrinsics.fx * z
    y = (xy[:, 1] - intrinsics.cy) / intrinsics.fy * z
    return np.stack([x, y, z], axis=1)


def lift_keypoints(xy: np.ndarray, depth: np.ndarray, intrinsics: Intrinsics, cam_from_world: np.ndarray,
                   conf: Optional[dict] = None) -> tuple[np.ndarray, np.ndarray]:
    """World points of keypoints seen by a rendered view.

    Args:
        xy: ``[N, 2]`` keypoints, OpenCV pixel convention.
        depth: ``[H, W]`` planar depth of the view (metres, 0 = no surface).
        intrinsics: the view's intrinsics (no distortion: rendered images are pinhole).
        cam_from_world: ``[4, 4]`` pose, OpenCV camera axes.

    Returns:
        ``points_world [N, 3]`` (NaN where invalid) and ``valid [N]`` bool.
    """
    if intrinsics.dist and any(abs(v) > 0 for v in intrinsics.dist):
        raise ValueError("lifting expects undistorted (rendered pinhole) views")
    z, valid = interpolate_depth(depth, xy, conf)
    p_cam = backproject(xy, z, intrinsics)
    p_world = transform_points(pose_inverse(cam_from_world), p_cam)
    p_world[~valid] = np.nan
    return p_world, valid
