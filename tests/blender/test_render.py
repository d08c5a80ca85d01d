"""Dataset rendering: manifest, depth against ray casts, resume after an interruption, errors, scene.glb."""
import json
import struct
from pathlib import Path

import bpy
import numpy as np
import pytest

from pose_addon import headless
from pose_addon.blender import render, scene_io
from pose_addon.core.dataset import Dataset
from pose_addon.core.render_config import RenderConfig, RenderGroup
from pose_addon.core.sampling import SamplerConfig

SCENE = "procedural:5"


def _config(**kw):
    d = dict(width=96, height=72, samples=4, engine="CYCLES",
             groups=[RenderGroup("reference", SamplerConfig(n=3, layout="fibonacci", seed=1)),
                     RenderGroup("query", SamplerConfig(n=2, layout="random", seed=2), noise_std=3.0)])
    d.update(kw)
    return RenderConfig(**d)


class _Stop(Exception):
    pass


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Render with an interruption after 2 frames, then resume; returns (dataset, messages of both runs)."""
    out = tmp_path_factory.mktemp("render") / "ds"
    cfg = _config()
    first = []

    def stop_after_two(done, total, message):
        first.append((done, total, message))
        if done >= 2 and "rendered" in message:
            raise _Stop()

    with pytest.raises(_Stop):
        render.render_dataset(SCENE, cfg, out, progress=stop_after_two, bake_resolution=64)
    partial = Dataset.load(out)
    assert len(partial.frames) == 2 and not partial.complete
    second = []
    ds = render.render_dataset(SCENE, cfg, out, progress=lambda d, t, m: second.append((d, t, m)),
                               bake_resolution=64)
    return ds, first, second


def test_manifest(rendered):
    ds, _, _ = rendered
    again = Dataset.load(ds.root)
    assert again.complete
    assert sorted(f.id for f in again.frames) == ["query_0000", "query_0001", "reference_0000", "reference_0001",
                                                 "reference_0002"]
    assert again.manifest["planned"] == {"reference": 3, "query": 2}
    sc = again.scene
    assert sc["gltf"] == "scene.glb" and sc["gltf_up"] == "Z" and sc["scale"] == 1.0
    assert sc["name"] == SCENE and sc["source"] == SCENE
    assert again.manifest["render"]["digest"] == _config().digest(render.scene_key(SCENE, None, 15.0))
    intr = _config().intrinsics()
    for f in again.frames:
        assert f.intrinsics == intr
        assert f.extras["group"] == f.split and "lighting" in f.extras
        img = render._read_png(str(again.path(f.image)))
        assert img.shape == (72, 96, 3) and img.dtype == np.uint8 and img.std() > 5
        assert again.read_depth(f).shape == (72, 96)
    assert again.frame("query_0000").extras["noise_std"] == 3.0


def test_resume_renders_only_missing_frames(rendered):
    ds, first, second = rendered
    assert [m for m in first if "rendered" in m[2]][-1][0] == 2
    rendered_again = [m for m in second if "rendered" in m[2]]
    assert len(rendered_again) == 3
    assert second[-1][0] == 5 and second[-1][1] == 5
    leftovers = [p for p in Path(ds.root).rglob("*") if ".part" in p.name]
    assert not leftovers


def test_depth_matches_ray_casts(rendered):
    ds, _, _ = rendered
    scene = bpy.context.scene  # the render process still holds the loaded scene
    depsgraph = bpy.context.evaluated_depsgraph_get()
    from mathutils import Vector

    checked = misses = 0
    for f in ds.frames:
        depth = ds.read_depth(f)
        T = f.cam_from_world
        R, t = T[:3, :3], T[:3, 3]
        centre = -R.T @ t
        Kinv = np.linalg.inv(f.intrinsics.K)
        for v in range(2, 72, 7):
            for u in range(2, 96, 9):
                win = depth[v - 1:v + 2, u - 1:u + 2]
                if win.min() <= 0 < win.max():
                    continue  # silhouette against the sky
                curv = max(abs(win[1, 0] + win[1, 2] - 2 * win[1, 1]), abs(win[0, 1] + win[2, 1] - 2 * win[1, 1]))
                if curv > 0.02:
                    continue  # not locally planar: an edge where the pixel centre may fall on either side
                d_world = R.T @ (Kinv @ np.array([u, v, 1.0]))
                d_world /= np.linalg.norm(d_world)
                hit, loc, *_ = scene.ray_cast(depsgraph, Vector(centre), Vector(d_world))
                if not hit:
                    assert depth[v, u] == 0.0
                    misses += 1
                    continue
                z = (R @ np.array(loc) + t)[2]
                assert depth[v, u] == pytest.approx(z, abs=0.01), (f.id, u, v)
                checked += 1
    assert checked > 50 and misses > 5


def test_other_config_in_same_folder_is_refused(rendered):
    ds, _, _ = rendered
    with pytest.raises(render.DatasetMismatchError, match="different dataset"):
        render.render_dataset(SCENE, _config(samples=8), ds.root, bake_resolution=64)


def _glb_json(path):
    data = Path(path).read_bytes()
    magic, version, length = struct.unpack("<4sII", data[:12])
    assert magic == b"glTF" and version == 2 and length == len(data)
    chunk_len, chunk_type = struct.unpack("<II", data[12:20])
    assert chunk_type == 0x4E4F534A  # JSON
    return json.loads(data[20:20 + chunk_len])


def test_scene_glb_has_baked_textures(rendered):
    ds, _, _ = rendered
    gltf = _glb_json(ds.root / "scene.glb")
    assert len(gltf["images"]) >= 2 and len(gltf["textures"]) >= 2
    assert all("baseColorTexture" in m["pbrMetallicRoughness"] for m in gltf["materials"])
    # Z-up world coordinates kept (export_yup=False): the building's accessor max z is its height
    mins = [a["min"] for a in gltf["accessors"] if a.get("type") == "VEC3" and "min" in a]
    maxs = [a["max"] for a in gltf["accessors"] if a.get("type") == "VEC3" and "max" in a]
    hi = np.array(ds.scene["bounds"][1])
    assert any(np.allclose(m, hi, atol=1e-3) for m in maxs)
    assert any(abs(m[2]) < 1e-6 for m in mins)


def test_missing_mesh_is_a_clear_error(tmp_path, capsys):
    missing = tmp_path / "nope.glb"
    with pytest.raises(FileNotFoundError, match="nope.glb"):
        render.render_dataset(str(missing), _config(), tmp_path / "out")
    assert headless.main(["scene-info", "--scene", str(missing)]) == 1
    cap = capsys.readouterr()
    assert str(missing) in cap.err and len(cap.err.strip().splitlines()) == 1
    assert json.loads(cap.out.strip().splitlines()[-1])["event"] == "error"
    bad = tmp_path / "bad.obj"
    bad.write_text("this is not an obj\x00\x01")
    assert headless.main(["scene-info", "--scene", str(tmp_path / "x.stl")]) == 1
    assert headless.main(["render-dataset", "--scene", "procedural"]) == 2


def test_imported_mesh_is_scaled_and_grounded(tmp_path):
    obj = tmp_path / "box.obj"
    obj.write_text("v 0 0 0\nv 2 0 0\nv 2 1 0\nv 0 1 0\nv 0 0 3\nv 2 0 3\nv 2 1 3\nv 0 1 3\n"
                   "f 1 2 3 4\nf 5 6 7 8\nf 1 2 6 5\nf 2 3 7 6\nf 3 4 8 7\nf 4 1 5 8\n")
    info = scene_io.load_scene(str(obj), scale_longest=15.0)
    lo, hi = np.array(info["bounds"])
    assert info["scale"] == pytest.approx(5.0)
    assert max(hi - lo) == pytest.approx(15.0, abs=1e-4)
    assert lo[2] == pytest.approx(0.0, abs=1e-5)
    np.testing.assert_allclose((lo[:2] + hi[:2]) / 2, 0.0, atol=1e-5)
    assert scene_io.ground_objects()
    info2 = scene_io.load_scene(str(obj), scale=2.0)
    assert info2["scale"] == 2.0
    plain = scene_io.load_scene(str(obj), ground="plain")
    (g,) = scene_io.ground_objects()
    assert plain["ground"] == g.name and g.active_material.name == "ground.plain"
    nodes = {n.bl_idname for n in g.active_material.node_tree.nodes}
    assert nodes == {"ShaderNodeOutputMaterial", "ShaderNodeBsdfPrincipled"}  # no texture at all
    assert scene_io.load_scene("procedural", ground="none")["ground"] is None and not scene_io.ground_objects()
    with pytest.raises(scene_io.SceneError, match="unknown ground"):
        scene_io.load_scene(str(obj), ground="grass")


def test_gaussian_blur_matches_a_reference_kernel():
    img = np.zeros((21, 25, 3), np.float32)
    img[10, 12] = 100.0
    out = render.gaussian_blur(img, 1.5)
    assert out.sum() == pytest.approx(300.0, rel=1e-4)  # mass kept away from the borders
    x = np.arange(-5, 6)  # radius ceil(3 sigma)
    g = np.exp(-0.5 * (x / 1.5) ** 2)
    g /= g.sum()
    np.testing.assert_allclose(out[10, 7:18, 0], 100.0 * g[5] * g, rtol=1e-4)  # separable Gaussian, centre row
    np.testing.assert_allclose(out[..., 0], out[..., 2])


def test_headless_render_command(tmp_path, capsys):
    cfg = tmp_path / "cfg.json"
    c = _config(width=64, height=48, groups=[RenderGroup("reference", SamplerConfig(n=1, seed=3))])
    cfg.write_text(json.dumps(c.to_dict()))
    out = tmp_path / "ds"
    rc = headless.main(["render-dataset", "--scene", "procedural:1", "--config", str(cfg), "--out", str(out),
                        "--bake-resolution", "32"])
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines() if x.startswith("{")]
    assert rc == 0
    assert lines[-1] == {"event": "done", "dataset": str(out.resolve()), "frames": 1}
    assert any(x["event"] == "progress" and x["done"] == 1 and x["total"] == 1 for x in lines)


def test_hdri_folder_and_sky_jitter(tmp_path):
    """One environment map per frame from the HDRI folder; sky colour jittered deterministically."""
    from pose_addon.core.render_config import LightingConfig

    hdri_dir = tmp_path / "hdri"
    hdri_dir.mkdir()
    img = bpy.data.images.new("sky", 16, 8, float_buffer=True)
    img.pixels = [0.5] * (16 * 8 * 4)
    img.filepath_raw = str(hdri_dir / "sky.hdr")
    img.file_format = "HDR"
    img.save()
    cfg = LightingConfig(world_color_jitter=0.3, hdri_dir=str(hdri_dir))
    a, b = render.sample_lighting(cfg, 0, 1, "train"), render.sample_lighting(cfg, 0, 1, "train")
    assert a == b and a["hdri"].endswith("sky.hdr") and a["world_color"] != [0.8, 0.85, 1.0]
    render.setup_lighting(a, bpy.context.scene)
    nodes = bpy.context.scene.world.node_tree.nodes
    env = next(n for n in nodes if n.type == "TEX_ENVIRONMENT")
    assert env.image.filepath.endswith("sky.hdr")
    plain = render.sample_lighting(LightingConfig(), 0, 1, "train")
    render.setup_lighting(plain, bpy.context.scene)
    bg = next(n for n in nodes if n.type == "BACKGROUND")
    assert not bg.inputs["Color"].links  # back to a plain sky colour
    with pytest.raises(FileNotFoundError, match="no .hdr"):
        render.sample_lighting(LightingConfig(hdri_dir=str(tmp_path)), 0, 0)


def test_normal_and_instance_mask_passes(tmp_path):
    """Optional passes: world-space unit normals and per-object instance ids, beside RGB and depth."""
    cfg = _config(normals=True, masks=True,
                  groups=[RenderGroup("reference", SamplerConfig(n=1, layout="fibonacci", seed=1))])
    ds = render.render_dataset(SCENE, cfg, tmp_path / "ds", bake_resolution=32)
    f = ds.frames[0]
    with np.load(ds.path(f.extras["normals"])) as z:
        n = z["normals"].astype(np.float32)
    with np.load(ds.path(f.extras["mask"])) as z:
        mask = z["mask"]
    depth = ds.read_depth(f)
    assert n.shape == (72, 96, 3) and mask.shape == (72, 96)
    hit = depth > 0
    norms = np.linalg.norm(n[hit], axis=1)  # unit, except where the pixel filter blends faces at edges
    assert np.median(norms) == pytest.approx(1.0, abs=0.01) and np.mean(np.abs(norms - 1) < 0.02) > 0.75
    ids = ds.scene["instances"]
    assert set(np.unique(mask[hit])) <= set(ids.values()) and (mask[~hit] == 0).all()
    assert len(set(np.unique(mask[hit]))) >= 2  # building and ground both seen
    ground = ids[next(k for k in ids if k.lower().startswith("ground"))]
    up = n[mask == ground]
    assert np.median(up[:, 2]) > 0.99  # the ground faces +Z in world space
    with pytest.raises(ValueError, match="CYCLES only"):
        _config(normals=True, engine="BLENDER_WORKBENCH").validate()
