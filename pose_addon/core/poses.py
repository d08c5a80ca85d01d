"""Rotation and rigid-transform math. numpy only.

Conventions (the one place they are defined):

* Quaternions are ``(w, x, y, z)``, scalar first, unit norm, Hamilton product -- the order Blender
  (``mathutils.Quaternion``) and COLMAP (``qvec``) use.
* Rotation matrices act on column vectors: ``p_b = R_b_from_a @ p_a``.
* A pose named ``b_from_a`` is a 4x4 homogeneous matrix mapping points in frame ``a`` to frame ``b``.
* The continuous 6D representation (Zhou et al. 2019) is the first two *columns* of R, concatenated: ``[r1, r2]``.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "quat_normalize", "quat_multiply", "quat_conjugate", "quat_to_matrix", "matrix_to_quat", "quat_slerp",
    "axis_angle_to_matrix", "matrix_to_axis_angle", "matrix_to_6d", "sixd_to_matrix",
    "make_pose", "pose_inverse", "pose_compose", "pose_interpolate", "transform_points",
    "rotation_angle_deg", "project_to_so3",
]


def quat_normalize(q: np.ndarray) -> np.ndarray:
    """Unit quaternion(s) ``[..., 4]`` (w, x, y, z) with ``w >= 0`` (canonical hemisphere)."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(q[..., :1] < 0, -q, q)


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product ``a * b`` of quaternions ``[..., 4]`` (w, x, y, z); rotates by b first, then a."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], axis=-1)


