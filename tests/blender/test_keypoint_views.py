"""How many views see each keypoint: Count Views over sampled cameras (ray cast) and over a rendered dataset
(depth test), stored on the list entries, counted again after Suggest Keypoints, shown in the list row."""
import bpy
import numpy as np
import pytest
from mathutils import Vector

import pose_addon
from pose_addon.blender import camera as bcam
from pose_addon.blender import scene_io
from pose_addon.core.cameras import Intrinsics
from pose_addon.core.dataset import Dataset
from pose_addon.core.sampling import look_at
from pose_addon.ops_cameras import clear_sampled
from pose_addon.ops_keypoints import add_keypoint, clear_keypoints
from pose_addon.ui import POSE_PT_keypoints, POSE_UL_keypoints, views_label

INTR = Intrinsics(160, 120, 130.0, 130.0, 79.5, 59.5)


@pytest.fixture(scope="module")
def scene():
    info = scene_io.load_scene("procedural:2")
    pose_addon.register()
    yield info
    pose_addon.unregister()


def kps():
    return bpy.context.scene.pose_tools.keypoints


def _camera(name: str, T: np.ndarray, intr: Intrinsics = INTR):
    col = bpy.data.collections.get("Sampled Cameras") or bpy.data.collections.new("Sampled Cameras")
    if col.name not in bpy.context.scene.collection.children:
        bpy.context.scene.collection.children.link(col)
    obj = bpy.data.objects.new(name, bpy.data.cameras.new(name))
    col.objects.link(obj)
    bcam.apply_intrinsics(obj, bpy.context.scene, intr)
    bcam.set_cam_from_world(obj, T)
    return obj


def _surface_point(eye, target):
    """The first surface a ray from ``eye`` towards ``target`` hits (world)."""
    dg = bpy.context.evaluated_depsgraph_get()
    d = np.asarray(target, float) - eye
    hit, loc, *_ = bpy.context.scene.ray_cast(dg, Vector(eye), Vector(d / np.linalg.norm(d)))
    assert hit
    return np.array(loc)


def test_no_views_is_a_clear_error_and_suggest_still_works(scene):
    clear_sampled(bpy.context)
    clear_keypoints(bpy.context)
    kps().suggest_count = 8
    assert "FINISHED" in bpy.ops.building_pose.suggest_keypoints()  # unsaved file: no dataset, no cameras
    assert len(kps().items) == 8 and all(it.views == -1 for it in kps().items)
    with pytest.raises(RuntimeError, match="Sample Cameras"):
        bpy.ops.building_pose.count_views()


def test_a_keypoint_behind_the_building_is_not_seen(scene):
    """One camera on each side: the facade point each camera looks at is seen by it alone; the frustum alone
    would count both cameras for both points."""
    clear_sampled(bpy.context)
    clear_keypoints(bpy.context)
    centre = np.array(scene["target"])
    front_eye, back_eye = centre + [0.0, -30.0, 2.0], centre + [0.0, 30.0, 2.0]
    front = _surface_point(front_eye, centre)
    back = _surface_point(back_eye, centre)
    assert back[1] - front[1] > 3.0  # two facades, the building between them
    _camera("sampled_front", look_at(front_eye, centre))
    _camera("sampled_back", look_at(back_eye, centre))
    add_keypoint(bpy.context, "front", front)
    add_keypoint(bpy.context, "back", back)
    kps().view_source = "CAMERAS"
    assert "FINISHED" in bpy.ops.building_pose.count_views()
    assert [it.views for it in kps().items] == [1, 1]
    assert kps().views_total == 2 and kps().views_source == "2 sampled cameras"
    # only the front camera: the back point is seen by none
    bpy.data.objects.remove(bpy.data.objects["sampled_back"], do_unlink=True)
    assert "FINISHED" in bpy.ops.building_pose.count_views()
    assert [it.views for it in kps().items] == [1, 0]
    assert views_label(0, 1, 0.15) == ("0 views", True)
    assert views_label(1, 1, 0.15) == ("1 view", False)
    assert views_label(12, 100, 0.15) == ("12 views", True)  # 15 of 100 needed
    # what the list rows and the panel show
    rec = _Recorder()
    for i, item in enumerate(kps().items):
        POSE_UL_keypoints.draw_item(None, bpy.context, rec, kps(), item, 0, kps(), "active_index", i)
    assert ("1 view", "HIDE_OFF") in rec.labels and ("0 views", "ERROR") in rec.labels
    rec = _Recorder()
    POSE_PT_keypoints.draw(type("_P", (), {"layout": rec})(), bpy.context)
    assert ("1 sampled camera: 1 keypoint seen by fewer than 1", "ERROR") in rec.labels, rec.labels


class _Recorder:
    """Stands in for ``UILayout``: records the labels drawn."""

    def __init__(self):
        self.labels = []

    def __getattr__(self, name):
        if name in ("row", "column", "box"):
            return lambda *a, **kw: self
        return lambda *a, **kw: type("_Props", (), {})()

    def label(self, text="", icon="NONE", **kw):
        self.labels.append((text, icon))


