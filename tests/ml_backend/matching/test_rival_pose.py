"""A photo that fits two different poses (a symmetric building) is ambiguous, not localized."""
import numpy as np

from ml_backend.matching.localize import rival_pose
from ml_backend.methods.interface import MatchingOptions, accept
from pose_addon.core.cameras import Intrinsics, project_points
from pose_addon.core.poses import axis_angle_to_matrix, make_pose

INTR = Intrinsics(640, 480, 500.0, 500.0, 319.5, 239.5)


def _view(T: np.ndarray, pts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    uv, _ = project_points(INTR.K, T, pts)
    return uv + rng.normal(0, 0.3, uv.shape)


def test_two_poses_give_a_rival_one_pose_none():
    rng = np.random.default_rng(0)
    T1 = make_pose(axis_angle_to_matrix(np.array([0.1, -0.2, 0.05])), np.array([0.3, -0.2, 30.0]))
    T2 = make_pose(axis_angle_to_matrix(np.array([0.1, 2.9, 0.05])), np.array([-0.5, 0.4, 31.0]))  # other side
    a = rng.uniform(-6, 6, (80, 3))
    b = rng.uniform(-6, 6, (50, 3))
    p2 = np.concatenate([_view(T1, a, rng), _view(T2, b, rng)])
    p3 = np.concatenate([a, b])
    r = rival_pose(p2, p3, INTR, T1, 2.5, "poselib")
    assert r is not None and 45 <= r.n_inliers <= 50 and r.rotation_deg > 90
    # leftovers of the same pose (plus noise) are no rival
    c = rng.uniform(-6, 6, (40, 3))
    lone = np.concatenate([_view(T1, a, rng), _view(T1, c, rng) + rng.normal(0, 1.6, (40, 2))])
    assert rival_pose(lone, np.concatenate([a, c]), INTR, T1, 2.5, "poselib") is None


def test_a_strong_rival_makes_the_photo_ambiguous():
    class R:  # the fields accept reads
        def __init__(self, n):
            self.n_inliers, self.rotation_deg, self.centre_m = n, 180.0, 36.0

    opts = MatchingOptions()
    assert accept(100, 300, 1.0, INTR, opts, False, 1.0, R(30))[0] == ""
    reason = accept(100, 300, 1.0, INTR, opts, False, 1.0, R(60))[0]
    assert reason.startswith("ambiguous") and "60" in reason
    assert accept(100, 300, 1.0, INTR, MatchingOptions(ambiguity_ratio=0.0), False, 1.0, R(60))[0] == ""
