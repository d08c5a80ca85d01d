"""The extension as an artist installs it: built zip, fresh profile. Every class the package defines is
registered (from one list), every panel draws, operators live in ``bpy.ops.building_pose`` (none in
``bpy.ops.pose``), every operator and property explains itself, angles and distances carry units, File > Import /
Export list the camera formats, and runtime state is not saved into the .blend."""
import importlib
import inspect
import pkgutil

import bpy
import pytest

PKG = "bl_ext.user_default.building_pose"
BPY_BASES = (bpy.types.Panel, bpy.types.Operator, bpy.types.UIList, bpy.types.PropertyGroup, bpy.types.Menu,
             bpy.types.AddonPreferences)


@pytest.fixture(scope="module")
def ext(installed_extension):
    return installed_extension


def package_classes(pkg) -> list:
    """Every Blender class (panel, operator, list, menu, property group, preferences) defined in the package."""
    found = []
    for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        mod = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(mod, inspect.isclass):
            if cls.__module__ == mod.__name__ and issubclass(cls, BPY_BASES) and cls not in BPY_BASES:
                found.append(cls)
    return found


def unregistered(pkg) -> list[str]:
    return [c.__name__ for c in package_classes(pkg) if not c.is_registered]


def test_every_class_of_the_package_is_registered_from_one_list(ext):
    reg = importlib.import_module(PKG + ".registration")
    classes = package_classes(ext)
    assert len(classes) >= 50
    assert unregistered(ext) == []
    assert set(classes) == set(reg.CLASSES)
    for name in ("POSE_PT_models", "POSE_UL_models", "POSE_PT_cameras", "POSE_PT_dataset", "POSE_PT_keypoints",
                 "POSE_PT_annotate", "POSE_PT_estimates", "POSE_PT_worker"):
        assert hasattr(bpy.types, name), name


def test_a_missing_class_is_noticed(ext):
    ui = importlib.import_module(PKG + ".ui")
    bpy.utils.unregister_class(ui.POSE_PT_models)
    try:
        assert unregistered(ext) == ["POSE_PT_models"]
    finally:
        bpy.utils.register_class(ui.POSE_PT_models)
    assert unregistered(ext) == []


def test_operators_live_in_their_own_namespace(ext):
    reg = importlib.import_module(PKG + ".registration")
    ops = [c for c in reg.CLASSES if issubclass(c, bpy.types.Operator)]
    assert ops and all(c.bl_idname.startswith("building_pose.") for c in ops)
    ours = {c.bl_idname.split(".", 1)[1] for c in ops}
    assert not ours & set(dir(bpy.ops.pose)), "an operator of the extension is in bpy.ops.pose"
    for name in ours:
        assert getattr(bpy.ops.building_pose, name).get_rna_type() is not None
    panels = [c for c in reg.CLASSES if issubclass(c, bpy.types.Panel)]
    assert {p.bl_category for p in panels} == {"Building Pose"}


def _clean(text: str) -> bool:
    return bool(text.strip()) and "\n" not in text and "  " not in text and text == text.strip()


def test_every_operator_and_property_has_a_description(ext):
    reg = importlib.import_module(PKG + ".registration")
    missing = []
    for cls in reg.CLASSES:
        if issubclass(cls, bpy.types.Operator):
            rna = getattr(bpy.ops.building_pose, cls.bl_idname.split(".", 1)[1]).get_rna_type()
            if not _clean(rna.description):
                missing.append(f"{cls.bl_idname}: {rna.description!r}")
            props = rna.properties
        elif issubclass(cls, (bpy.types.PropertyGroup, bpy.types.AddonPreferences)):
            props = cls.bl_rna.properties
        else:
            continue
        for p in props:
            if p.identifier not in ("rna_type", "bl_idname") and not _clean(p.description):
                missing.append(f"{cls.__name__}.{p.identifier}: {p.description!r}")
    assert missing == []


def test_angles_and_distances_carry_units(ext):
    s = bpy.context.scene.pose_tools
    groups = [s.sampling, s.render]
    checked = 0
    for g in groups:
        for p in g.bl_rna.properties:
            if p.type != "FLOAT":
                continue
            words = p.name.lower()
            if any(w in words for w in ("elevation", "azimuth", "roll")):
                assert p.subtype == "ANGLE" and p.unit == "ROTATION", p.identifier
                checked += 1
            if any(w in words for w in ("distance", "jitter")) and "colour" not in words:
                assert p.subtype == "DISTANCE" and p.unit == "LENGTH", p.identifier
                checked += 1
    assert checked >= 9
    assert s.render.bl_rna.properties["lens"].unit == "CAMERA"


