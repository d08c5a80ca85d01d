"""A Y-up, off-centre, vertex-coloured PLY: imported upright, its whole transform recorded both ways, its colours
shown through a material and kept in the baked scene.glb."""
import json
import struct

import bpy
import numpy as np
import pytest

from pose_addon.blender import scene_io
from pose_addon.core.model_frame import transform_points

LO, HI = np.array([100.0, -2.0, 40.0]), np.array([112.0, 7.0, 48.0])  # Y is up: 9 units tall


def write_ply(path, lo=LO, hi=HI):
    """A box as binary PLY with 8-bit vertex colours: red floor corners, white top corners (sRGB)."""
    v = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])], np.float32)
    faces = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    head = (b"ply\nformat binary_little_endian 1.0\nelement vertex 8\nproperty float x\nproperty float y\n"
            b"property float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\n"
            b"element face 6\nproperty list uchar int vertex_indices\nend_header\n")
    body = b""
    for p in v:
        col = (200, 30, 30) if p[1] == lo[1] else (240, 240, 240)
        body += struct.pack("<fffBBB", *p, *col)
    for f in faces:
        body += struct.pack("<B4i", 4, *f)
    path.write_bytes(head + body)
    return v


def test_y_up_off_centre_ply_round_trip(empty_scene, tmp_path):
    ply = tmp_path / "scan.ply"
    verts = write_ply(ply)
    info = scene_io.load_scene(str(ply), up_axis="Y", ground="none")
    assert info["up_axis"] == "Y"
    world = scene_io.building_vertices()
    lo, hi = world.min(0), world.max(0)
    assert np.isclose(hi[2] - lo[2], 9.0 * info["scale"], rtol=1e-5) and abs(lo[2]) < 1e-5  # Y became up
    assert np.allclose([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2], 0, atol=1e-5)  # centred
    assert np.isclose((hi - lo).max(), 15.0, rtol=1e-5)
    back = transform_points(np.array(info["model_from_world"]), world)
    d = np.abs(back[:, None, :] - verts[None].astype(float)).sum(-1).min(1)
    assert d.max() < 1e-3  # every vertex returns to where the file has it
    # the default for PLY is Z up: the same file stands on its side
    info_z = scene_io.load_scene(str(ply), ground="none")
    w = scene_io.building_vertices()
    assert info_z["up_axis"] == "Z" and np.isclose(np.ptp(w[:, 2]), 8.0 * info_z["scale"], rtol=1e-5)
    with pytest.raises(ValueError, match="unknown up axis"):
        scene_io.load_scene(str(ply), up_axis="W")


def test_vertex_colours_get_a_material_and_survive_the_bake(empty_scene, tmp_path):
    ply = tmp_path / "scan.ply"
    write_ply(ply)
    scene_io.load_scene(str(ply), up_axis="Y", ground="none")
    obj = scene_io.building_objects()[0]
    mat = obj.data.materials[0]
    node = next(n for n in mat.node_tree.nodes if n.type == "VERTEX_COLOR")
    assert node.outputs["Color"].links[0].to_socket.name == "Base Color"
    attr = obj.data.color_attributes[node.layer_name]
    rgb = np.array([attr.data[i].color[:3] for i in range(len(attr.data))])  # what the shader reads: linear

    def linear(byte):  # the sRGB transfer function, inverted
        c = byte / 255.0
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    red = rgb[np.argmax(rgb[:, 0] - rgb[:, 1])]
    assert red == pytest.approx([linear(200), linear(30), linear(30)], abs=0.01)  # not the raw 0.78, 0.12
    out = tmp_path / "scene.glb"
    scene_io.export_scene_gltf(out, bake_resolution=64, samples=1, ground=[])
    img = next(i for i in bpy.data.images if i.name.endswith("_baked")) if any(
        i.name.endswith("_baked") for i in bpy.data.images) else None
    data = out.read_bytes()
    length = struct.unpack("<I", data[12:16])[0]
    gltf = json.loads(data[20:20 + length])
    assert gltf["images"] and gltf["materials"][0]["pbrMetallicRoughness"].get("baseColorTexture") is not None
    assert img is None  # the bake's images are cleaned up
    bin_off = 20 + length
    png = gltf["bufferViews"][gltf["images"][0]["bufferView"]]
    blob = data[bin_off + 8 + png.get("byteOffset", 0): bin_off + 8 + png.get("byteOffset", 0) + png["byteLength"]]
    path = tmp_path / "baked.png"
    path.write_bytes(blob)
    im = bpy.data.images.load(str(path))
    px = np.array(im.pixels[:]).reshape(-1, 4)[:, :3]
    assert (px[:, 0] - px[:, 2] > 0.3).mean() > 0.05  # the red of the vertex colours is in the texture


def test_headless_cameras_command_writes_the_users_cameras_in_the_model_frame(empty_scene, tmp_path, capsys):
    """Cameras placed around a glTF model as Blender's importer placed it (Y-up turned Z-up) come out in the
    file's own Y-up frame."""
    from pose_addon import headless
    from pose_addon.blender import camera as bcam
    from pose_addon.core.model_frame import rebase_pose, up_axis_rotation
    from pose_addon.core.sampling import look_at

    T_blend = look_at(np.array([12.0, -20.0, 1.7]), np.array([0.0, 0.0, 4.0]))
    cam = bpy.data.objects.new("MyPhoto", bpy.data.cameras.new("MyPhoto"))
    bpy.context.scene.collection.objects.link(cam)
    bcam.set_cam_from_world(cam, T_blend)
    blend = tmp_path / "placed.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    out = tmp_path / "cams.json"
    assert headless.main(["cameras", "--blend", str(blend), "--model", "house.glb", "--out", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["names"] == ["MyPhoto"] and d["format"] == "building-pose-cameras"
    T_model = np.array(d["cam_from_model"][0])
    A = np.eye(4)
    A[:3, :3] = up_axis_rotation("Y")  # blend_from_model for a glTF file
    assert np.allclose(rebase_pose(T_model, np.linalg.inv(A)), T_blend, atol=1e-5)
    centre = -T_model[:3, :3].T @ T_model[:3, 3]
    assert np.isclose(centre[1], 1.7, atol=1e-5)  # eye height is along the file's +Y
    assert headless.main(["cameras", "--blend", str(tmp_path / "none.blend"), "--model", "a.ply", "--out",
                          str(out)]) == 1
