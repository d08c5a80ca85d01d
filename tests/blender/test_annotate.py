"""Manual annotation over a photo: click keypoints (headless: pixels), solve the pose and focal, export."""
import json

import bpy
import numpy as np
import pytest

import pose_addon
from pose_addon.blender import camera as bcam
from pose_addon.blender import scene_io
from pose_addon.core.cameras import Intrinsics, camera_center, project_points
from pose_addon.core.poses import rotation_angle_deg
from pose_addon.core.sampling import look_at

W, H = 320, 240
K_TRUE = np.array([[300.0, 0, W / 2 - 0.5], [0, 300.0, H / 2 - 0.5], [0, 0, 1]])


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    scene_io.load_scene("procedural:2")
    pose_addon.register()
    photo = tmp_path_factory.mktemp("photo") / "photo.png"
    img = bpy.data.images.new("photo", W, H)
    img.filepath_raw = str(photo)
    img.file_format = "PNG"
    img.save()
    bpy.context.scene.pose_tools.keypoints.suggest_count = 14
    assert "FINISHED" in bpy.ops.building_pose.suggest_keypoints()
    yield photo
    pose_addon.unregister()


def _truth():
    return look_at(np.array([22.0, -28.0, 9.0]), np.array([0.0, 0.0, 5.0]))


def _annotate(photo, noise=0.0, lens=None):
    assert "FINISHED" in bpy.ops.building_pose.add_photo_camera(filepath=str(photo))
    cam = bpy.context.scene.camera
    if lens is not None:
        cam.data.lens = lens
    T = _truth()
    kps = [(it.name, np.array(it.empty.location)) for it in bpy.context.scene.pose_tools.keypoints.items]
    rng = np.random.default_rng(0)
    n = 0
    for name, p in kps:
        uv, z = project_points(K_TRUE, T, p[None])
        if z[0] > 0 and 0 <= uv[0, 0] < W and 0 <= uv[0, 1] < H:
            pixel = tuple(uv[0] + rng.normal(0, noise, 2))
            assert "FINISHED" in bpy.ops.building_pose.annotate_point(keypoint=name, pixel=pixel)
            n += 1
    return cam, T, n


def test_solve_pose_with_known_focal(scene):
    cam, T, n = _annotate(scene, noise=0.5, lens=300.0 * 36.0 / W)
    assert n >= 6
    assert "FINISHED" in bpy.ops.building_pose.solve_annotation(estimate_focal=False)
    est = bcam.get_cam_from_world(cam)
    assert np.linalg.norm(camera_center(est) - camera_center(T)) < 0.3
    assert rotation_angle_deg(est[:3, :3], T[:3, :3]) < 0.5
    ann = json.loads(cam["pose_annotation"])
    assert len(ann["errors_px"]) == n and max(ann["errors_px"].values()) < 3


def test_solve_focal_and_export(scene, tmp_path):
    cam, T, n = _annotate(scene, noise=0.0, lens=50.0)  # wrong initial focal
    assert "FINISHED" in bpy.ops.building_pose.solve_annotation(estimate_focal=True)
    intr = bcam.intrinsics_from_camera(cam, bpy.context.scene)
    assert intr.fx == pytest.approx(300.0, rel=1e-3)
    est = bcam.get_cam_from_world(cam)
    assert np.linalg.norm(camera_center(est) - camera_center(T)) < 0.02
    assert "FINISHED" in bpy.ops.building_pose.export_annotation(directory=str(tmp_path))
    gt = json.loads((tmp_path / "photo.pose.json").read_text())
    np.testing.assert_allclose(gt["cam_from_world"], est, atol=1e-9)
    label = (tmp_path / "labels" / "photo.txt").read_text().split()
    n_kp = len(bpy.context.scene.pose_tools.keypoints.items)
    assert len(label) == 5 + 3 * n_kp and label[0] == "0"
    vis = [int(v) for v in label[7::3]]
    assert vis.count(2) == n and set(vis) <= {0, 2}


def test_too_few_points_is_a_clear_error(scene):
    bpy.ops.building_pose.add_photo_camera(filepath=str(scene))
    names = [it.name for it in bpy.context.scene.pose_tools.keypoints.items][:3]
    for i, name in enumerate(names):
        bpy.ops.building_pose.annotate_point(keypoint=name, pixel=(10.0 * i + 5, 20.0))
    with pytest.raises(RuntimeError, match="at least 4"):
        bpy.ops.building_pose.solve_annotation()
    with pytest.raises(RuntimeError, match="photo not found"):
        bpy.ops.building_pose.add_photo_camera(filepath="/nonexistent/photo.jpg")


