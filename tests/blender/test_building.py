"""The procedural building: deterministic per seed, sensible size, textured materials, collections."""
import bpy
import numpy as np
import pytest

from pose_addon.blender import building, scene_io


def _geometry(info):
    me = bpy.data.objects[info["objects"][0]].data
    co = np.empty(len(me.vertices) * 3)
    me.vertices.foreach_get("co", co)
    loops = np.empty(len(me.loops), dtype=np.int64)
    me.loops.foreach_get("vertex_index", loops)
    mats = np.empty(len(me.polygons), dtype=np.int64)
    me.polygons.foreach_get("material_index", mats)
    uv = np.empty(len(me.loops) * 2)
    me.uv_layers[building.WORLD_UV].data.foreach_get("uv", uv)
    return co.reshape(-1, 3), loops, mats, uv


def _build(seed):
    scene_io.reset_scene()
    return building.build_procedural_building(seed)


def test_same_seed_same_geometry():
    a_info = _build(7)
    a = _geometry(a_info)
    b_info = _build(7)
    b = _geometry(b_info)
    assert a_info == b_info
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_different_seeds_differ():
    a = _geometry(_build(1))
    b = _geometry(_build(2))
    assert a[0].shape != b[0].shape or not np.allclose(a[0], b[0])


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_size_parts_and_boxes(seed):
    info = _build(seed)
    lo, hi = np.array(info["bounds"])
    extent = hi - lo
    assert lo[2] == pytest.approx(0.0, abs=1e-6)
    assert 14.0 <= max(extent[0], extent[1]) <= 17.5
    assert 9.0 <= min(extent[0], extent[1]) <= 13.5
    assert 3 <= info["params"]["storeys"] <= 5
    assert info["params"]["roof"] in ("gable", "hip")
    assert lo[2] < info["target"][2] < hi[2]
    # the sampler's boxes cover the building's body (cameras never start inside it)
    boxes = np.array(info["boxes"])
    assert boxes.shape[1:] == (2, 3)
    from pose_addon.core.sampling import aabb_inside_fn

    assert aabb_inside_fn(boxes, margin=0.0)(np.array([info["target"]]))[0]
    ground = bpy.data.objects[info["ground"]]
    gco = np.array([v.co[:] for v in ground.data.vertices])
    assert np.ptp(gco[:, 0]) == pytest.approx(building.GROUND_SIZE) and np.all(gco[:, 2] == 0)


def test_collections_and_materials():
    info = _build(0)
    obj = bpy.data.objects[info["objects"][0]]
    assert obj.name in bpy.data.collections[building.BUILDING_COLLECTION].objects
    assert info["ground"] in bpy.data.collections[building.GROUND_COLLECTION].objects
    kinds = {m["building_pose_material"] for m in obj.data.materials}
    assert {"brick", "plaster", "stone", "roof", "trim", "glass", "door"} <= kinds
    ground_mat = bpy.data.objects[info["ground"]].data.materials[0]
    assert ground_mat["building_pose_material"] == "ground"
    used = {obj.data.materials[p.material_index]["building_pose_material"] for p in obj.data.polygons}
    assert {"roof", "glass", "trim", "stone"} <= used
    for m in list(obj.data.materials) + [ground_mat]:
        types = {n.type for n in m.node_tree.nodes}
        if m["building_pose_material"] != "glass":
            assert types & {"TEX_NOISE", "TEX_BRICK", "TEX_VORONOI", "TEX_WAVE"}, m.name
            uvn = [n for n in m.node_tree.nodes if n.type == "UVMAP"]
            assert uvn and all(n.uv_map == building.WORLD_UV for n in uvn)
