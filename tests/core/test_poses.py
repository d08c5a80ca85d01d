"""Pose math: quaternion order, conversions round-trip, SE(3) algebra."""
import numpy as np
import pytest

from pose_addon.core import poses as P

rng = np.random.default_rng(0)


def random_rotations(n: int) -> np.ndarray:
    return P.quat_to_matrix(P.quat_normalize(rng.normal(size=(n, 4))))


def test_quaternion_is_scalar_first():
    # 90 deg about +Z: (w, x, y, z) = (cos 45, 0, 0, sin 45) maps +X to +Y
    q = np.array([np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)])
    np.testing.assert_allclose(P.quat_to_matrix(q) @ [1, 0, 0], [0, 1, 0], atol=1e-12)


def test_matrix_quat_round_trip_including_near_pi():
    Rs = np.concatenate([random_rotations(200), P.axis_angle_to_matrix(np.array([[np.pi - 1e-9, 0, 0],
                                                                                 [0, np.pi, 0],
                                                                                 [0, 0, 0]]))])
    for R in Rs:
        np.testing.assert_allclose(P.quat_to_matrix(P.matrix_to_quat(R)), R, atol=1e-9)


def test_quat_multiply_matches_matrix_product():
    q1, q2 = P.quat_normalize(rng.normal(size=4)), P.quat_normalize(rng.normal(size=4))
    np.testing.assert_allclose(P.quat_to_matrix(P.quat_multiply(q1, q2)),
                               P.quat_to_matrix(q1) @ P.quat_to_matrix(q2), atol=1e-12)
    np.testing.assert_allclose(P.quat_multiply(q1, P.quat_conjugate(q1)), [1, 0, 0, 0], atol=1e-12)


def test_axis_angle_round_trip():
    v = rng.normal(size=(100, 3))
    v = v / np.linalg.norm(v, axis=1, keepdims=True) * rng.uniform(0, np.pi - 1e-3, (100, 1))
    np.testing.assert_allclose(P.matrix_to_axis_angle(P.axis_angle_to_matrix(v)), v, atol=1e-9)


def test_6d_round_trip_and_gram_schmidt():
    Rs = random_rotations(50)
    np.testing.assert_allclose(P.sixd_to_matrix(P.matrix_to_6d(Rs)), Rs, atol=1e-12)
    R = P.sixd_to_matrix(rng.normal(size=6))  # any 6 numbers give a rotation
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)


def test_pose_inverse_compose_and_interpolate():
    T_ba = P.make_pose(random_rotations(1)[0], rng.normal(size=3))
    T_cb = P.make_pose(random_rotations(1)[0], rng.normal(size=3))
    np.testing.assert_allclose(P.pose_compose(T_ba, P.pose_inverse(T_ba)), np.eye(4), atol=1e-12)
    pts = rng.normal(size=(5, 3))
    np.testing.assert_allclose(P.transform_points(P.pose_compose(T_cb, T_ba), pts),
                               P.transform_points(T_cb, P.transform_points(T_ba, pts)), atol=1e-12)
    np.testing.assert_allclose(P.pose_interpolate(T_ba, T_cb, 0.0), T_ba, atol=1e-9)
    np.testing.assert_allclose(P.pose_interpolate(T_ba, T_cb, 1.0), T_cb, atol=1e-9)
    mid = P.pose_interpolate(T_ba, T_cb, 0.5)
    c = lambda T: P.pose_inverse(T)[:3, 3]  # noqa: E731
    np.testing.assert_allclose(c(mid), (c(T_ba) + c(T_cb)) / 2, atol=1e-9)
    half = P.rotation_angle_deg(T_ba[:3, :3], T_cb[:3, :3]) / 2
    assert P.rotation_angle_deg(T_ba[:3, :3], mid[:3, :3]) == pytest.approx(half, abs=1e-6)


def test_project_to_so3():
    R = random_rotations(1)[0]
    np.testing.assert_allclose(P.project_to_so3(R + 1e-4 * rng.normal(size=(3, 3))), R, atol=1e-3)
