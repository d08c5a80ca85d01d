"""The headless ``sample`` command: the Cameras panel's placement presets scaled to the model, explicit ranges on
top, bad combinations refused as bad arguments."""
import json

import numpy as np
import pytest

from pose_addon import headless
from pose_addon.core.cameras import camera_center
from pose_addon.core.sampling import placement_preset

SIZE = np.array([10.0, 6.0, 8.0])  # the box's extent in the file: longest side 10


@pytest.fixture(scope="module")
def box_ply(tmp_path_factory):
    """A closed box 10 x 6 x 8 (Z up), off the origin, as an ASCII PLY."""
    lo = np.array([100.0, -40.0, 3.0])
    v = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], float) * SIZE + lo
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    tris = [t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))]
    lines = ["ply", "format ascii 1.0", f"element vertex {len(v)}", "property float x", "property float y",
             "property float z", f"element face {len(tris)}", "property list uchar int vertex_indices", "end_header"]
    lines += [" ".join(f"{c:g}" for c in p) for p in v] + [f"3 {a} {b} {c}" for a, b, c in tris]
    path = tmp_path_factory.mktemp("model") / "box.ply"
    path.write_text("\n".join(lines) + "\n")
    return path


def _sample(tmp_path, *args):
    out = tmp_path / "poses.json"
    code = headless.main(["sample", "--out", str(out), "--n", "16", *args])
    return code, (json.loads(out.read_text()) if code == 0 else None)


def _bounds(factor):
    """World bounds of the box after loading: scaled, centred on x/y, its bottom at z = 0."""
    ext = SIZE * factor
    return np.array([-ext[0] / 2, -ext[1] / 2, 0.0]), np.array([ext[0] / 2, ext[1] / 2, ext[2]])


def _centres(res):
    return np.array([camera_center(np.array(T)) for T in res["cam_from_world"]])


def test_default_is_the_orbit_preset_scaled_to_the_model(box_ply, tmp_path):
    code, res = _sample(tmp_path, "--scene", str(box_ply), "--scale-longest", "30")
    assert code == 0 and res["preset"] == "orbit" and res["model_size_m"] == pytest.approx(30.0, rel=1e-4)
    lo, hi = _bounds(3.0)
    want = placement_preset("orbit", lo, hi)
    assert res["sampler"]["distance"] == pytest.approx(list(want.distance), rel=1e-4)  # 50-80 m for 30 m
    assert res["sampler"]["distance"] == pytest.approx([50.0, 80.0], rel=1e-4)
    d = np.linalg.norm(_centres(res) - (lo + hi) / 2, axis=1)
    assert (d >= 50.0 - 1e-3).all() and (d <= 80.0 + 1e-3).all()
    # a model in metres: the same preset at its own size
    code, res = _sample(tmp_path, "--scene", str(box_ply), "--scale", "1")
    assert code == 0 and res["sampler"]["distance"] == pytest.approx([25 / 1.5, 40 / 1.5], rel=1e-4)


def test_street_and_aerial_presets_and_overrides(box_ply, tmp_path):
    lo, hi = _bounds(1.0)
    code, res = _sample(tmp_path, "--scene", str(box_ply), "--scale", "1", "--preset", "street")
    assert code == 0
    want = placement_preset("street", lo, hi)
    c = _centres(res)
    horizontal = np.hypot(c[:, 0] - (lo[0] + hi[0]) / 2, c[:, 1] - (lo[1] + hi[1]) / 2)
    assert (horizontal >= want.distance[0] - 1e-3).all() and (horizontal <= want.distance[1] + 1e-3).all()
    assert (c[:, 2] >= 1.5 - 1e-6).all() and (c[:, 2] <= 2.0 + 1e-6).all()  # eye height above the box's floor
    code, res = _sample(tmp_path, "--scene", str(box_ply), "--scale", "1", "--preset", "street",
                        "--eye-height", "3", "4", "--distance", "12", "14")
    c = _centres(res)
    assert code == 0 and (c[:, 2] >= 3 - 1e-6).all() and (c[:, 2] <= 4 + 1e-6).all()
    horizontal = np.hypot(c[:, 0], c[:, 1])
    assert (horizontal >= 12 - 1e-3).all() and (horizontal <= 14 + 1e-3).all()
    code, res = _sample(tmp_path, "--scene", str(box_ply), "--scale", "1", "--preset", "aerial",
                        "--distance", "30", "31")
    v = _centres(res) - (lo + hi) / 2
    elev = np.degrees(np.arcsin(v[:, 2] / np.linalg.norm(v, axis=1)))
    assert code == 0 and res["sampler"]["elevation_deg"] == [40.0, 70.0]
    assert (elev >= 40 - 1e-3).all() and (elev <= 70 + 1e-3).all()
    assert np.linalg.norm(v, axis=1) == pytest.approx(np.clip(np.linalg.norm(v, axis=1), 30, 31))


def test_bad_combinations_are_bad_arguments(box_ply, tmp_path, capsys):
    assert _sample(tmp_path, "--scene", str(box_ply), "--preset", "street", "--elevation", "5", "10")[0] == 2
    assert "--eye-height" in capsys.readouterr().err
    assert _sample(tmp_path, "--scene", str(box_ply), "--eye-height", "1", "2")[0] == 2
    assert _sample(tmp_path, "--scene", str(box_ply), "--distance", "9", "3")[0] == 2
    assert "ordered" in capsys.readouterr().err
    assert _sample(tmp_path, "--scene", str(box_ply), "--preset", "drone")[0] == 2
    assert not (tmp_path / "poses.json").exists()
