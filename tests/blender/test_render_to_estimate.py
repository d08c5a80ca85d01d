"""What 'Render Dataset' makes (train/val/test splits, no 'reference' split) is what 'Build Database' and
'Estimate Camera from Photo' take: every render split serves as a reference by default."""
import importlib
import json
from pathlib import Path

import bpy
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
PKG = "bl_ext.user_default.building_pose"
WORKER_PY = ROOT / ".venv" / "bin" / "python"

pytestmark = pytest.mark.skipif(not WORKER_PY.is_file(),
                                reason=f"worker environment missing: {WORKER_PY} (create it with ./dev.sh setup)")


@pytest.fixture(scope="module")
def ops(installed_extension):
    bpy.context.preferences.addons[PKG].preferences.worker_python = str(WORKER_PY)
    ops = importlib.import_module(PKG + ".ops_worker")
    yield ops
    ops.unregister_runtime()


def test_render_operator_output_builds_a_database_and_estimates(ops, tmp_path):
    importlib.import_module(PKG + ".blender.scene_io").load_scene("procedural:1")
    s = bpy.context.scene.pose_tools
    s.sampling.distance_min, s.sampling.distance_max = 26.0, 34.0
    s.sampling.elevation_min, s.sampling.elevation_max = 8.0, 30.0
    s.sampling.azimuth_min, s.sampling.azimuth_max = 0.0, 90.0
    r = s.render
    r.output_dir, r.width, r.height, r.samples = str(tmp_path / "ds"), 160, 120, 8
    r.n_train, r.n_val, r.n_test = 10, 2, 0
    r.bake_resolution = 64
    for o in bpy.context.scene.objects:
        o.select_set(False)
    assert "FINISHED" in bpy.ops.building_pose.render_dataset()
    Dataset = importlib.import_module(PKG + ".core.dataset").Dataset
    ds = Dataset.load(tmp_path / "ds")
    assert ds.complete and ds.splits() == ["train", "val"] and ds.reference_splits() == ["train", "val"]

    assert "FINISHED" in bpy.ops.building_pose.worker_start()
    assert ops.wait_until(lambda: bpy.context.window_manager.building_pose.worker_state == "ready", 60)
    assert "FINISHED" in bpy.ops.building_pose.start_model_job(kind="build_database", dataset=str(ds.root))
    job = bpy.context.window_manager.building_pose.models_job
    assert ops.wait_until(lambda: any(j["id"] == job and j["state"] in ("done", "failed")
                                      for j in ops.SUPERVISOR.jobs), 180)
    st = next(j for j in ops.SUPERVISOR.jobs if j["id"] == job)
    assert st["state"] == "done", st

    q = ds.split("val")[0]
    calib = tmp_path / "calib.json"
    calib.write_text(json.dumps(q.intrinsics.to_dict()))
    e = s.estimate
    e.photo, e.method, e.dataset = str(ds.path(q.image)), "sift", str(ds.root)
    e.intrinsics, e.calibration = "calibration", str(calib)
    assert "FINISHED" in bpy.ops.building_pose.estimate_camera()
    est = importlib.import_module(PKG + ".estimates")
    cams = est.estimated_cameras()
    assert len(cams) == 1
    bcam = importlib.import_module(PKG + ".blender.camera")
    T = bcam.get_cam_from_world(cams[0])
    centre = lambda M: -np.asarray(M)[:3, :3].T @ np.asarray(M)[:3, 3]  # noqa: E731
    assert np.linalg.norm(centre(T) - centre(q.cam_from_world)) < 0.25
    bpy.ops.building_pose.worker_stop()
