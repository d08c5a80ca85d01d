"""Dataset schema: manifest round trip, atomic writes, depth, keypoints, COLMAP and nerfstudio exports."""
import json

import numpy as np
import pytest

from pose_addon.core import dataset as D
from pose_addon.core.cameras import Intrinsics, blender_matrix_world_from_cam_from_world
from pose_addon.core.poses import quat_to_matrix
from pose_addon.core.sampling import look_at

INTR = Intrinsics(64, 48, 50.0, 50.0, 31.5, 23.5)


def make_dataset(root, n=3):
    ds = D.Dataset.create(root, {"name": "test"}, {"engine": "CYCLES"}, {"reference": n})
    for i in range(n):
        T = look_at(np.array([10.0 + i, 2.0, 3.0]), np.zeros(3))
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "images" / f"reference_{i:06d}.png").write_bytes(b"png")
        D.write_depth(root / "depth" / f"reference_{i:06d}.npz", np.full((48, 64), 5.0 + i))
        ds.add_frame(D.Frame(f"reference/{i:06d}", "reference", f"images/reference_{i:06d}.png",
                             f"depth/reference_{i:06d}.npz", INTR, T, {"lighting": {"sun": float("inf")}}))
    ds.save()
    return ds


def test_manifest_round_trip_and_strict_json(tmp_path):
    ds = make_dataset(tmp_path)
    text = (tmp_path / "manifest.json").read_text()
    assert "Infinity" not in text and "NaN" not in text
    back = D.Dataset.load(tmp_path)
    assert [f.id for f in back.frames] == [f.id for f in ds.frames]
    np.testing.assert_allclose(back.frames[1].cam_from_world, ds.frames[1].cam_from_world)
    assert back.frames[0].intrinsics == INTR
    assert back.frames[0].extras["lighting"]["sun"] is None
    assert back.read_depth(back.frames[2])[0, 0] == pytest.approx(7.0)
    assert back.has_frame_files("reference/000001")
    (tmp_path / "depth" / "reference_000001.npz").unlink()
    assert not back.has_frame_files("reference/000001")


