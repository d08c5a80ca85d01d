"""The extension as a user gets it: build the zip, install and enable it, run every operator headless,
then disable and uninstall it and check that nothing stays registered."""
import json
from pathlib import Path

import bpy
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
PKG = "bl_ext.user_default.building_pose"


@pytest.fixture(scope="module")
def ext(installed_extension):
    import importlib

    mod = installed_extension
    # a building to work on, made by the installed extension's own code
    importlib.import_module(PKG + ".blender.scene_io").load_scene("procedural:2")
    yield mod
    # teardown is tested in test_zz_uninstall


def settings():
    return bpy.context.scene.pose_tools


def test_installed_and_registered(ext):
    assert PKG in bpy.context.preferences.addons
    assert hasattr(bpy.types.Scene, "pose_tools")
    for op in ("sample_cameras", "clear_cameras", "render_dataset", "place_keypoint", "suggest_keypoints"):
        assert hasattr(bpy.ops.building_pose, op)


def _camera_centres():
    col = bpy.data.collections["Sampled Cameras"]
    return np.array([list(o.matrix_world.translation) for o in sorted(col.objects, key=lambda o: o.name)])


def test_sample_cameras_is_seeded_and_clearable(ext):
    s = settings().sampling
    s.count, s.seed, s.output = 12, 4, "CAMERAS"
    assert "FINISHED" in bpy.ops.building_pose.sample_cameras()
    first = _camera_centres()
    assert first.shape == (12, 3)
    assert "FINISHED" in bpy.ops.building_pose.sample_cameras()  # replaces, does not add
    np.testing.assert_allclose(_camera_centres(), first)
    building_centre_xy = np.zeros(2)  # load_scene centres the building on the origin
    assert (np.linalg.norm(first[:, :2] - building_centre_xy, axis=1) > 10).all()
    s.output = "POSES"
    assert "FINISHED" in bpy.ops.building_pose.sample_cameras()
    assert len(settings().poses) == 12 and len(bpy.data.collections["Sampled Cameras"].objects) == 0
    assert "FINISHED" in bpy.ops.building_pose.clear_cameras()
    assert len(settings().poses) == 0


def test_keypoint_lands_on_projected_vertex(ext):
    core_cam = __import__(PKG + ".core.cameras", fromlist=["x"])
    bcam = __import__(PKG + ".blender.camera", fromlist=["x"])
    s = settings().sampling
    s.count, s.seed, s.output = 6, 1, "CAMERAS"
    bpy.ops.building_pose.sample_cameras()
    cam = bpy.data.collections["Sampled Cameras"].objects[0]
    scene = bpy.context.scene
    scene.camera = cam
    T = bcam.get_cam_from_world(cam)
    intr = bcam.intrinsics_from_camera(cam, scene)
    c = core_cam.camera_center(T)
    depsgraph = bpy.context.evaluated_depsgraph_get()
    building = [o for o in bpy.data.collections["Building"].all_objects if o.type == "MESH"][0]
    M = np.array(building.matrix_world)
    # a vertex that the camera sees unoccluded and well inside the image
    chosen = None
    for v in building.data.vertices:
        p = M[:3, :3] @ np.array(v.co) + M[:3, 3]
        uv, z = core_cam.project_points(intr.K, T, p[None])
        if z[0] <= 0 or not (20 < uv[0, 0] < intr.width - 20 and 20 < uv[0, 1] < intr.height - 20):
            continue
        d = (p - c) / np.linalg.norm(p - c)
        hit, loc, *_ = scene.ray_cast(depsgraph, c.tolist(), d.tolist())
        if hit and np.linalg.norm(np.array(loc) - p) < 1e-4:
            chosen, pixel = p, uv[0]
            break
    assert chosen is not None
    assert "FINISHED" in bpy.ops.building_pose.place_keypoint(name="corner", pixel=tuple(pixel))
    empty = settings().keypoints.items[-1].empty
    assert np.linalg.norm(np.array(empty.location) - chosen) < 1e-3
    settings().keypoints.snap_to_vertex = True
    assert "FINISHED" in bpy.ops.building_pose.place_keypoint(name="corner", pixel=tuple(pixel))
    snapped = settings().keypoints.items[-1]
    assert snapped.name == "corner_1"
    assert np.linalg.norm(np.array(snapped.empty.location) - chosen) < 1e-3


