"""Rendering a dataset leaves the artist's scene exactly as it was: settings (engine, colour management,
resolution, passes, Cycles), objects and their selection, data blocks, active camera and world, after a finished,
a cancelled and a failed render. The extension is installed from the built zip in a fresh profile."""
import importlib
import math

import bpy
import numpy as np
import pytest

PKG = "bl_ext.user_default.building_pose"
DATA = ("objects", "meshes", "materials", "images", "cameras", "lights", "worlds", "scenes", "collections",
        "node_groups", "textures", "actions")
#: values that legitimately change while nothing is edited
VOLATILE = {"is_evaluated", "original", "session_uid", "is_dirty", "is_runtime_data", "preview", "depsgraph"}


def rna_values(struct, depth: int = 0) -> dict:
    """Every readable property of an RNA struct: plain values as they are, data blocks by name, nested structs
    and collections down to a few levels."""
    out = {}
    for p in struct.bl_rna.properties:
        k = p.identifier
        if k == "rna_type" or k in VOLATILE:
            continue
        try:
            v = getattr(struct, k)
        except (AttributeError, RuntimeError, TypeError):
            continue
        if p.type in ("BOOLEAN", "INT", "FLOAT"):
            out[k] = tuple(np.asarray(v, dtype=float).ravel().tolist()) if getattr(p, "is_array", False) else v
        elif p.type == "ENUM":
            out[k] = tuple(sorted(v)) if p.is_enum_flag else v
        elif p.type == "STRING":
            out[k] = v
        elif p.type == "POINTER":
            if v is None:
                out[k] = None
            elif isinstance(v, bpy.types.ID):
                out[k] = ("ID", type(v).__name__, v.name)
            elif depth < 3:
                out[k] = rna_values(v, depth + 1)
        elif p.type == "COLLECTION" and depth < 2:
            out[k] = [("ID", x.name) if isinstance(x, bpy.types.ID) else rna_values(x, depth + 1) for x in v][:64]
    return out


def snapshot() -> dict:
    scene = bpy.context.scene
    vl = bpy.context.view_layer
    world = scene.world
    return {
        "scene": rna_values(scene),
        "cycles": rna_values(scene.cycles),
        "view_layers": [rna_values(v) for v in scene.view_layers],
        "objects": {o.name: (o.type, tuple(np.array(o.matrix_world).ravel().round(9)), o.select_get(), o.hide_get(),
                             o.hide_render, o.pass_index, o.parent.name if o.parent else None,
                             sorted(c.name for c in o.users_collection), o.data.name if o.data else None, o.users)
                    for o in bpy.data.objects},
        "data": {k: sorted(i.name for i in getattr(bpy.data, k)) for k in DATA},
        "users": {k: sorted((i.name, i.users) for i in getattr(bpy.data, k)) for k in DATA},
        "active": vl.objects.active.name if vl.objects.active else None,
        "camera": scene.camera.name if scene.camera else None,
        "world": (world.name, [(n.name, n.bl_idname, [tuple(np.ravel(s.default_value)) if hasattr(s, "default_value")
                                                      and not isinstance(s.default_value, (str, bpy.types.ID))
                                                      else None for s in n.inputs])
                               for n in world.node_tree.nodes]) if world else None,
        "scene_name": scene.name,
    }


