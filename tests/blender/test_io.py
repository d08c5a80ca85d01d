"""Cameras in and out through File > Import / Export: COLMAP text models and nerfstudio transforms.json round
trips, the localize results (poses.json) as estimated cameras with their photos, comparison with the truth of the
same photo by file stem, and the keypoint list following renames made outside it."""
import json

import bpy
import numpy as np
import pytest

import pose_addon
from pose_addon import estimates
from pose_addon.blender import camera as bcam
from pose_addon.blender import scene_io
from pose_addon.core.cameras import Intrinsics, camera_center, project_points
from pose_addon.core.dataset import Dataset, Frame
from pose_addon.core.interchange import model_to_blender_import, read_colmap
from pose_addon.core.poses import rotation_angle_deg
from pose_addon.core.sampling import look_at

W, H = 160, 120


@pytest.fixture(scope="module")
def scene():
    scene_io.reset_scene()
    scene_io.load_scene("procedural:2")
    pose_addon.register()
    yield bpy.context.scene
    pose_addon.unregister()


def _photo(path, colour=(0.5, 0.2, 0.1, 1.0)):
    img = bpy.data.images.new(path.stem, W, H)
    img.pixels = list(colour) * (W * H)
    img.filepath_raw = str(path)
    img.file_format = "PNG"
    img.save()
    bpy.data.images.remove(img)
    return path


def _cameras(scene, tmp_path, n=3):
    cams = []
    for i in range(n):
        T = look_at(np.array([20.0 + 3 * i, -25.0, 6.0 + i]), np.array([0.0, 0.0, 4.0]))
        intr = Intrinsics(W, H, 140.0 + 10 * i, 140.0 + 10 * i, W / 2 - 0.5 + i, H / 2 - 0.5 - i)
        obj = bpy.data.objects.new(f"cam{i}", bpy.data.cameras.new(f"cam{i}"))
        scene.collection.objects.link(obj)
        estimates.set_camera_intrinsics(obj, intr)
        bcam.set_cam_from_world(obj, T)
        photo = _photo(tmp_path / f"IMG_{i}.png")
        estimates.add_photo_background(obj, photo)
        obj["pose_image"], obj["pose_width"], obj["pose_height"] = str(photo), W, H
        obj.select_set(True)
        cams.append((obj, T, intr))
    return cams


def _check_same(objs, cams):
    by_name = {o.name.split(".")[0]: o for o in objs}
    for i, (_, T, intr) in enumerate(cams):
        o = by_name[f"IMG_{i}"]
        got = bcam.get_cam_from_world(o)
        assert np.linalg.norm(camera_center(got) - camera_center(T)) < 1e-4
        assert rotation_angle_deg(got[:3, :3], T[:3, :3]) < 1e-3
        k = bcam.intrinsics_at_size(o, int(o["pose_width"]), int(o["pose_height"]))
        np.testing.assert_allclose([k.fx, k.cx, k.cy], [intr.fx, intr.cx, intr.cy], atol=1e-3)
        assert o.data.show_background_images and o.data.background_images[0].image is not None


def test_colmap_and_nerfstudio_round_trips(scene, tmp_path):
    r = scene.render
    resolution = (r.resolution_x, r.resolution_y, r.resolution_percentage)
    cams = _cameras(scene, tmp_path)
    assert "FINISHED" in bpy.ops.building_pose.export_colmap(directory=str(tmp_path / "sparse"))
    recs = read_colmap(tmp_path / "sparse", tmp_path)
    assert [x.name for x in recs] == ["IMG_0", "IMG_1", "IMG_2"]
    assert "FINISHED" in bpy.ops.building_pose.export_nerfstudio(filepath=str(tmp_path / "transforms.json"))
    doc = json.loads((tmp_path / "transforms.json").read_text())
    assert len(doc["frames"]) == 3 and doc["frames"][0]["file_path"].endswith("IMG_0.png")
    for obj, _, _ in cams:
        bpy.data.objects.remove(obj)

    assert "FINISHED" in bpy.ops.building_pose.import_colmap(filepath=str(tmp_path / "sparse" / "images.txt"),
                                                             image_dir=str(tmp_path))
    col = bpy.data.collections["Imported Cameras"]
    _check_same(list(col.objects), cams)
    for o in list(col.objects):
        bpy.data.objects.remove(o)
    assert "FINISHED" in bpy.ops.building_pose.import_nerfstudio(filepath=str(tmp_path / "transforms.json"))
    _check_same(list(col.objects), cams)
    assert (r.resolution_x, r.resolution_y, r.resolution_percentage) == resolution  # imports leave it alone
    for o in list(col.objects):
        bpy.data.objects.remove(o)


