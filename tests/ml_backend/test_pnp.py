import numpy as np
import pytest

from ml_backend.pnp import BACKENDS, solve_pnp
from pose_addon.core.cameras import Intrinsics, camera_center, project_points
from pose_addon.core.poses import rotation_angle_deg
from pose_addon.core.sampling import look_at

INTR = Intrinsics(640, 480, 533.3, 533.3, 319.5, 239.5)


def _problem(n=200, outlier_ratio=0.5, seed=0):
    rng = np.random.default_rng(seed)
    T = look_at(np.array([20.0, -25.0, 8.0]), np.array([0.0, 0.0, 3.0]))
    X = rng.uniform(-6, 6, (n, 3)) + [0, 0, 3]
    uv, _ = project_points(INTR.K, T, X)
    k = int(n * outlier_ratio)
    uv[:k] = rng.uniform(0, [640, 480], (k, 2))
    return T, uv, X, k


@pytest.mark.parametrize("backend", BACKENDS)
def test_outliers(backend):
    T, uv, X, k = _problem()
    r = solve_pnp(uv, X, INTR, 2.0, backend)
    assert r.success, r.message
    assert np.linalg.norm(camera_center(r.cam_from_world) - camera_center(T)) < 1e-3
    assert rotation_angle_deg(r.cam_from_world[:3, :3], T[:3, :3]) < 1e-3
    assert r.inliers[k:].all() and r.n_inliers <= len(uv) - k + 3  # a random outlier may fall within 2 px
    assert r.reproj_error_px < 0.5


@pytest.mark.parametrize("backend", BACKENDS)
def test_too_few_points(backend):
    T, uv, X, _ = _problem(n=3, outlier_ratio=0.0)
    r = solve_pnp(uv, X, INTR, 2.0, backend)
    assert not r.success and "at least 4" in r.message and r.cam_from_world is None
    r = solve_pnp(np.zeros((0, 2)), np.zeros((0, 3)), INTR, backend=backend)
    assert not r.success and r.inliers.shape == (0,)


def test_nan_points_ignored_and_bad_args():
    T, uv, X, _ = _problem(n=50, outlier_ratio=0.0)
    X[:5] = np.nan
    r = solve_pnp(uv, X, INTR, 2.0)
    assert r.success and not r.inliers[:5].any() and r.n_inliers == 45
    with pytest.raises(ValueError, match="unknown PnP backend"):
        solve_pnp(uv, X, INTR, backend="magic")
    with pytest.raises(ValueError, match="2D points"):
        solve_pnp(uv[:10], X, INTR)


def test_all_outliers_fails_cleanly():
    rng = np.random.default_rng(3)
    r = solve_pnp(rng.uniform(0, 640, (30, 2)), rng.uniform(-5, 5, (30, 3)) + [0, 0, 30], INTR, 1.0)
    assert r.success is False or r.n_inliers < 10
