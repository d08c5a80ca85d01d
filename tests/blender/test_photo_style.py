"""Photo-style frames: JPEG with distortion in the intrinsics, drawn parameters recorded, the scene restored."""
import bpy
import pytest

from pose_addon.blender import photo_style, render
from pose_addon.core.render_config import PhotoStyle, RenderConfig, RenderGroup
from pose_addon.core.sampling import SamplerConfig


@pytest.fixture(scope="module")
def photo_ds(tmp_path_factory):
    out = tmp_path_factory.mktemp("photo") / "ds"
    style = PhotoStyle(seed=3, k1=(-0.15, -0.1), occluders=(3, 3), occluder_cover=1.0)
    cfg = RenderConfig(width=96, height=72, samples=2, engine="CYCLES",
                       groups=[RenderGroup("reference", SamplerConfig(n=1, layout="fibonacci", seed=1)),
                               RenderGroup("query", SamplerConfig(n=2, layout="random", seed=2), noise_std=2.0,
                                           photo=style)])
    materials_before = sorted(m.name for m in bpy.data.materials)
    ds = render.render_dataset("procedural:5", cfg, out, bake_resolution=32)
    return ds, materials_before


def test_photo_frames_are_jpeg_with_distortion_recorded(photo_ds):
    ds, _ = photo_ds
    ref = ds.split("reference")[0]
    assert ref.image.endswith(".png") and not ref.intrinsics.dist and "photo" not in ref.extras
    for q in ds.split("query"):
        assert q.image.endswith(".jpg") and ds.path(q.image).read_bytes()[:2] == b"\xff\xd8"
        p = q.extras["photo"]
        assert -0.15 <= p["k1"] <= -0.1 and q.intrinsics.dist[:2] == (p["k1"], p["k2"])
        assert p["margin_px"] > 0 and 0 <= p["occluded_share"] <= 1 and 70 <= p["jpeg_quality"] <= 92
        assert ds.read_depth(q).shape == (72, 96)  # the overscan is cropped away


def test_scene_is_restored_after_photo_frames(photo_ds):
    _, before = photo_ds
    assert bpy.data.collections.get(photo_style.OCCLUDER_COLLECTION) is None
    assert not [m.name for m in bpy.data.materials if "(photo)" in m.name or m.name.startswith("occluder ")]
    scene = bpy.context.scene
    assert (scene.render.resolution_x, scene.render.resolution_y) == (96, 72)
    assert scene.camera.data.sensor_width == pytest.approx(36.0)


def test_same_seed_same_photo_parameters():
    from pose_addon.core.cameras import Intrinsics

    intr = Intrinsics(96, 72, 80.0, 80.0, 47.5, 35.5)
    a = photo_style.sample_params(PhotoStyle(seed=1), 0, 3, "query", intr)
    assert a == photo_style.sample_params(PhotoStyle(seed=1), 0, 3, "query", intr)
    assert a != photo_style.sample_params(PhotoStyle(seed=2), 0, 3, "query", intr)