def test_bad_datasets_have_clear_errors(tmp_path):
    with pytest.raises(D.DatasetError, match="not found"):
        D.Dataset.load(tmp_path / "nowhere")
    (tmp_path / "manifest.json").write_text("{ truncated")
    with pytest.raises(D.DatasetError, match="unreadable manifest"):
        D.Dataset.load(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(D.DatasetError, match="not a pose-dataset"):
        D.Dataset.load(tmp_path)
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(D.DatasetError, match="unreadable depth"):
        D.read_depth(tmp_path / "broken.npz")


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    p = tmp_path / "x.json"
    D.atomic_write_json(p, {"a": 1})
    with pytest.raises(TypeError):
        D.atomic_write_json(p, {"a": object()})
    assert json.loads(p.read_text()) == {"a": 1}
    assert not list(tmp_path.glob("*.part"))


def test_keypoints_round_trip(tmp_path):
    kps = [D.Keypoint("roof_ridge_left", (1.0, 2.0, 10.0)), D.Keypoint("door_top", (0.0, -5.0, 2.2))]
    D.save_keypoints(tmp_path / "k.json", kps, scene="procedural:0")
    assert D.load_keypoints(tmp_path / "k.json") == kps
    with pytest.raises(ValueError, match="unique"):
        D.save_keypoints(tmp_path / "k2.json", kps + kps)
    (tmp_path / "bad.json").write_text('{"keypoints": [{"name": "a"}]}')
    with pytest.raises(D.DatasetError, match="malformed"):
        D.load_keypoints(tmp_path / "bad.json")


def test_colmap_export_uses_colmap_conventions(tmp_path):
    ds = make_dataset(tmp_path / "ds")
    out = D.export_colmap(ds, tmp_path / "colmap")
    cams = [ln for ln in (out / "cameras.txt").read_text().splitlines() if not ln.startswith("#")]
    assert len(cams) == 1
    _, model, w, h, fx, fy, cx, cy = cams[0].split()
    assert model == "PINHOLE" and float(cx) == INTR.cx + 0.5 and float(cy) == INTR.cy + 0.5
    lines = [ln for ln in (out / "images.txt").read_text().splitlines() if not ln.startswith("#")]
    first = lines[0].split()
    R = quat_to_matrix(np.array([float(x) for x in first[1:5]]))
    np.testing.assert_allclose(R, ds.frames[0].cam_from_world[:3, :3], atol=1e-9)
    np.testing.assert_allclose([float(x) for x in first[5:8]], ds.frames[0].cam_from_world[:3, 3], atol=1e-9)
    assert lines[1] == ""  # empty POINTS2D line per image
    assert (out / "points3D.txt").exists()


def test_nerfstudio_export(tmp_path):
    ds = make_dataset(tmp_path / "ds")
    p = D.export_nerfstudio(ds, tmp_path / "transforms.json")
    data = json.loads(p.read_text())
    M = np.array(data["frames"][0]["transform_matrix"])
    np.testing.assert_allclose(M, blender_matrix_world_from_cam_from_world(ds.frames[0].cam_from_world))
    assert data["frames"][0]["cx"] == INTR.cx + 0.5
    assert (tmp_path / data["frames"][0]["file_path"]).exists()
    # depth as float32 millimetres in .npy, which nerfstudio scales by its default depth_unit_scale_factor
    assert data["depth_unit_scale_factor"] == 1e-3
    for i, fr in enumerate(data["frames"]):
        d = np.load(tmp_path / fr["depth_file_path"])
        assert d.dtype == np.float32 and d.shape == (48, 64) and d[0, 0] == pytest.approx(1000.0 * (5.0 + i))


def test_exports_carry_radial_distortion(tmp_path):
    """A frame with k1, k2 is an OPENCV camera in COLMAP and carries k1..p2 in nerfstudio; one without stays PINHOLE."""
    ds = make_dataset(tmp_path / "ds")
    f0, f1 = ds.frames[0], ds.frames[1]
    k = f0.intrinsics
    distorted = D.Frame(f0.id, f0.split, f0.image, None,
                        Intrinsics(k.width, k.height, k.fx, k.fy, k.cx, k.cy, (-0.12, 0.03)), f0.cam_from_world)
    plain = D.Frame(f1.id, f1.split, f1.image, None, f1.intrinsics, f1.cam_from_world)
    out = D.write_colmap([distorted, plain], tmp_path / "colmap")
    cams = [ln.split() for ln in (out / "cameras.txt").read_text().splitlines() if not ln.startswith("#")]
    assert [c[1] for c in cams] == ["OPENCV", "PINHOLE"]
    assert [float(x) for x in cams[0][8:]] == [-0.12, 0.03, 0.0, 0.0]
    doc = json.loads(D.write_nerfstudio([distorted, plain], tmp_path / "t.json", ds.root).read_text())
    assert (doc["frames"][0]["k1"], doc["frames"][0]["k2"], doc["frames"][0]["p1"]) == (-0.12, 0.03, 0.0)
    assert "k1" not in doc["frames"][1]


def test_render_config_round_trip_and_stable_digest():
    from pose_addon.core.render_config import LightingConfig, RenderConfig, RenderGroup
    from pose_addon.core.sampling import SamplerConfig

    base = RenderConfig(groups=[RenderGroup("reference", SamplerConfig(n=5))])
    assert "hdri_dir" not in json.dumps(base.to_dict())  # new defaults stay out: old caches keep their digest
    again = RenderConfig.from_dict(json.loads(json.dumps(base.to_dict())))
    assert again.digest("s") == base.digest("s")
    jit = RenderConfig(groups=[RenderGroup("reference", SamplerConfig(n=5), LightingConfig(world_color_jitter=0.2,
                                                                                           hdri_dir="/maps"))])
    back = RenderConfig.from_dict(json.loads(json.dumps(jit.to_dict())))
    assert back.groups[0].lighting.hdri_dir == "/maps" and back.digest("s") == jit.digest("s") != base.digest("s")
    assert "blur_px" not in json.dumps(base.to_dict())
    blur = RenderConfig(groups=[RenderGroup("query", SamplerConfig(n=5), noise_std=3.0, blur_px=1.5)])
    back = RenderConfig.from_dict(json.loads(json.dumps(blur.to_dict())))
    assert back.groups[0].blur_px == 1.5 and back.digest("s") == blur.digest("s")


def test_render_config_rejects_negative_blur_and_noise():
    import pytest

    from pose_addon.core.render_config import RenderConfig, RenderGroup
    from pose_addon.core.sampling import SamplerConfig

    for kw in ({"blur_px": -1.0}, {"noise_std": -2.0}):
        with pytest.raises(ValueError, match="must be >= 0"):
            RenderConfig(groups=[RenderGroup("query", SamplerConfig(n=1), **kw)]).validate()