def test_estimated_cameras_compare_and_csv(scene, tmp_path):
    from pose_addon import estimates
    from pose_addon.core.poses import make_pose
    from pose_addon.draw import estimate_segments

    T = _truth()
    truth = bpy.data.objects.new("photo", bpy.data.cameras.new("photo"))  # the truth of photo.png, by stem
    bpy.context.scene.collection.objects.link(truth)
    bcam.set_cam_from_world(truth, T)
    intr = Intrinsics(W, H, 300.0, 300.0, W / 2 - 0.5, H / 2 - 0.5)
    shifted = make_pose(T[:3, :3], T[:3, 3] + np.array([0.3, 0.0, 0.4]))  # 0.5 m off
    obj = estimates.create_estimated_camera(bpy.context, str(scene), shifted, intr, "sift",
                                            {"n_inliers": 321, "reproj_error_px": 0.8, "timings": {"total_s": 0.3}})
    assert bcam.intrinsics_at_size(obj, W, H).fx == pytest.approx(300.0)
    bpy.context.scene.pose_tools.compare.truth_camera = truth
    assert "FINISHED" in bpy.ops.building_pose.compare_estimates()
    assert obj["pose_t_err_m"] == pytest.approx(0.5, abs=1e-6) and obj["pose_R_err_deg"] < 1e-6
    segs = estimate_segments()
    assert len(segs) == 3  # estimate frustum, truth frustum, link line
    # the estimate's frustum: apex at its centre, far corners on the rays through the image corners
    frustum = segs[0][1]
    np.testing.assert_allclose(frustum[0], camera_center(shifted), atol=1e-4)
    uv, _ = project_points(intr.K, shifted, frustum[1::2][:4])
    # float32 matrices
    np.testing.assert_allclose(np.sort(uv, axis=0)[[0, -1]], [[-0.5, -0.5], [W - 0.5, H - 0.5]], atol=2e-3)
    np.testing.assert_allclose(segs[2][1], [camera_center(shifted), camera_center(T)], atol=1e-4)
    csv_path = tmp_path / "est.csv"
    assert "FINISHED" in bpy.ops.building_pose.export_estimates_csv(filepath=str(csv_path))
    lines = csv_path.read_text().splitlines()
    assert lines[0].startswith("camera,method,image,n_inliers") and "sift" in lines[1] and "321" in lines[1]
    assert "FINISHED" in bpy.ops.building_pose.clear_estimates()
    assert not estimates.estimated_cameras()


def test_a_wrong_click_stops_a_wrong_focal(scene):
    """Six or more clicks with one of them 50 px off: the focal solved from them is not applied (the clicks
    disagree), the camera keeps its focal length and the note says why."""
    lens = 300.0 * 36.0 / W
    assert "FINISHED" in bpy.ops.building_pose.add_photo_camera(filepath=str(scene))
    cam = bpy.context.scene.camera
    cam.data.lens = lens
    T = _truth()
    n = 0
    for it in bpy.context.scene.pose_tools.keypoints.items:
        uv, z = project_points(K_TRUE, T, np.array(it.empty.location)[None])
        if z[0] > 0 and 0 <= uv[0, 0] < W and 0 <= uv[0, 1] < H:
            px = uv[0] + (np.array([40.0, -30.0]) if n == 0 else 0.0)
            assert "FINISHED" in bpy.ops.building_pose.annotate_point(keypoint=it.name, pixel=tuple(px))
            n += 1
    assert n >= 6
    assert "FINISHED" in bpy.ops.building_pose.solve_annotation(estimate_focal=True)
    assert cam.data.lens == pytest.approx(lens)
    ann = json.loads(cam["pose_annotation"])
    assert not ann["solve"]["focal_estimated"] and any("not applied" in x for x in ann["solve"]["notes"])
    from pose_addon.ops_annotate import POSE_OT_solve_annotation

    props = type("P", (), {"estimate_focal": True})()  # the tooltip of each of the two buttons
    assert "focal length from" in POSE_OT_solve_annotation.description(bpy.context, props)
    props.estimate_focal = False
    assert "keeping its focal length" in POSE_OT_solve_annotation.description(bpy.context, props)
