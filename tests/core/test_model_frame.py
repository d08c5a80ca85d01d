"""The model file's frame and the render world: up axes, the similarity between them, poses moved across."""
import numpy as np
import pytest

from pose_addon.core.cameras import project_points
from pose_addon.core.model_frame import (
    UP_AXES,
    default_up_axis,
    rebase_pose,
    transform_points,
    up_axis_rotation,
    world_from_model_matrix,
)
from pose_addon.core.sampling import look_at

K = np.array([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]])


@pytest.mark.parametrize("axis", UP_AXES)
def test_up_axis_goes_to_z(axis):
    R = up_axis_rotation(axis)
    v = np.zeros(3)
    v["XYZ".index(axis[-1])] = -1.0 if axis.startswith("-") else 1.0
    assert np.allclose(R @ v, [0, 0, 1]) and np.isclose(np.linalg.det(R), 1.0)


def test_defaults_and_bad_axis():
    assert default_up_axis("a.glb") == "Y" and default_up_axis("b.OBJ") == "Y" and default_up_axis("c.ply") == "Z"
    assert np.allclose(up_axis_rotation("+y"), up_axis_rotation("Y"))
    with pytest.raises(ValueError, match="unknown up axis"):
        up_axis_rotation("W")


def test_pose_in_the_model_frame_projects_like_the_world_pose():
    """A camera of the render world, rebased into a Y-up, off-centre, scaled model frame, sees the model's points
    at the same pixels; and back again."""
    rng = np.random.default_rng(0)
    pts_model = rng.uniform([100, 0, -40], [112, 9, -31], (50, 3))  # Y up, far from the origin, model units
    A = world_from_model_matrix(1.7, [-180.0, 60.0, -3.0], "Y")  # world_from_model
    pts_world = transform_points(A, pts_model)
    T_world = look_at(pts_world.mean(0) + [20.0, -25.0, 6.0], pts_world.mean(0))
    T_model = rebase_pose(T_world, A)
    assert np.allclose(T_model[:3, :3] @ T_model[:3, :3].T, np.eye(3))  # rigid
    uv_w, _ = project_points(K, T_world, pts_world)
    uv_m, _ = project_points(K, T_model, pts_model)
    assert np.abs(uv_w - uv_m).max() < 1e-6
    back = rebase_pose(T_model, np.linalg.inv(A))
    assert np.allclose(back, T_world, atol=1e-9)
    centre_model = -T_model[:3, :3].T @ T_model[:3, 3]
    centre_world = -T_world[:3, :3].T @ T_world[:3, 3]
    assert np.allclose(transform_points(A, centre_model[None])[0], centre_world)
