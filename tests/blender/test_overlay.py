"""The estimated-cameras overlay builds its geometry once and rebuilds it only when the estimates change (added,
moved, compared, deleted); the vectorized frustums match the per-camera ones; labels are projected and capped.
Speed is measured by ``tests/blender/bench_overlay.py`` (not timed here)."""
import json

import bpy
import numpy as np
import pytest

import pose_addon
from pose_addon import draw, estimates
from pose_addon.blender import camera as bcam
from pose_addon.blender import scene_io
from pose_addon.core.cameras import Intrinsics
from pose_addon.core.sampling import look_at

INTR = Intrinsics(320, 240, 250.0, 250.0, 159.5, 119.5)


@pytest.fixture(scope="module")
def scene():
    scene_io.reset_scene()
    scene_io.load_scene("procedural:1")
    pose_addon.register()
    yield bpy.context.scene
    pose_addon.unregister()


def _make(n):
    out = []
    for i in range(n):
        T = look_at(np.array([30.0 * np.cos(i), 30.0 * np.sin(i), 8.0]), np.array([0.0, 0.0, 4.0]))
        out.append(estimates.create_estimated_camera(bpy.context, f"/p/IMG_{i}.jpg", T, INTR, "sift", {}))
    return out


def test_geometry_is_built_once_and_rebuilt_on_change(scene, monkeypatch):
    builds = []
    real = draw.ESTIMATES.build
    monkeypatch.setattr(draw.ESTIMATES, "build", lambda: builds.append(1) or real())
    cams = _make(20)
    for _ in range(5):
        lines, _ = draw.ESTIMATES.get(draw._estimates_key(), False)
    assert len(builds) == 1 and sum(len(v) for v in lines.values()) == 20 * 16
    cams[0].location.x += 5.0  # moved in the viewport: a depsgraph update on a camera
    bpy.context.view_layer.update()
    draw.ESTIMATES.get(draw._estimates_key(), False)
    assert len(builds) == 2
    cams[1]["pose_truth"] = json.dumps(bcam.get_cam_from_world(cams[1]).tolist())
    estimates.compare()  # compared: truth frustum and link added
    lines, _ = draw.ESTIMATES.get(draw._estimates_key(), False)
    assert len(builds) == 3
    bpy.data.objects.remove(cams[2])
    lines, _ = draw.ESTIMATES.get(draw._estimates_key(), False)
    assert len(builds) == 4 and sum(len(v) for v in lines.values()) == 19 * 16
    draw.ESTIMATES.get(draw._estimates_key(), False)
    assert len(builds) == 4
    for o in estimates.estimated_cameras():
        bpy.data.objects.remove(o)


def test_vectorized_frustums_match_the_single_ones(scene):
    rng = np.random.default_rng(1)
    Ts = np.stack([look_at(rng.normal(0, 20, 3) + [0, 0, 30], rng.normal(0, 2, 3)) for _ in range(7)])
    intrs = [Intrinsics(100 + 10 * i, 80 + 5 * i, 90.0 + i, 95.0, 50.0 + i, 40.0) for i in range(7)]
    many = draw.frustum_lines_many(Ts, intrs, 2.0)
    for i in range(7):
        np.testing.assert_allclose(many[i], draw.frustum_lines(Ts[i], intrs[i], 2.0), atol=1e-12)
    cams = _make(3)
    np.testing.assert_allclose(draw.cams_from_world(cams), np.stack([bcam.get_cam_from_world(o) for o in cams]),
                               atol=1e-6)
    for o in cams:
        bpy.data.objects.remove(o)


def test_labels_are_projected_and_capped(scene):
    pos = np.array([[0.0, 0.0, 10.0], [1.0, 0.0, 10.0], [0.0, 0.0, -10.0], [100.0, 0.0, 10.0]])
    P = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 1.0, 0]])  # x/z, y/z
    idx, xy = draw.visible_labels(pos, P, 200, 100)
    assert list(idx) == [0, 1]  # behind the view and outside the region are skipped
    np.testing.assert_allclose(xy, [[100.0, 50.0], [110.0, 50.0]])
    many = np.c_[np.linspace(-5, 5, 500), np.zeros(500), np.full(500, 10.0)]
    idx, _ = draw.visible_labels(many, P, 200, 100, limit=50)
    assert len(idx) == 50 and np.abs(many[idx, 0]).max() < 0.6  # the ones nearest the centre
