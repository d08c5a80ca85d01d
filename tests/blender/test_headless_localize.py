"""The .blend of the headless ``localize --blend``: the model imported as File > Import does and moved into the
chosen world, and the cameras of ``poses.json`` in that same world, for a Z-up PLY and a Y-up glTF."""
import base64
import json

import bpy
import numpy as np
import pytest

import pose_addon
from pose_addon.blender.scene_io import reset_scene
from pose_addon.core.interchange import model_to_blender_import
from pose_addon.core.model_frame import transform_points
from pose_addon.core.sampling import look_at
from pose_addon.headless import import_model

LO, HI = np.array([100.0, 3.0, -40.0]), np.array([110.0, 11.0, -34.0])  # the box in the file's coordinates
CORNERS = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], float) * (HI - LO) + LO
TRIS = [t for a, b, c, d in [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
        for t in ((a, b, c), (a, c, d))]


def write_ply(path):
    lines = ["ply", "format ascii 1.0", "element vertex 8", "property float x", "property float y",
             "property float z", "element face 12", "property list uchar int vertex_indices", "end_header"]
    lines += [" ".join(f"{c:g}" for c in p) for p in CORNERS] + [f"3 {a} {b} {c}" for a, b, c in TRIS]
    path.write_text("\n".join(lines) + "\n")


def write_gltf(path):
    """The same box as a glTF 2.0 file (one mesh, buffer embedded as a data URI)."""
    pos = CORNERS.astype("<f4").tobytes()
    idx = np.array(TRIS, "<u2").tobytes()
    buf = pos + idx
    doc = {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0, "name": "box"}],
           "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1}]}],
           "buffers": [{"byteLength": len(buf),
                        "uri": "data:application/octet-stream;base64," + base64.b64encode(buf).decode()}],
           "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": len(pos)},
                           {"buffer": 0, "byteOffset": len(pos), "byteLength": len(idx)}],
           "accessors": [{"bufferView": 0, "componentType": 5126, "count": 8, "type": "VEC3",
                          "min": LO.tolist(), "max": HI.tolist()},
                         {"bufferView": 1, "componentType": 5123, "count": 36, "type": "SCALAR"}]}
    path.write_text(json.dumps(doc))


@pytest.fixture(scope="module")
def registered():
    pose_addon.register()
    yield
    pose_addon.unregister()


def poses_json(tmp_path, model, T_model):
    """A localize result with one localized photo whose camera is ``T_model`` (cam_from_model, OpenCV axes)."""
    img = bpy.data.images.new("p", 32, 24)
    img.filepath_raw = str(tmp_path / "p.png")
    img.file_format = "PNG"
    img.save()
    world_from_model = np.diag([1.5, 1.5, 1.5, 1.0])
    world_from_model[:3, 3] = [-150.0, 20.0, 5.0]
    K = [[30.0, 0, 15.5], [0, 30.0, 11.5], [0, 0, 1]]
    doc = {"format": "building-pose-localize", "version": 1, "model": str(model), "method": "sift",
           "model_from_world": np.linalg.inv(world_from_model).tolist(), "intrinsics": "exif",
           "photos": [{"image": str(tmp_path / "p.png"), "stem": "p", "status": "ok", "reason": "", "width": 32,
                       "height": 24, "K": K, "dist": [], "cam_from_world": T_model.tolist(), "n_inliers": 80,
                       "inlier_ratio": 0.5, "confidence": 0.8, "time_s": 0.1}]}
    path = tmp_path / "poses.json"
    path.write_text(json.dumps(doc))
    return path, world_from_model


@pytest.mark.parametrize("fmt", ["ply", "gltf"])
@pytest.mark.parametrize("frame", ["import", "model", "render"])
def test_model_and_cameras_share_the_world(registered, tmp_path, fmt, frame):
    reset_scene()
    model = tmp_path / f"box.{fmt}"
    (write_ply if fmt == "ply" else write_gltf)(model)
    eye = (LO + HI) / 2 + np.array([0.0, 0.0, 30.0])  # in front of the box's +z face, in the file's frame
    path, world_from_model = poses_json(tmp_path, model, look_at(eye, (LO + HI) / 2, up=(0.0, 1.0, 0.0)))
    new = import_model(str(model), frame, path)
    assert [o.name for o in bpy.data.collections["Model"].objects] == [o.name for o in new]
    assert "FINISHED" in bpy.ops.building_pose.import_localize(filepath=str(path), frame=frame)
    frame_from_model = {"import": model_to_blender_import(str(model)), "model": np.eye(4),
                        "render": world_from_model}[frame]
    mesh = next(o for o in new if o.type == "MESH")
    got = np.array([mesh.matrix_world @ v.co for v in mesh.data.vertices])
    want = transform_points(frame_from_model, CORNERS)
    np.testing.assert_allclose(np.sort(got, axis=0), np.sort(want, axis=0), atol=1e-4)
    cam = next(o for o in bpy.data.objects if o.type == "CAMERA")
    np.testing.assert_allclose(np.array(cam.matrix_world.translation), transform_points(frame_from_model, eye[None])[0],
                               atol=1e-4)


def test_unknown_model_format_is_an_error(registered, tmp_path):
    (tmp_path / "m.stl").write_text("solid x\nendsolid x\n")
    with pytest.raises(ValueError, match="glb, .gltf, .obj or .ply"):
        import_model(str(tmp_path / "m.stl"), "import", tmp_path / "poses.json")