def test_bad_camera_files_are_clear_errors(scene, tmp_path):
    (tmp_path / "cameras.txt").write_text("1 PINHOLE 160 120 100 100 80\n")
    (tmp_path / "images.txt").write_text("")
    with pytest.raises(RuntimeError, match=r"cameras.txt line 1: PINHOLE takes 4 parameters"):
        bpy.ops.building_pose.import_colmap(filepath=str(tmp_path / "images.txt"))
    (tmp_path / "t.json").write_text('{"frames": [{"file_path": "a.png"}]}')
    with pytest.raises(RuntimeError, match=r"frames\[0\] has no 'w'"):
        bpy.ops.building_pose.import_nerfstudio(filepath=str(tmp_path / "t.json"))


def _poses_json(tmp_path, model="house.glb"):
    """A localize result as CONTRACTS.md describes it: two localized photos and a failed one, poses in the
    model file's frame (glTF: Y up)."""
    blender_from_model = model_to_blender_import(model)
    model_from_blender = np.linalg.inv(blender_from_model)
    photos, truth = [], {}
    for i, eye in enumerate(([18.0, -24.0, 7.0], [-20.0, -22.0, 9.0])):
        T_blender = look_at(np.array(eye), np.array([0.0, 0.0, 4.0]))
        T_model = T_blender @ blender_from_model  # cam_from_model
        K = [[150.0 + i, 0, W / 2 - 0.5 + 2], [0, 150.0 + i, H / 2 - 0.5 - 1], [0, 0, 1]]
        photo = _photo(tmp_path / f"DSC_{i}.jpg".replace(".jpg", ".png"))
        photos.append({"image": str(photo), "stem": photo.stem, "status": "ok", "reason": None, "width": W,
                       "height": H, "K": K, "dist": None, "cam_from_world": T_model.tolist(), "n_inliers": 120 + i,
                       "inlier_ratio": 0.6, "confidence": 0.9, "time_s": 1.5})
        truth[photo.stem] = (T_blender, np.array(K))
    photos.append({"image": str(tmp_path / "blurry.jpg"), "stem": "blurry", "status": "failed",
                   "reason": "42 inliers < 50", "width": W, "height": H, "K": None, "dist": None,
                   "cam_from_world": None, "n_inliers": 42, "inlier_ratio": 0.1, "confidence": 0.0, "time_s": 2.0})
    mfw = np.diag([0.5, 0.5, 0.5, 1.0]) @ model_from_blender  # render world: scaled by 2, Z up
    doc = {"format": "building-pose-localize", "version": 1, "model": model, "model_from_world": mfw.tolist(),
           "method": "sift", "intrinsics": "exif", "photos": photos}
    (tmp_path / "poses.json").write_text(json.dumps(doc))
    return tmp_path / "poses.json", truth, model_from_blender


def test_localize_results_become_estimated_cameras(scene, tmp_path):
    path, truth, model_from_blender = _poses_json(tmp_path)
    assert "FINISHED" in bpy.ops.building_pose.import_localize(filepath=str(path))
    cams = {estimates.photo_stem(o): o for o in estimates.estimated_cameras()}
    assert set(cams) == {"DSC_0", "DSC_1"}  # the failed photo makes no camera
    X = np.array([[3.0, 2.0, 5.0], [-4.0, 1.0, 8.0], [0.0, -3.0, 1.0]])  # Blender world points
    for stem, (T_blender, K) in truth.items():
        o = cams[stem]
        assert o["pose_n_inliers"] in (120, 121) and o["pose_method"] == "sift"
        assert o.data.background_images[0].image.filepath.endswith(f"{stem}.png")
        k = bcam.intrinsics_at_size(o, int(o["pose_width"]), int(o["pose_height"]))
        uv, _ = project_points(k.K, bcam.get_cam_from_world(o), X)
        expected, _ = project_points(K, T_blender, X)
        np.testing.assert_allclose(uv, expected, atol=1e-2)  # the photo's pixels of the same points
    assert "FINISHED" in bpy.ops.building_pose.clear_estimates()
    # placed in the render world instead (world_from_model = inverse of model_from_world: the imported model
    # scaled by 2 here), the camera centres are twice as far from the origin
    assert "FINISHED" in bpy.ops.building_pose.import_localize(filepath=str(path), frame="render")
    o = {estimates.photo_stem(o): o for o in estimates.estimated_cameras()}["DSC_0"]
    c = camera_center(bcam.get_cam_from_world(o))
    np.testing.assert_allclose(c, 2.0 * camera_center(truth["DSC_0"][0]), atol=1e-3)
    assert "FINISHED" in bpy.ops.building_pose.clear_estimates()


