"""The model file's own frame and the render world (Blender, Z up, metres), both ways.

A mesh file is imported, turned so that its up axis becomes +Z, scaled and centred (x/y centre of its bounding
box at the origin, its floor at z = 0). The whole transform is a similarity::

    x_world = world_from_model @ [x_model, 1]      world_from_model = [[s R_up, t], [0, 1]]

and the dataset manifest records its inverse as ``scene["model_from_world"]`` (4x4). glTF files are Y-up by
specification and OBJ files by convention: their default ``up_axis`` is ``Y``; PLY files default to ``Z``.

A camera pose moves between the frames with :func:`rebase_pose`, which keeps it rigid (a similarity scales the
camera's distance units, not its rotation): ``cam_from_model = rebase_pose(cam_from_world, world_from_model)``.
"""
from __future__ import annotations

import numpy as np

__all__ = ["UP_AXES", "DEFAULT_LONGEST_SIDE_M", "up_axis_rotation", "default_up_axis", "world_from_model_matrix",
           "rebase_pose", "transform_points"]

#: metres a model file's longest side is scaled to when no explicit scale is given; also the size class of the
#: procedural building and the building size the camera placement presets' distances were chosen for
DEFAULT_LONGEST_SIDE_M = 15.0

#: up axes a model file may use (its axis that points to the sky)
UP_AXES = ("Z", "Y", "X", "-Z", "-Y", "-X")

_ROT = {
    "Z": [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
    "Y": [[1, 0, 0], [0, 0, -1], [0, 1, 0]],  # +90 deg about X: (x, y, z) -> (x, -z, y), glTF's Y-up -> Z-up
    "-Y": [[1, 0, 0], [0, 0, 1], [0, -1, 0]],  # -90 deg about X: (x, y, z) -> (x, z, -y)
    "X": [[0, 0, -1], [0, 1, 0], [1, 0, 0]],  # -90 deg about Y: (x, y, z) -> (-z, y, x)
    "-X": [[0, 0, 1], [0, 1, 0], [-1, 0, 0]],  # +90 deg about Y: (x, y, z) -> (z, y, -x)
    "-Z": [[1, 0, 0], [0, -1, 0], [0, 0, -1]],  # 180 deg about X
}


def up_axis_rotation(axis: str) -> np.ndarray:
    """Rotation ``[3, 3]`` taking model axis ``axis`` (one of :data:`UP_AXES`) to world +Z."""
    a = str(axis).strip().upper()
    if a.startswith("+"):
        a = a[1:]
    if a not in _ROT:
        raise ValueError(f"unknown up axis {axis!r}; choose one of {', '.join(UP_AXES)}")
    return np.array(_ROT[a], dtype=np.float64)


def default_up_axis(path: str) -> str:
    """``Y`` for glTF (``.glb``/``.gltf``, Y-up by specification) and OBJ (Y-up by convention), ``Z`` for PLY."""
    return "Y" if str(path).lower().endswith((".glb", ".gltf", ".obj")) else "Z"


def world_from_model_matrix(scale: float, translation, up_axis: str = "Z") -> np.ndarray:
    """``[4, 4]`` similarity: turn ``up_axis`` to +Z, scale by ``scale``, then add ``translation`` ``[3]``."""
    M = np.eye(4)
    M[:3, :3] = float(scale) * up_axis_rotation(up_axis)
    M[:3, 3] = np.asarray(translation, np.float64)
    return M


def rebase_pose(cam_from_a: np.ndarray, a_from_b: np.ndarray) -> np.ndarray:
    """``cam_from_b`` (rigid, 4x4) of a camera given ``cam_from_a`` and the similarity ``a_from_b``.

    Frame b's units are used for the translation: with ``a_from_b = [[s R, t], [0, 1]]`` the camera centre in b
    is the centre in a mapped back by ``b_from_a``; the rotation is ``R_cam_from_a @ R``.
    """
    M = np.asarray(cam_from_a, np.float64) @ np.asarray(a_from_b, np.float64)
    s = float(np.cbrt(np.linalg.det(M[:3, :3])))
    if not s > 0:
        raise ValueError("a_from_b must be a similarity with positive scale")
    out = np.eye(4)
    out[:3, :4] = M[:3, :4] / s
    return out


def transform_points(a_from_b: np.ndarray, points_b: np.ndarray) -> np.ndarray:
    """Points ``[N, 3]`` of frame b expressed in frame a."""
    A = np.asarray(a_from_b, np.float64)
    return np.asarray(points_b, np.float64) @ A[:3, :3].T + A[:3, 3]
