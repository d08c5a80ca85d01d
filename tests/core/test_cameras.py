"""Camera frames and intrinsics (the Blender-side test checks them against Blender's own projection)."""
import numpy as np
import pytest

from pose_addon.core import cameras as C
from pose_addon.core.sampling import look_at


def test_blender_matrix_world_round_trip_and_axes():
    T = look_at(np.array([10.0, -5.0, 3.0]), np.array([0.0, 0.0, 1.0]))
    M = C.blender_matrix_world_from_cam_from_world(T)
    np.testing.assert_allclose(C.cam_from_world_from_blender_matrix_world(M), T, atol=1e-12)
    # Blender camera looks down its local -Z; OpenCV down +Z: both point at the target
    fwd_blender = -M[:3, 2]
    fwd_cv = T[2, :3]
    np.testing.assert_allclose(fwd_blender, fwd_cv, atol=1e-12)
    np.testing.assert_allclose(C.camera_center(T), [10, -5, 3], atol=1e-12)
    # scaled Blender camera objects give the same pose
    S = M.copy()
    S[:3, :3] *= 2.5
    np.testing.assert_allclose(C.cam_from_world_from_blender_matrix_world(S), T, atol=1e-12)


def test_look_at_keeps_world_up_up_in_the_image():
    T = look_at(np.array([20.0, 0.0, 5.0]), np.zeros(3))
    K = np.array([[500, 0, 320], [0, 500, 240], [0, 0, 1.0]])
    uv, z = C.project_points(K, T, np.array([[0, 0, 0], [0, 0, 5.0]]))
    assert (z > 0).all()
    assert uv[1, 1] < uv[0, 1]  # the higher point appears higher (smaller v)


def test_default_blender_camera_principal_point_at_pixel_centre_convention():
    k = C.intrinsics_from_blender(C.BlenderCameraSettings(resolution_x=640, resolution_y=480))
    assert (k.cx, k.cy) == (319.5, 239.5)
    assert k.fx == pytest.approx(50 / 36 * 640)


@pytest.mark.parametrize("fit,res,aspect,shift", [
    ("AUTO", (640, 480), (1, 1), (0.1, -0.05)),
    ("VERTICAL", (480, 640), (1, 1), (0.0, 0.2)),
    ("HORIZONTAL", (800, 600), (1, 1.25), (-0.1, 0.1)),
    ("AUTO", (300, 500), (2, 1), (0.05, 0.05)),
])
def test_intrinsics_blender_round_trip(fit, res, aspect, shift):
    s = C.BlenderCameraSettings(lens_mm=35, sensor_fit=fit, resolution_x=res[0], resolution_y=res[1],
                                pixel_aspect_x=aspect[0], pixel_aspect_y=aspect[1], shift_x=shift[0],
                                shift_y=shift[1])
    k = C.intrinsics_from_blender(s)
    k2 = C.intrinsics_from_blender(C.blender_from_intrinsics(k))
    for a in ("width", "height", "fx", "fy", "cx", "cy"):
        assert getattr(k2, a) == pytest.approx(getattr(k, a), abs=1e-9)


def test_resolution_percentage_and_scaled_intrinsics_agree():
    full = C.intrinsics_from_blender(C.BlenderCameraSettings(shift_x=0.1, resolution_percentage=100))
    half = C.intrinsics_from_blender(C.BlenderCameraSettings(shift_x=0.1, resolution_percentage=50))
    s = full.scaled(0.5)
    for a in ("width", "height", "fx", "fy", "cx", "cy"):
        assert getattr(s, a) == pytest.approx(getattr(half, a), abs=1e-9)


def test_intrinsics_dict_round_trip():
    k = C.Intrinsics(640, 480, 500.0, 501.0, 319.5, 239.5, (0.1, -0.01, 0.0, 0.0))
    assert C.Intrinsics.from_dict(k.to_dict()) == k
    np.testing.assert_allclose(C.Intrinsics.from_K(k.K, 640, 480, k.dist).K, k.K)
