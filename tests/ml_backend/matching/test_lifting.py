import numpy as np

from ml_backend.matching.extractors import load_image_gray, sift
from ml_backend.matching.lifting import interpolate_depth, lift_keypoints
from pose_addon.core.cameras import Intrinsics, project_points
from pose_addon.core.sampling import look_at

from ..synthetic import make_faces, plane_of_point


def _plane_depth(intr, T, n_w, d_w):
    """Exact planar depth of the plane n.x = d seen from T, at every pixel centre."""
    v, u = np.mgrid[0:intr.height, 0:intr.width].astype(float)
    rays = np.stack([(u - intr.cx) / intr.fx, (v - intr.cy) / intr.fy, np.ones_like(u)], -1) @ T[:3, :3]
    c = -T[:3, :3].T @ T[:3, 3]
    return ((d_w - c @ n_w) / (rays @ n_w)).astype(np.float64)


def test_plane_interpolation_exact():
    intr = Intrinsics(160, 120, 150.0, 150.0, 79.5, 59.5)
    T = look_at(np.array([3.0, -12.0, 4.0]), np.array([0.0, 0.0, 1.0]))
    n = np.array([0.2, -1.0, 0.3]) / np.linalg.norm([0.2, -1.0, 0.3])
    depth = _plane_depth(intr, T, n, -1.0)
    assert (depth > 0).all()
    xy = np.random.default_rng(0).uniform([2, 2], [157, 117], (500, 2))
    pts, valid = lift_keypoints(xy, depth, intr, T)
    assert valid.all()
    assert np.abs(pts @ n + 1.0).max() < 1e-9  # on the plane
    uv, _ = project_points(intr.K, T, pts)
    assert np.abs(uv - xy).max() < 1e-9  # and on the pixel ray


def test_rejects_no_surface_edges_and_borders():
    depth = np.full((40, 40), 10.0)
    depth[:, 20:] = 15.0  # occlusion edge between columns 19 and 20
    depth[5, 5] = 0.0  # a hole
    xy = np.array([[10.0, 10.0], [19.4, 10.0], [20.4, 30.0], [5.2, 5.1], [6.0, 5.0], [0.2, 10.0], [30.0, 39.4],
                   [np.nan, 3.0]])
    z, valid = interpolate_depth(depth, xy)
    assert valid.tolist() == [True, False, False, False, False, False, False, False]
    assert z[0] == 10.0 and np.all(z[~valid] == 0)


def test_crease_points_lift_within_a_quarter_of_the_kink():
    """A convex corner: 1/Z = a + b |x - 20| (two planes). The corner column lifts (it is where corner detectors
    put their keypoints) with a depth error below max_curvature / 4; a strict tolerance rejects it."""
    a = 1.0 / 30.0
    kink = 0.008  # second difference of 1/Z at the crease relative to 1/Z
    b = kink * a / 2.0
    x = np.arange(41, dtype=np.float64)
    depth = np.tile(1.0 / (a + b * np.abs(x - 20.0)), (41, 1))
    xy = np.array([[20.0, 20.0], [20.3, 12.0], [10.0, 10.0]])
    z, valid = interpolate_depth(depth, xy)
    assert valid.all()
    truth = 1.0 / (a + b * np.abs(xy[:, 0] - 20.0))
    assert np.all(np.abs(z - truth) / truth <= kink / 4 + 1e-12)
    assert z[2] == truth[2]  # away from the crease: exact
    _, strict = interpolate_depth(depth, xy, {"max_curvature": 0.001})
    assert strict.tolist() == [False, False, True]
    _, sharp = interpolate_depth(depth, xy, {"max_curvature": kink / 2})  # a sharper kink than allowed
    assert sharp.tolist() == [False, False, True]


def test_lifted_reference_points_on_model(synth_dataset):
    faces = make_faces(0)
    fr = synth_dataset.split("reference")[0]
    f = sift.extract(load_image_gray(synth_dataset.path(fr.image)))
    depth = synth_dataset.read_depth(fr)
    pts, valid = lift_keypoints(f.keypoints, depth, fr.intrinsics, fr.cam_from_world, {"max_curvature": 0.001})
    assert valid.mean() > 0.5
    dist = np.array([plane_of_point(faces, p) for p in pts[valid]])
    assert np.max(dist) < 1e-3  # off creases: mm agreement with the analytic planes
    assert np.isnan(pts[~valid]).all()
    pts, loose = lift_keypoints(f.keypoints, depth, fr.intrinsics, fr.cam_from_world)  # default: creases too
    assert loose.sum() >= valid.sum()
    dist = np.array([plane_of_point(faces, p) for p in pts[loose]])
    assert np.quantile(dist, 0.9) < 1e-3 and dist.max() < 0.05  # crease points: centimetres at worst
