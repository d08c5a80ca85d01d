"""Core camera conventions checked against Blender's own projection (``world_to_camera_view``)."""
import itertools

import bpy
import numpy as np
import pytest
from bpy_extras.object_utils import world_to_camera_view
from mathutils import Vector

from pose_addon.blender import building
from pose_addon.blender import camera as bcam
from pose_addon.core import cameras as C
from pose_addon.core.sampling import look_at


@pytest.fixture(scope="module")
def points():
    from pose_addon.blender import scene_io

    scene_io.reset_scene()
    info = building.build_procedural_building(0)
    obj = bpy.data.objects[info["objects"][0]]
    co = np.array([v.co[:] for v in obj.data.vertices])
    M = np.array(obj.matrix_world)
    pts = co @ M[:3, :3].T + M[:3, 3]
    return pts[np.linspace(0, len(pts) - 1, 400).astype(int)]


def _camera(scene):
    cam = bpy.data.objects.get("TestCam")
    if cam is None:
        cam = bpy.data.objects.new("TestCam", bpy.data.cameras.new("TestCam"))
        scene.collection.objects.link(cam)
    scene.camera = cam
    return cam


def _blender_pixels(scene, cam, pts):
    """OpenCV pixels from Blender's normalised camera view coordinates (y up from the bottom)."""
    s = scene.render.resolution_percentage / 100.0
    W, H = int(scene.render.resolution_x * s), int(scene.render.resolution_y * s)
    out = []
    for p in pts:
        v = world_to_camera_view(scene, cam, Vector(p))
        out.append((v.x * W - 0.5, (1.0 - v.y) * H - 0.5, v.z))
    return np.array(out)


POSES = [
    (np.array([25.0, -20.0, 8.0]), np.array([0.0, 0.0, 6.0]), 0.0),
    (np.array([-18.0, -27.0, 14.0]), np.array([1.0, -0.5, 5.0]), 17.0),
    (np.array([5.0, 30.0, 3.0]), np.array([0.0, 0.0, 9.0]), -30.0),
]
CASES = list(itertools.product(
    ["AUTO", "HORIZONTAL", "VERTICAL"],
    [(0.0, 0.0), (0.07, -0.12)],
    [(640, 480, 100), (480, 640, 50), (800, 600, 75)],
    [(1.0, 1.0), (1.0, 1.25), (1.4, 1.0)],
))


@pytest.mark.parametrize("fit,shift,res,aspect", CASES)
def test_projection_matches_blender(points, fit, shift, res, aspect):
    scene = bpy.context.scene
    cam = _camera(scene)
    s = C.BlenderCameraSettings(lens_mm=28.0, sensor_width_mm=36.0, sensor_height_mm=20.0, sensor_fit=fit,
                                shift_x=shift[0], shift_y=shift[1], resolution_x=res[0], resolution_y=res[1],
                                resolution_percentage=res[2], pixel_aspect_x=aspect[0], pixel_aspect_y=aspect[1])
    bcam.apply_settings(cam, scene, s)
    got = bcam.settings_from_camera(cam, scene)
    for k, v in vars(s).items():  # Blender stores float32
        assert getattr(got, k) == (v if isinstance(v, str) else pytest.approx(v, rel=1e-6, abs=1e-7)), k
    intr = bcam.intrinsics_from_camera(cam, scene)
    for eye, target, roll in POSES:
        bcam.set_cam_from_world(cam, look_at(eye, target, roll_deg=roll))
        bpy.context.view_layer.update()
        T = bcam.get_cam_from_world(cam)  # from Blender's matrix_world through core
        uv, z = C.project_points(intr.K, T, points)
        ref = _blender_pixels(scene, cam, points)
        assert np.all(z > 0)
        np.testing.assert_allclose(z, ref[:, 2], atol=1e-4)
        np.testing.assert_allclose(uv, ref[:, :2], atol=0.01)


@pytest.mark.parametrize("intr", [
    C.Intrinsics(640, 480, 533.3, 533.3, 319.5, 239.5),
    C.Intrinsics(480, 640, 700.0, 700.0, 250.2, 300.7),
    C.Intrinsics(800, 600, 650.0, 700.0, 410.0, 280.0),  # non-square pixels
    C.Intrinsics(1000, 750, 900.0, 820.0, 480.0, 390.0),
])
def test_blender_from_intrinsics_on_a_real_camera(points, intr):
    scene = bpy.context.scene
    cam = _camera(scene)
    bcam.apply_intrinsics(cam, scene, intr)
    got = bcam.intrinsics_from_camera(cam, scene)
    assert (got.width, got.height) == (intr.width, intr.height)
    np.testing.assert_allclose([got.fx, got.fy, got.cx, got.cy], [intr.fx, intr.fy, intr.cx, intr.cy], atol=1e-4)
    T = look_at(np.array([22.0, -25.0, 9.0]), np.array([0.0, 0.0, 7.0]), roll_deg=5.0)
    bcam.set_cam_from_world(cam, T)
    bpy.context.view_layer.update()
    uv, _ = C.project_points(intr.K, T, points)
    np.testing.assert_allclose(uv, _blender_pixels(scene, cam, points)[:, :2], atol=0.01)


def test_cam_from_world_round_trip():
    scene = bpy.context.scene
    cam = _camera(scene)
    rng = np.random.default_rng(0)
    for _ in range(20):
        eye = rng.uniform(-40, 40, 3)
        T = look_at(eye, rng.uniform(-3, 3, 3), roll_deg=rng.uniform(-180, 180))
        bcam.set_cam_from_world(cam, T)
        np.testing.assert_allclose(bcam.get_cam_from_world(cam), T, atol=1e-5)
        np.testing.assert_allclose(np.array(cam.matrix_world.translation), eye, atol=1e-4)
    # the camera looks at the target: it projects to the image centre (no shift)
    bcam.apply_settings(cam, scene, C.BlenderCameraSettings())
    T = look_at(np.array([30.0, 0.0, 5.0]), np.array([0.0, 0.0, 5.0]))
    bcam.set_cam_from_world(cam, T)
    bpy.context.view_layer.update()
    v = world_to_camera_view(scene, cam, Vector((0.0, 0.0, 5.0)))
    assert abs(v.x - 0.5) < 1e-6 and abs(v.y - 0.5) < 1e-6 and abs(v.z - 30.0) < 1e-4


def test_apply_intrinsics_rejects_distortion():
    scene = bpy.context.scene
    with pytest.raises(ValueError, match="distortion"):
        bcam.apply_intrinsics(_camera(scene), scene, C.Intrinsics(64, 48, 50, 50, 31.5, 23.5, (0.1, 0, 0, 0)))
