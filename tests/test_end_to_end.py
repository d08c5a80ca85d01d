"""The whole path with a real Blender process: render the procedural building through the extension's headless
entry, build the SIFT database, localize held-out queries and report metrics (small scale, fast)."""
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "buildings"
needs_blender = pytest.mark.skipif(not (ROOT / ".venv-blender" / "bin" / "python").is_file(),
                                   reason="Blender environment .venv-blender missing (run ./dev.sh setup)")


def _bench(tmp_path, scene, **kw):
    from ml_backend.bench import BenchOptions, run_bench

    opts = BenchOptions(scene=scene, out=tmp_path / "out", cache=tmp_path / "cache", progress=False, **kw)
    return run_bench(opts)


@needs_blender
def test_procedural_building_end_to_end(tmp_path, monkeypatch):
    monkeypatch.delenv("POSE_BLENDER", raising=False)
    res = _bench(tmp_path, "procedural:0", n_references=24, n_queries=8, width=320, height=240, samples=4)
    assert (res["n_references"], res["n_queries"]) == (24, 8)
    sift, nn = res["methods"]["sift"], res["methods"]["retrieval_nn"]
    assert sift["localized"] >= 0.85
    assert sift["recall"]["0.25m,2deg"] >= 0.75
    assert sift["median_t_m"] < 0.1 and sift["median_R_deg"] < 0.5
    assert sift["recall"]["0.25m,2deg"] > nn["recall"]["0.25m,2deg"]  # beats the retrieval baseline
    text = (tmp_path / "out" / "results.json").read_text()
    assert "Infinity" not in text and json.loads(text)["scene"] == "procedural:0"
    assert (tmp_path / "out" / "recall.png").stat().st_size > 1000
    assert list((tmp_path / "out").glob("sift_query_*_edges.png"))


@needs_blender
@pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared building models not found at {SHARED}")
def test_shared_glb_building_runs_and_reports(tmp_path, monkeypatch):
    monkeypatch.delenv("POSE_BLENDER", raising=False)
    glb = SHARED / "kenney_city_kit_suburban" / "glb" / "building-type-c.glb"
    res = _bench(tmp_path, str(glb), n_references=12, n_queries=4, width=240, height=180, samples=2)
    assert res["n_references"] == 12 and set(res["methods"]) == {"retrieval_nn", "sift"}
    ds_manifest = next((tmp_path / "cache" / "datasets").glob("*/manifest.json"))
    scene = json.loads(ds_manifest.read_text())["scene"]
    assert scene["scale"] > 5  # a 1-2 unit Kenney house scaled to building size, factor recorded


OPERATOR_SCRIPT = r'''
import sys
import bpy
import pose_addon
from pose_addon.blender import scene_io

out = sys.argv[sys.argv.index("--") + 1]
scene_io.load_scene("procedural:1")
pose_addon.register()
from math import radians
s = bpy.context.scene.pose_tools
s.sampling.placement = "custom"
s.sampling.distance_min, s.sampling.distance_max = 26.0, 34.0
s.sampling.elevation_min, s.sampling.elevation_max = radians(8.0), radians(30.0)
s.sampling.azimuth_min, s.sampling.azimuth_max = 0.0, radians(120.0)
r = s.render
r.output_dir, r.width, r.height, r.samples = out, 320, 240, 4
r.n_train, r.n_val, r.n_test = 16, 3, 0
for o in bpy.context.scene.objects:
    o.select_set(False)
assert "FINISHED" in bpy.ops.building_pose.render_dataset()
'''


@needs_blender
def test_dataset_from_the_render_operator_feeds_localization(tmp_path):
    """'Render Dataset' from the operator writes a dataset the database and localization consume unchanged."""
    import os
    import subprocess

    from ml_backend.matching.database import build_database
    from ml_backend.matching.localize import Localizer
    from pose_addon.core.cameras import camera_center
    from pose_addon.core.dataset import Dataset

    script = tmp_path / "render_op.py"
    script.write_text(OPERATOR_SCRIPT)
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([str(ROOT / "tools" / "blender"), "-b", "--python", str(script), "--python-exit-code", "1",
                           "--", str(tmp_path / "ds")], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ds = Dataset.load(tmp_path / "ds")
    assert ds.complete and ds.splits() == ["train", "val"]
    db = build_database(ds.root, tmp_path / "db", {"name": "sift", "split": "train"}, progress=False)
    errs = []
    with Localizer(db) as loc:
        for q in ds.split("val"):
            r = loc.localize(ds.path(q.image), q.intrinsics)
            errs.append(float("inf") if not r.success else
                        float(((camera_center(r.cam_from_world) - camera_center(q.cam_from_world)) ** 2).sum() ** 0.5))
    assert sum(e < 0.25 for e in errs) >= 2, errs