def test_bad_localize_file_is_refused_with_its_name(scene, tmp_path):
    path, _, _ = _poses_json(tmp_path)
    doc = json.loads(path.read_text())
    doc["photos"][0]["K"] = [[1, 2], [3, 4]]
    path.write_text(json.dumps(doc))
    with pytest.raises(RuntimeError, match=r"poses.json: photos\[0\] \(DSC_0\): K must be 3x3"):
        bpy.ops.building_pose.import_localize(filepath=str(path))
    path.write_text('{"format": "something-else"}')
    with pytest.raises(RuntimeError, match="not a localize result"):
        bpy.ops.building_pose.import_localize(filepath=str(path))
    assert not estimates.estimated_cameras()


def test_compare_matches_the_truth_of_each_photo_by_stem(scene, tmp_path):
    path, truth, _ = _poses_json(tmp_path)
    assert "FINISHED" in bpy.ops.building_pose.import_localize(filepath=str(path))
    # a truth dataset whose frame image has the photo's stem but another extension
    ds = Dataset.create(tmp_path / "truth", {"name": "t"}, {"engine": "CYCLES"}, {"test": 1})
    T0 = truth["DSC_0"][0].copy()
    T0[:3, 3] += [0.3, 0.0, 0.4]  # 0.5 m off
    ds.add_frame(Frame("test_0000", "test", "images/DSC_0.jpg", None, Intrinsics(W, H, 150, 150, 79.5, 59.5), T0))
    ds.save()
    c = scene.pose_tools.compare
    c.truth_camera, c.dataset_dir = None, str(tmp_path / "truth")
    assert "FINISHED" in bpy.ops.building_pose.compare_estimates()
    cams = {estimates.photo_stem(o): o for o in estimates.estimated_cameras()}
    assert cams["DSC_0"]["pose_t_err_m"] == pytest.approx(0.5, abs=1e-4)
    assert "pose_t_err_m" not in cams["DSC_1"]  # no truth for this photo: no error, not another photo's
    # a truth camera is the truth of its own photo only
    truth_cam = bpy.data.objects.new("DSC_1", bpy.data.cameras.new("DSC_1"))
    scene.collection.objects.link(truth_cam)
    bcam.set_cam_from_world(truth_cam, truth["DSC_1"][0])
    c.truth_camera, c.dataset_dir = truth_cam, ""
    assert "FINISHED" in bpy.ops.building_pose.compare_estimates()
    assert cams["DSC_1"]["pose_t_err_m"] < 1e-3 and "pose_t_err_m" not in cams["DSC_0"]
    other = bpy.data.objects.new("IMG_9", bpy.data.cameras.new("IMG_9"))
    scene.collection.objects.link(other)
    c.truth_camera = other
    with pytest.raises(RuntimeError, match="No estimated camera shows the photo 'IMG_9'"):
        bpy.ops.building_pose.compare_estimates()
    c.truth_camera = None
    bpy.ops.building_pose.clear_estimates()


def test_keypoint_list_follows_renames(scene, tmp_path):
    kps = scene.pose_tools.keypoints
    kps.suggest_count = 6
    assert "FINISHED" in bpy.ops.building_pose.suggest_keypoints()
    item = kps.items[0]
    old = item.name
    cam = bpy.data.objects.new("annotated", bpy.data.cameras.new("annotated"))
    cam["pose_annotation"] = json.dumps({"points": {old: [10.0, 20.0]}, "errors_px": {old: 1.0}})
    item.empty.name = "chimney_corner"  # renamed in the Outliner
    assert "FINISHED" in bpy.ops.building_pose.export_keypoints(filepath=str(tmp_path / "kp.json"))
    names = [k["name"] for k in json.loads((tmp_path / "kp.json").read_text())["keypoints"]]
    assert names[0] == "chimney_corner" and old not in names
    assert kps.items[0].name == "chimney_corner"
    ann = json.loads(cam["pose_annotation"])
    assert ann["points"] == {"chimney_corner": [10.0, 20.0]}  # the annotation follows the keypoint
    # renaming in the list renames the empty
    kps.items[1].name = "door_left"
    assert kps.items[1].empty.name == "door_left"
    size = kps.items[0].empty.empty_display_size
    assert size == pytest.approx(0.01 * max(np.ptp(np.array([list(v) for o in scene.objects if o.type == "MESH"
                                                             and not o.name.startswith("Ground")
                                                             for v in o.bound_box]), axis=0)) , rel=0.5)