class _Layout:
    """Stands in for ``UILayout``: checks that every drawn property and operator exists."""

    def __init__(self, seen):
        self.seen = seen

    def __getattr__(self, name):
        if name in ("column", "row", "box", "grid_flow", "split", "column_flow"):
            return lambda *a, **kw: self
        if name in ("label", "separator", "progress"):
            return lambda *a, **kw: None
        raise AttributeError(name)

    def prop(self, data, name, **kw):
        assert name in data.bl_rna.properties, f"{type(data).__name__} has no property {name}"
        self.seen.append(("prop", name))

    def operator(self, idname, **kw):
        mod, name = idname.split(".")
        rna = getattr(getattr(bpy.ops, mod), name).get_rna_type()
        self.seen.append(("op", idname))
        props = {p.identifier for p in rna.properties}

        class _Props:
            def __setattr__(self, key, value):
                assert key in props, f"{idname} has no property {key}"

        return _Props()

    def template_list(self, list_type, *a, **kw):
        assert hasattr(bpy.types, list_type), f"list {list_type} is not registered"


def test_every_panel_draws(ext):
    reg = importlib.import_module(PKG + ".registration")
    importlib.import_module(PKG + ".blender.scene_io").load_scene("procedural:2")
    for cls in [c for c in reg.CLASSES if issubclass(c, bpy.types.Panel)]:
        seen = []
        cls.draw(type("_P", (), {"layout": _Layout(seen)})(), bpy.context)  # a stand-in panel with our layout
        assert seen, f"{cls.__name__} draws nothing"
    prefs = bpy.context.preferences.addons[PKG].preferences
    seen = []
    importlib.import_module(PKG + ".prefs").draw_environment(_Layout(seen), bpy.context, prefs)
    assert ("op", "building_pose.create_environment") in seen and ("op", "building_pose.check_environment") in seen


def test_file_menus_list_the_camera_formats(ext):
    io = importlib.import_module(PKG + ".ops_io")
    imports = bpy.types.TOPBAR_MT_file_import._dyn_ui_initialize()
    exports = bpy.types.TOPBAR_MT_file_export._dyn_ui_initialize()
    assert io._menu_import in imports and io._menu_export in exports
    seen = []
    io._menu_import(type("_M", (), {"layout": _Layout(seen)})(), bpy.context)
    io._menu_export(type("_M", (), {"layout": _Layout(seen)})(), bpy.context)
    assert {s[1] for s in seen} == {"building_pose.import_colmap", "building_pose.import_nerfstudio",
                                    "building_pose.import_localize", "building_pose.export_colmap",
                                    "building_pose.export_nerfstudio"}


def test_blend_relative_paths_in_an_unsaved_file_are_refused(ext):
    assert not bpy.data.filepath
    r = bpy.context.scene.pose_tools.render
    r.output_dir = "//pose_dataset"
    with pytest.raises(RuntimeError, match="not saved yet"):
        bpy.ops.building_pose.render_dataset()
    with pytest.raises(RuntimeError, match="not saved yet"):
        bpy.ops.building_pose.import_keypoints(filepath="//keypoints.json")


def test_z_runtime_state_is_not_saved(ext, tmp_path):
    assert "running" not in bpy.context.scene.pose_tools.render.bl_rna.properties
    rt = bpy.context.window_manager.building_pose
    rt.render_running, rt.render_status, rt.models_job = True, "Rendering 3/10", "j7"
    blend = tmp_path / "saved.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    rt.render_running = False
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    rt = bpy.context.window_manager.building_pose
    assert (rt.render_running, rt.render_status, rt.models_job) == (False, "", "")
    assert bpy.ops.building_pose.render_dataset.poll()


def test_zz_uninstall_leaves_nothing(ext):
    io = importlib.import_module(PKG + ".ops_io")
    bpy.ops.extensions.package_uninstall(repo_index=1 if bpy.context.preferences.extensions.repos[1].module
                                         == "user_default" else 0, pkg_id="building_pose")
    assert PKG not in bpy.context.preferences.addons
    assert not hasattr(bpy.types.WindowManager, "building_pose")
    assert not hasattr(bpy.types, "POSE_PT_models")
    assert io._menu_import not in bpy.types.TOPBAR_MT_file_import._dyn_ui_initialize()