def quat_conjugate(q: np.ndarray) -> np.ndarray:
    """Conjugate (inverse for unit quaternions) of ``[..., 4]`` (w, x, y, z)."""
    q = np.asarray(q, dtype=np.float64)
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """Quaternion(s) ``[..., 4]`` (w, x, y, z) -> rotation matrices ``[..., 3, 3]``."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    R = np.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], axis=-1)
    return R.reshape(q.shape[:-1] + (3, 3))


def matrix_to_quat(R: np.ndarray) -> np.ndarray:
    """Rotation matrices ``[..., 3, 3]`` -> unit quaternions ``[..., 4]`` (w, x, y, z), ``w >= 0``.

    Uses the numerically stable branch on the largest diagonal term (Shepperd's method).
    """
    R = np.asarray(R, dtype=np.float64)
    flat = R.reshape(-1, 3, 3)
    out = np.empty((flat.shape[0], 4))
    for i, m in enumerate(flat):
        tr = np.trace(m)
        if tr > max(m[0, 0], m[1, 1], m[2, 2]):
            s = 2.0 * np.sqrt(1.0 + tr)
            out[i] = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
        elif m[0, 0] >= m[1, 1] and m[0, 0] >= m[2, 2]:
            s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
            out[i] = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
        elif m[1, 1] >= m[2, 2]:
            s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
            out[i] = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
        else:
            s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
            out[i] = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    return quat_normalize(out).reshape(R.shape[:-2] + (4,))


def quat_slerp(q0: np.ndarray, q1: np.ndarray, t: float) -> np.ndarray:
    """Spherical linear interpolation between unit quaternions ``[4]`` (w, x, y, z), shortest arc."""
    q0 = quat_normalize(q0)
    q1 = quat_normalize(q1)
    d = float(np.dot(q0, q1))
    if d < 0:
        q1, d = -q1, -d
    if d > 0.9995:
        return quat_normalize(q0 + t * (q1 - q0))
    theta = np.arccos(np.clip(d, -1.0, 1.0))
    return quat_normalize((np.sin((1 - t) * theta) * q0 + np.sin(t * theta) * q1) / np.sin(theta))


def axis_angle_to_matrix(rotvec: np.ndarray) -> np.ndarray:
    """Rotation vector ``[..., 3]`` (axis * angle in radians) -> ``[..., 3, 3]`` (Rodrigues)."""
    v = np.asarray(rotvec, dtype=np.float64)
    theta = np.linalg.norm(v, axis=-1, keepdims=True)
    axis = np.where(theta > 1e-12, v / np.maximum(theta, 1e-12), 0.0)
    x, y, z = np.moveaxis(axis, -1, 0)
    zero = np.zeros_like(x)
    K = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], axis=-1).reshape(v.shape[:-1] + (3, 3))
    th = theta[..., None]
    eye = np.broadcast_to(np.eye(3), K.shape)
    return eye + np.sin(th) * K + (1 - np.cos(th)) * (K @ K)


def matrix_to_axis_angle(R: np.ndarray) -> np.ndarray:
    """Rotation matrices ``[..., 3, 3]`` -> rotation vectors ``[..., 3]`` (via the quaternion, stable near pi)."""
    q = matrix_to_quat(R)
    w = np.clip(q[..., 0], -1.0, 1.0)
    xyz = q[..., 1:]
    s = np.linalg.norm(xyz, axis=-1, keepdims=True)
    angle = 2.0 * np.arctan2(s[..., 0], w)
    return np.where(s > 1e-12, xyz / np.maximum(s, 1e-12) * angle[..., None], 2.0 * xyz)


def matrix_to_6d(R: np.ndarray) -> np.ndarray:
    """Rotation matrices ``[..., 3, 3]`` -> continuous 6D ``[..., 6]``: first column then second column."""
    R = np.asarray(R, dtype=np.float64)
    return np.concatenate([R[..., :, 0], R[..., :, 1]], axis=-1)


def sixd_to_matrix(d6: np.ndarray) -> np.ndarray:
    """Continuous 6D ``[..., 6]`` -> rotation matrices ``[..., 3, 3]`` by Gram-Schmidt (columns r1, r2, r1 x r2)."""
    d6 = np.asarray(d6, dtype=np.float64)
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = a1 / np.linalg.norm(a1, axis=-1, keepdims=True)
    a2 = a2 - np.sum(b1 * a2, axis=-1, keepdims=True) * b1
    b2 = a2 / np.linalg.norm(a2, axis=-1, keepdims=True)
    b3 = np.cross(b1, b2)
    return np.stack([b1, b2, b3], axis=-1)


def project_to_so3(M: np.ndarray) -> np.ndarray:
    """Closest rotation ``[3, 3]`` to a near-rotation matrix (SVD, det +1)."""
    U, _, Vt = np.linalg.svd(np.asarray(M, dtype=np.float64))
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    return U @ D @ Vt


def make_pose(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """4x4 ``b_from_a`` from rotation ``[3, 3]`` and translation ``[3]``."""
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = np.asarray(t, dtype=np.float64).reshape(3)
    return T


def pose_inverse(T: np.ndarray) -> np.ndarray:
    """Inverse of rigid 4x4 transform(s) ``[..., 4, 4]``: ``a_from_b`` from ``b_from_a``."""
    T = np.asarray(T, dtype=np.float64)
    R = T[..., :3, :3]
    t = T[..., :3, 3:]
    Rt = np.swapaxes(R, -1, -2)
    out = np.zeros_like(T)
    out[..., :3, :3] = Rt
    out[..., :3, 3:] = -Rt @ t
    out[..., 3, 3] = 1.0
    return out


def pose_compose(c_from_b: np.ndarray, b_from_a: np.ndarray) -> np.ndarray:
    """``c_from_a = c_from_b @ b_from_a`` (names make the chain readable)."""
    return np.asarray(c_from_b, dtype=np.float64) @ np.asarray(b_from_a, dtype=np.float64)


def pose_interpolate(T0: np.ndarray, T1: np.ndarray, t: float) -> np.ndarray:
    """Interpolate two rigid 4x4 transforms of the same frames: slerp on rotation, linear on the *centre*.

    The camera centre (not the translation vector) is interpolated so that an interpolated camera lies on the
    segment between the two cameras.
    """
    inv0, inv1 = pose_inverse(T0), pose_inverse(T1)
    q = quat_slerp(matrix_to_quat(T0[:3, :3]), matrix_to_quat(T1[:3, :3]), t)
    R = quat_to_matrix(q)
    c = (1 - t) * inv0[:3, 3] + t * inv1[:3, 3]
    return make_pose(R, -R @ c)


def transform_points(b_from_a: np.ndarray, points_a: np.ndarray) -> np.ndarray:
    """Apply a 4x4 transform to points ``[N, 3]`` in frame a; returns ``[N, 3]`` in frame b."""
    p = np.asarray(points_a, dtype=np.float64)
    return p @ b_from_a[:3, :3].T + b_from_a[:3, 3]


def rotation_angle_deg(R_a: np.ndarray, R_b: np.ndarray) -> float:
    """Geodesic angle in degrees between two rotations ``[3, 3]``."""
    cos = (np.trace(np.asarray(R_a).T @ np.asarray(R_b)) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))
