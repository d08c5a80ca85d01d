"""Keypoint view counts: depth test against a view's planar depth, an occlusion callback, the frustum."""
import numpy as np
import pytest

from pose_addon.core.cameras import Intrinsics, camera_center
from pose_addon.core.keypoints import (
    MIN_VIEW_SHARE,
    candidate_pools,
    choose_keypoints,
    min_views,
    suggest_keypoints,
    view_counts,
    visible_in_view,
)
from pose_addon.core.sampling import SamplerConfig, look_at, sample_cameras

W, H = 96, 72
INTR = Intrinsics(W, H, 80.0, 80.0, W / 2 - 0.5, H / 2 - 0.5)
LO, HI = np.array([-4.0, -3.0, 0.0]), np.array([4.0, 3.0, 6.0])
CORNERS = np.array([[x, y, z] for x in (LO[0], HI[0]) for y in (LO[1], HI[1]) for z in (LO[2], HI[2])])


def box_depth(cam_from_world: np.ndarray, intr: Intrinsics = INTR) -> np.ndarray:
    """Planar depth [H, W] of the box LO..HI seen from a camera (ray-box slabs per pixel), 0 = no surface."""
    u, v = np.meshgrid(np.arange(intr.width, dtype=float), np.arange(intr.height, dtype=float))
    d_cam = np.stack([(u - intr.cx) / intr.fx, (v - intr.cy) / intr.fy, np.ones_like(u)], -1)  # z = 1
    R = cam_from_world[:3, :3]
    d = d_cam @ R  # world directions (R.T @ d per pixel), scaled so that the planar depth equals t
    eye = camera_center(cam_from_world)
    with np.errstate(divide="ignore", invalid="ignore"):
        t0, t1 = (LO - eye) / d, (HI - eye) / d
    near = np.nanmax(np.minimum(t0, t1), -1)
    far = np.nanmin(np.maximum(t0, t1), -1)
    hit = (far >= near) & (near > 0)
    return np.where(hit, near, 0.0).astype(np.float32)


def facing_cos(corner: np.ndarray, eye: np.ndarray) -> float:
    """The largest cosine between one of the corner's three face normals and the direction to the eye: a corner
    of the convex box is seen when it is positive (near 0 the view is grazing: the corner lies on the outline)."""
    to_eye = (eye - corner) / np.linalg.norm(eye - corner)
    return max(float(to_eye[a]) if corner[a] == HI[a] else -float(to_eye[a]) for a in range(3))


def facing(corner: np.ndarray, eye: np.ndarray) -> bool:
    return facing_cos(corner, eye) > 0


def cameras(n: int = 24) -> np.ndarray:
    cfg = SamplerConfig(n=n, distance=(18.0, 24.0), elevation_deg=(-20.0, 40.0), seed=5, min_coverage=0.0)
    return sample_cameras(cfg, (LO + HI) / 2, INTR)


def test_depth_test_sees_exactly_the_corners_of_faces_turned_to_the_camera():
    checked = 0
    for T in cameras():
        eye = camera_center(T)
        seen = visible_in_view(CORNERS, T, INTR, box_depth(T), tol_abs=0.05)
        cos = np.array([facing_cos(c, eye) for c in CORNERS])
        clear = np.abs(cos) > 0.1  # grazing views put a hidden corner on the outline: either answer is right
        np.testing.assert_array_equal(seen[clear], cos[clear] > 0)
        checked += clear.sum()
    assert checked > 0.8 * len(cameras()) * len(CORNERS)


def test_counts_over_views_and_the_occlusion_callback():
    Ts = cameras()
    counts, n = view_counts(CORNERS, ((T, INTR, box_depth(T)) for T in Ts), tol_abs=0.05)
    assert n == len(Ts)
    per_view = [visible_in_view(CORNERS, T, INTR, box_depth(T), tol_abs=0.05) for T in Ts]
    np.testing.assert_array_equal(counts, np.sum(per_view, axis=0))
    truth = np.array([sum(facing(c, camera_center(T)) for T in Ts) for c in CORNERS])
    assert np.abs(counts - truth).max() <= 3  # only grazing views differ
    assert 0 < truth.min() and truth.max() < n  # a box seen from around and below: no corner seen by all
    # the same answer from an occlusion test instead of depth (a view without depth)
    calls = []

    def occluded(eye, pts):
        calls.append(len(pts))
        return ~np.array([facing(c, eye) for c in pts])

    counts2, _ = view_counts(CORNERS, ((T, INTR, None) for T in Ts), occluded=occluded)
    np.testing.assert_array_equal(counts2, truth)
    assert len(calls) == len(Ts)
    # neither: in the image and in front counts, so every corner of a framed box is counted in every view
    counts3, _ = view_counts(CORNERS, ((T, INTR, None) for T in Ts))
    np.testing.assert_array_equal(counts3, np.full(len(CORNERS), len(Ts)))


def test_outside_the_image_or_behind_the_camera_is_not_seen():
    T = look_at(np.array([0.0, -30.0, 3.0]), np.array([0.0, 0.0, 3.0]))
    pts = np.array([[0.0, 0.0, 3.0],     # centre of the image
                    [0.0, -60.0, 3.0],   # behind the camera, on the optical axis
                    [200.0, 0.0, 3.0],   # far to the right, outside the image
                    [0.0, -30.0, 3.0]])  # at the camera centre (z = 0)
    np.testing.assert_array_equal(visible_in_view(pts, T, INTR), [True, False, False, False])
    with pytest.raises(ValueError, match="does not match"):
        visible_in_view(pts, T, INTR, np.zeros((H + 1, W), np.float32))


def test_min_views_is_the_learnable_share():
    assert MIN_VIEW_SHARE == 0.15
    assert min_views(100) == 15
    assert min_views(7) == 2
    assert min_views(20) == 3
    assert min_views(0) == 1


def box_mesh():
    """The box LO..HI as 12 triangles (outward normals)."""
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    return CORNERS.copy(), np.array([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))])


def test_suggestion_keeps_to_corners_the_views_see():
    V, F = box_mesh()
    pools = candidate_pools(V, F)
    assert len(pools[0]) == 8  # every box vertex is a corner of three sharp edges
    np.testing.assert_array_equal(suggest_keypoints(V, F, 4), choose_keypoints(pools, 4))
    # cameras facing the +x face, between the box's floor and top: the depth test sees its four corners only
    T_side = [look_at(np.array([30.0, 0.0, z]), (LO + HI) / 2) for z in (1.0, 2.0, 3.0, 4.0, 5.0)]
    intr = INTR.scaled(4.0)  # the far corners project a few pixels inside the outline: a finer depth map

    def seen_by(p):
        return view_counts(p, ((T, intr, box_depth(T, intr)) for T in T_side), tol_abs=0.05)[0]

    pts = suggest_keypoints(V, F, 4, seen_by=seen_by, min_views=min_views(len(T_side)))
    assert len(pts) == 4 and (pts[:, 0] == HI[0]).all()
    # more keypoints than seen corners: the views cannot be honoured, all corners are candidates again
    pts = suggest_keypoints(V, F, 6, seen_by=seen_by, min_views=min_views(len(T_side)))
    assert len(pts) == 6 and (pts[:, 0] == LO[0]).any()
    # large pools are thinned before counting
    calls = []
    choose_keypoints([np.random.default_rng(0).normal(size=(5000, 3))], 3,
                     seen_by=lambda p: calls.append(len(p)) or np.ones(len(p)), max_counted=500)
    assert calls == [500]