def test_sampled_cameras_pose_list_and_dataset_agree(scene, tmp_path):
    s = bpy.context.scene.pose_tools
    clear_keypoints(bpy.context)
    clear_sampled(bpy.context)
    s.sampling.placement, s.sampling.count, s.sampling.seed, s.sampling.output = "orbit", 10, 3, "CAMERAS"
    s.render.width, s.render.height, s.render.samples, s.render.engine = 320, 240, 1, "CYCLES"
    assert "FINISHED" in bpy.ops.building_pose.sample_cameras()
    kps().suggest_count, kps().view_source = 12, "AUTO"
    assert "FINISHED" in bpy.ops.building_pose.suggest_keypoints()  # counted right after the suggestion
    cams = [it.views for it in kps().items]
    assert kps().views_source == "10 sampled cameras"
    assert all(2 <= v <= 10 for v in cams) and min(cams) < 10  # 15% of 10 views see each; some corners hide
    # the same cameras as a pose list
    s.sampling.output = "POSES"
    assert "FINISHED" in bpy.ops.building_pose.sample_cameras()
    assert "FINISHED" in bpy.ops.building_pose.count_views()
    assert [it.views for it in kps().items] == cams
    # a dataset rendered from the same placement: its depth decides
    s.render.output_dir = str(tmp_path / "ds")
    s.render.n_train, s.render.n_val, s.render.n_test, s.render.bake_resolution = 10, 0, 0, 64
    assert "FINISHED" in bpy.ops.building_pose.render_dataset()
    ds = Dataset.load(tmp_path / "ds")
    refs = ds.reference_frames()
    assert len(refs) == 10
    assert "FINISHED" in bpy.ops.building_pose.count_views()  # AUTO: the dataset wins
    assert kps().views_source == "10 reference views of ds"
    depth_counts = np.array([it.views for it in kps().items])
    # camera objects at the dataset's poses, counted by ray casting, agree with the depth test
    clear_sampled(bpy.context)
    for f in refs:
        _camera(f"sampled_{f.id}", f.cam_from_world, f.intrinsics)
    kps().view_source = "CAMERAS"
    assert "FINISHED" in bpy.ops.building_pose.count_views()
    ray_counts = np.array([it.views for it in kps().items])
    # the same rule on a depth map: pixel centres and the 3x3 window (silhouette corners) tip a few grazing
    # (keypoint, view) pairs towards seen
    pairs = len(refs) * len(ray_counts)
    assert np.abs(depth_counts - ray_counts).sum() <= 0.1 * pairs, (depth_counts, ray_counts)
    assert (depth_counts >= ray_counts - 1).all(), (depth_counts, ray_counts)
    assert max(ray_counts) > 0 and min(ray_counts) < 10
    # the dataset no longer matches the scene (the building moved): refused, or skipped by Auto
    from pose_addon.scene_utils import target_objects

    moved = target_objects(bpy.context)
    for o in moved:
        o.location.x += 5.0
    bpy.context.view_layer.update()
    kps().view_source = "DATASET"
    with pytest.raises(RuntimeError, match="another model or world"):
        bpy.ops.building_pose.count_views()
    kps().view_source = "AUTO"
    assert "FINISHED" in bpy.ops.building_pose.count_views()
    assert kps().views_source == "10 sampled cameras"
    for o in moved:
        o.location.x -= 5.0
    bpy.context.view_layer.update()
    # an unreadable manifest: Auto counts the cameras and says why, Dataset refuses naming the file
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text("{truncated")
    s.render.output_dir = str(bad)
    kps().view_source = "AUTO"
    assert "FINISHED" in bpy.ops.building_pose.count_views()
    assert kps().views_source == "10 sampled cameras"
    kps().view_source = "DATASET"
    with pytest.raises(RuntimeError, match="manifest.json"):
        bpy.ops.building_pose.count_views()
    s.render.output_dir = str(tmp_path / "nothing")
    kps().view_source = "DATASET"
    with pytest.raises(RuntimeError, match="holds no dataset"):
        bpy.ops.building_pose.count_views()


def test_suggestion_keeps_to_corners_the_cameras_see(scene):
    """Cameras on one side only: the suggestion keeps to corners they see; without cameras it spreads all round."""
    import math

    s = bpy.context.scene.pose_tools
    clear_keypoints(bpy.context)
    clear_sampled(bpy.context)
    s.render.output_dir = ""
    s.sampling.placement, s.sampling.count, s.sampling.seed, s.sampling.output = "orbit", 8, 0, "CAMERAS"
    s.sampling.azimuth_min, s.sampling.azimuth_max = 0.0, math.radians(60.0)
    kps().suggest_count, kps().view_source = 10, "AUTO"
    try:
        assert "FINISHED" in bpy.ops.building_pose.sample_cameras()
        assert "FINISHED" in bpy.ops.building_pose.suggest_keypoints()
        assert min(it.views for it in kps().items) >= 2  # 15% of 8, rounded up
        clear_keypoints(bpy.context)
        clear_sampled(bpy.context)
        assert "FINISHED" in bpy.ops.building_pose.suggest_keypoints()  # no views: corners all round
        assert all(it.views == -1 for it in kps().items)
        assert "FINISHED" in bpy.ops.building_pose.sample_cameras()
        assert "FINISHED" in bpy.ops.building_pose.count_views()
        assert min(it.views for it in kps().items) < 2
    finally:
        s.sampling.azimuth_min, s.sampling.azimuth_max = 0.0, math.radians(360.0)