def flatten(value, prefix: str = "") -> dict:
    """``{"a.b[2].c": leaf}`` of nested dicts and lists."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list):
        out = {f"{prefix}#len": len(value)}
        for i, v in enumerate(value):
            out.update(flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def assert_same(before: dict, after: dict, expected: str = "") -> None:
    """No value differs, except under the ``expected`` path prefix."""
    a, b = flatten(before), flatten(after)
    diff = {k: (a.get(k, "<missing>"), b.get(k, "<missing>")) for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k) and not (expected and k.startswith(expected))}
    assert not diff, f"{len(diff)} value(s) changed: {str(diff)[:3000]}"


@pytest.fixture(scope="module")
def ext(installed_extension):
    return installed_extension


@pytest.fixture(scope="module")
def user_scene(ext):
    """A building with an artist's own, non-default settings, lamp, camera, world and selection."""
    importlib.import_module(PKG + ".blender.scene_io").load_scene("procedural:2")
    scene = bpy.context.scene
    r = scene.render
    r.engine = "BLENDER_EEVEE"
    r.resolution_x, r.resolution_y, r.resolution_percentage = 1234, 567, 50
    r.film_transparent = True
    r.use_compositing = True
    scene.view_settings.view_transform = "Filmic" if "Filmic" in [i.identifier for i in
        scene.view_settings.bl_rna.properties["view_transform"].enum_items] else "Khronos PBR Neutral"
    scene.view_settings.exposure = 0.7
    scene.cycles.samples = 77
    scene.cycles.device = "CPU"
    scene.cycles.use_denoising = True
    scene.frame_current = 5
    scene.view_layers[0].use_pass_z = False
    scene.view_layers[0].use_pass_normal = True
    cam = bpy.data.objects.new("ArtistCamera", bpy.data.cameras.new("ArtistCamera"))
    scene.collection.objects.link(cam)
    cam.location = (3.0, -40.0, 6.0)
    scene.camera = cam
    lamp = bpy.data.objects.new("ArtistLamp", bpy.data.lights.new("ArtistLamp", "POINT"))
    scene.collection.objects.link(lamp)
    world = bpy.data.worlds.new("ArtistWorld")
    scene.world = world
    bg = next(n for n in world.node_tree.nodes if n.type == "BACKGROUND")
    bg.inputs["Color"].default_value = (0.2, 0.1, 0.05, 1.0)
    bg.inputs["Strength"].default_value = 2.5
    building = next(o for o in scene.objects if o.name.startswith("Building"))
    building.pass_index = 7
    bpy.context.view_layer.update()
    for o in bpy.context.view_layer.objects:
        if o is not None:
            o.select_set(False)
    building.select_set(True)
    bpy.context.view_layer.objects.active = building
    s = scene.pose_tools
    s.sampling.count, s.sampling.seed = 2, 3
    rs = s.render
    rs.width, rs.height, rs.samples, rs.n_train, rs.n_val, rs.n_test = 32, 24, 1, 2, 1, 0
    rs.masks, rs.normals, rs.bake_resolution = True, True, 64
    bpy.context.view_layer.update()
    return scene


def test_a_finished_render_leaves_the_scene_as_it_was(user_scene, tmp_path):
    user_scene.pose_tools.render.output_dir = str(tmp_path / "ds")
    before = snapshot()
    assert "FINISHED" in bpy.ops.building_pose.render_dataset()
    assert_same(before, snapshot())
    ds = importlib.import_module(PKG + ".core.dataset").Dataset.load(tmp_path / "ds")
    assert ds.complete and len(ds.frames) == 3 and (tmp_path / "ds" / "scene.glb").is_file()
    img = importlib.import_module(PKG + ".blender.render")._read_png(str(tmp_path / "ds" / ds.frames[0].image))
    assert img.shape == (24, 32, 3) and img.std() > 5  # the building, lit by the dataset's own sun and sky
    depth = ds.read_depth(ds.frames[0])
    assert (depth > 0).mean() > 0.2
    assert ds.manifest["render"]["engine"] == "CYCLES"
    # the Dataset panel's export buttons
    assert "FINISHED" in bpy.ops.building_pose.export_dataset(format="COLMAP")
    assert "FINISHED" in bpy.ops.building_pose.export_dataset(format="NERFSTUDIO")
    import json

    frames = json.loads((tmp_path / "ds" / "transforms.json").read_text())["frames"]
    assert len(frames) == 3 and all((tmp_path / "ds" / f["depth_file_path"]).is_file() for f in frames)
    assert len(importlib.import_module(PKG + ".core.interchange").read_colmap(tmp_path / "ds" / "colmap")) == 3


def test_a_cancelled_render_leaves_the_scene_as_it_was(user_scene, tmp_path):
    """What Esc does in the modal operator: the job stops after a frame, is finished and closed."""
    ops_dataset = importlib.import_module(PKG + ".ops_dataset")
    user_scene.pose_tools.render.output_dir = str(tmp_path / "ds")
    before = snapshot()
    job = ops_dataset.DatasetJob(bpy.context)
    assert job.step() is not None and job.done == 1 < job.total
    assert bpy.data.scenes.get(ops_dataset.TEMP_SCENE) is not None
    job.finish()
    job.close()
    assert_same(before, snapshot())
    assert bpy.context.scene == user_scene