def test_keypoint_list_json_round_trip_and_suggest(ext, tmp_path):
    kps = settings().keypoints
    kps.suggest_count = 12
    n0 = len(kps.items)
    assert "FINISHED" in bpy.ops.building_pose.suggest_keypoints()
    assert len(kps.items) == n0 + 12
    kps.items[0].name = "roof_left"
    assert kps.items[0].empty.name == "roof_left"
    kps.active_index = 0
    bpy.ops.building_pose.move_keypoint(direction="DOWN")
    assert kps.items[1].name == "roof_left" and kps.active_index == 1
    before = [(it.name, tuple(it.empty.location)) for it in kps.items]
    path = tmp_path / "kp.json"
    assert "FINISHED" in bpy.ops.building_pose.export_keypoints(filepath=str(path))
    data = json.loads(path.read_text())
    assert [k["name"] for k in data["keypoints"]] == [b[0] for b in before]
    assert all(k.get("object") for k in data["keypoints"])
    assert "FINISHED" in bpy.ops.building_pose.import_keypoints(filepath=str(path))
    after = [(it.name, tuple(it.empty.location)) for it in kps.items]
    assert [a[0] for a in after] == [b[0] for b in before]
    np.testing.assert_allclose([a[1] for a in after], [b[1] for b in before], atol=1e-6)
    assert "FINISHED" in bpy.ops.building_pose.export_keypoints(filepath=str(tmp_path / "kp2.json"))
    assert json.loads((tmp_path / "kp2.json").read_text()) == data  # exact round trip
    kps.active_index = 0
    assert "FINISHED" in bpy.ops.building_pose.remove_keypoint()
    assert len(kps.items) == len(before) - 1
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(RuntimeError, match="malformed"):
        bpy.ops.building_pose.import_keypoints(filepath=str(bad))


def test_render_dataset_operator_and_resume(ext, tmp_path):
    r = settings().render
    s = settings().sampling
    s.count, s.seed = 3, 0
    for o in bpy.context.view_layer.objects:
        o.select_set(False)
    r.output_dir = str(tmp_path / "ds")
    r.width, r.height, r.samples, r.n_train, r.n_val, r.n_test = 64, 48, 2, 2, 1, 0
    assert "FINISHED" in bpy.ops.building_pose.render_dataset()
    core_ds = __import__(PKG + ".core.dataset", fromlist=["x"])
    ds = core_ds.Dataset.load(tmp_path / "ds")
    assert ds.complete and len(ds.frames) == 3 and ds.splits() == ["train", "val"]
    assert (tmp_path / "ds" / "scene.glb").is_file()
    # an interrupted render (a frame lost) resumes without re-rendering finished frames
    victim = tmp_path / "ds" / ds.frames[1].image
    victim.unlink()
    keep = tmp_path / "ds" / ds.frames[0].image
    mtime = keep.stat().st_mtime_ns
    assert "FINISHED" in bpy.ops.building_pose.render_dataset()
    assert victim.is_file() and keep.stat().st_mtime_ns == mtime
    # a changed config in the same folder is refused with a clear error
    r.samples = 3
    with pytest.raises(RuntimeError, match="different dataset"):
        bpy.ops.building_pose.render_dataset()


def test_y_command_line_handler(ext, tmp_path):
    """`blender --command building_pose sample ...` runs this registered handler (headless.main)."""
    reg = __import__(PKG + ".registration", fromlist=["x"])
    assert reg._cli_handle is not None
    out = tmp_path / "poses.json"
    assert reg._cli(["sample", "--scene", "procedural:1", "--out", str(out), "--n", "4"]) == 0
    assert len(json.loads(out.read_text())["cam_from_world"]) == 4
    assert reg._cli(["render", "--scene", str(tmp_path / "missing.glb"), "--config", "x.json",
                     "--out", str(tmp_path / "o")]) == 1
    assert reg._cli(["no-such-command"]) == 2


def test_zz_disable_and_uninstall_leave_nothing(ext):
    bpy.ops.extensions.package_uninstall(repo_index=1 if bpy.context.preferences.extensions.repos[1].module
                                         == "user_default" else 0, pkg_id="building_pose")
    assert PKG not in bpy.context.preferences.addons
    assert not hasattr(bpy.types.Scene, "pose_tools")
    assert not hasattr(bpy.types, "POSE_PT_cameras")
    assert not hasattr(bpy.ops.building_pose, "sample_cameras") or not _op_exists("building_pose.sample_cameras")


def _op_exists(idname: str) -> bool:
    try:
        return bool(bpy.ops.building_pose.sample_cameras.get_rna_type())
    except KeyError:
        return False