def test_a_failed_render_leaves_the_scene_as_it_was(user_scene, tmp_path):
    r = user_scene.pose_tools.render
    r.output_dir = str(tmp_path / "ds")
    (tmp_path / "no_maps").mkdir()
    r.hdri_dir = str(tmp_path / "no_maps")  # the first frame fails: the folder holds no environment map
    before = snapshot()
    try:
        with pytest.raises(RuntimeError, match="no .hdr/.exr"):
            bpy.ops.building_pose.render_dataset()
    finally:
        assert_same(before, snapshot())
        r.hdri_dir = ""
    assert not bpy.context.window_manager.building_pose.render_running
    # a folder holding another dataset (the failed one, 0 frames) is refused before anything is touched
    r.samples = 2
    before = snapshot()
    with pytest.raises(RuntimeError, match="different dataset"):
        bpy.ops.building_pose.render_dataset()
    assert_same(before, snapshot())


def test_operators_that_change_the_scene_on_purpose_support_undo(ext):
    ops = {c.bl_idname.split(".")[1]: c for c in importlib.import_module(PKG + ".registration").CLASSES
           if issubclass(c, bpy.types.Operator)}
    for name in ("sample_cameras", "clear_cameras", "add_photo_camera", "solve_annotation", "place_keypoint",
                 "suggest_keypoints", "import_keypoints", "clear_estimates", "import_colmap", "import_nerfstudio",
                 "import_localize", "fit_sampling", "estimate_camera"):
        assert "UNDO" in ops[name].bl_options, name


def test_sample_cameras_changes_only_what_it_says(user_scene, capfd):
    s = user_scene.pose_tools
    s.sampling.output = "POSES"
    before = snapshot()
    assert "FINISHED" in bpy.ops.building_pose.sample_cameras()
    assert len(s.poses) == 2
    assert_same(before, snapshot(), expected="scene.pose_tools.poses")  # no setting, object or data block
    assert "FINISHED" in bpy.ops.building_pose.clear_cameras()
    s.sampling.output = "CAMERAS"
    capfd.readouterr()
    assert "FINISHED" in bpy.ops.building_pose.sample_cameras()
    r = user_scene.render
    assert (r.resolution_x, r.resolution_y, r.resolution_percentage) == (32, 24, 100)
    assert "scene resolution set to 32x24 (was 1234x567 at 50%)" in capfd.readouterr().out  # the report says so
    assert "FINISHED" in bpy.ops.building_pose.clear_cameras()


def test_placement_presets_scale_with_the_model(user_scene):
    s = user_scene.pose_tools.sampling
    props = importlib.import_module(PKG + ".props")
    lo, hi = props.model_bounds(bpy.context)
    longest = float(np.max(hi - lo))
    cfg = s.to_config((lo, hi))
    assert cfg.distance == pytest.approx((25.0 * longest / 15.0, 40.0 * longest / 15.0))
    small = s.to_config((lo / 10, hi / 10))
    assert small.distance == pytest.approx((cfg.distance[0] / 10, cfg.distance[1] / 10))
    assert "FINISHED" in bpy.ops.building_pose.fit_sampling(preset="orbit")
    assert s.placement == "custom" and s.distance_min == pytest.approx(cfg.distance[0])
    assert s.elevation_min == pytest.approx(math.radians(5.0)) and s.to_config().elevation_deg == pytest.approx(
        (5.0, 35.0))
    s.placement = "orbit"


def test_zz_the_snapshot_notices_what_a_render_setup_changes(user_scene):
    """The comparison above can fail: setting up a render on the artist's scene itself is caught."""
    render = importlib.import_module(PKG + ".blender.render")
    before = snapshot()
    config = user_scene.pose_tools.render.to_config(user_scene.pose_tools.sampling,
                                                    importlib.import_module(PKG + ".props").model_bounds(bpy.context))
    render.setup_render(config, user_scene)
    with pytest.raises(AssertionError, match="render.engine|resolution_x|camera"):
        assert_same(before, snapshot())
