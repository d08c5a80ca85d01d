"""The installed extension drives the worker: start it from the worker environment, get ready, ping, build a
database through a job, estimate the pose of a rendered query, survive a kill and restart.

Timers do not fire while a background script runs, so the test services the worker with ``ops_worker.wait_until``
(the same ``_tick`` the timer calls)."""
import importlib
import os
import signal
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
def ext(installed_extension):
    mod = installed_extension
    bpy.context.preferences.addons[PKG].preferences.worker_python = str(WORKER_PY)
    ops = importlib.import_module(PKG + ".ops_worker")
    yield mod
    ops.unregister_runtime()


@pytest.fixture(scope="module")
def ops(ext):
    return importlib.import_module(PKG + ".ops_worker")


@pytest.fixture(scope="module")
def dataset(ext, tmp_path_factory):
    """8 references + 2 queries at 160x120, rendered by the extension's own code."""
    render = importlib.import_module(PKG + ".blender.render")
    rc = importlib.import_module(PKG + ".core.render_config")
    smp = importlib.import_module(PKG + ".core.sampling")
    ref = rc.RenderGroup("reference", smp.SamplerConfig(n=8, layout="fibonacci", distance=(26.0, 34.0),
                                                        elevation_deg=(8.0, 30.0), azimuth_deg=(20.0, 110.0),
                                                        seed=0))
    qry = rc.RenderGroup("query", smp.SamplerConfig(n=2, layout="random", distance=(28.0, 32.0),
                                                    elevation_deg=(12.0, 25.0), azimuth_deg=(45.0, 85.0), seed=1))
    cfg = rc.RenderConfig(groups=[ref, qry], width=160, height=120, samples=8, engine="CYCLES")
    return render.render_dataset("procedural", cfg, tmp_path_factory.mktemp("ds") / "ds", bake_resolution=64)


def _state():
    return bpy.context.window_manager.building_pose.worker_state


def call(ops, method, params=None, timeout=60.0):
    box = {}
    ops.SUPERVISOR.request(method, params or {}, lambda r, e: box.update(r=r, e=e), timeout=timeout)
    assert ops.wait_until(lambda: box, timeout + 10), f"no reply to {method}"
    assert box["e"] is None, box["e"]
    return box["r"]


def test_start_ready_ping(ops):
    assert _state() == "stopped"
    assert "FINISHED" in bpy.ops.building_pose.worker_start()
    assert _state() == "starting"
    assert ops.wait_until(lambda: _state() == "ready", 60), ops.SUPERVISOR.message
    assert "FINISHED" in bpy.ops.building_pose.worker_start()  # a second start does not spawn a second worker
    box = {}
    ops.SUPERVISOR.ping(lambda r, e: box.update(r=r, e=e))
    assert ops.wait_until(lambda: box, 10) and box["r"]["pong"] is True
    assert ops.SUPERVISOR.last_ping_ms is not None
    assert ops.SUPERVISOR.log_path.is_file()
    assert "FINISHED" in bpy.ops.building_pose.worker_open_log()
    proc = ops.SUPERVISOR.proc  # the token travels through a pipe: not readable by other processes
    for f in ("environ", "cmdline"):
        assert proc.token.encode() not in Path(f"/proc/{proc.pid}/{f}").read_bytes(), f


def test_database_job_and_estimate_pose(ops, dataset):
    job = call(ops, "job.start", {"kind": "build_database", "params": {"dataset": str(dataset.root)}})
    seen_busy = []

    def done():
        seen_busy.append(_state() == "busy")
        return any(j["id"] == job["id"] and j["state"] in ("done", "failed") for j in ops.SUPERVISOR.jobs)

    assert ops.wait_until(done, 120)
    st = call(ops, "job.status", {"job": job["id"]})
    assert st["state"] == "done", st["error"]
    core_cam = importlib.import_module(PKG + ".core.cameras")
    errs = []
    for q in dataset.split("query"):
        r = call(ops, "estimate_pose", {"image": str(dataset.path(q.image)), "method": "sift",
                                        "database": st["result"]["database"],
                                        "intrinsics": q.intrinsics.to_dict()})
        assert r["success"], r["message"]
        T = np.array(r["cam_from_world"])
        t_err = np.linalg.norm(core_cam.camera_center(T) - core_cam.camera_center(q.cam_from_world))
        R_rel = T[:3, :3] @ np.asarray(q.cam_from_world)[:3, :3].T
        r_err = np.degrees(np.arccos(np.clip((np.trace(R_rel) - 1) / 2, -1, 1)))
        errs.append((t_err, r_err))
        # the Blender matrix a camera object would take
        M = np.array(r["matrix_world"])
        np.testing.assert_allclose(M, core_cam.blender_matrix_world_from_cam_from_world(T), atol=1e-9)
    print("pose errors (m, deg):", errs)
    assert all(t < 1.0 and r < 3.0 for t, r in errs), errs


def test_estimate_camera_operator_and_compare(ops, dataset, tmp_path):
    """Photo -> 'Estimate Camera from Photo' (a worker job) -> camera near the truth, then compared."""
    import json

    q = dataset.split("query")[0]
    calib = tmp_path / "calib.json"
    calib.write_text(json.dumps(q.intrinsics.to_dict()))
    e = bpy.context.scene.pose_tools.estimate
    e.photo, e.method, e.dataset = str(dataset.path(q.image)), "sift", str(dataset.root)
    e.intrinsics, e.calibration = "calibration", str(calib)
    assert "FINISHED" in bpy.ops.building_pose.estimate_camera()
    est = importlib.import_module(PKG + ".estimates")
    cams = est.estimated_cameras()
    assert len(cams) == 1 and cams[0]["pose_method"] == "sift" and cams[0]["pose_n_inliers"] > 10
    assert cams[0].data.background_images[0].image is not None
    bpy.context.scene.pose_tools.compare.dataset_dir = str(dataset.root)
    assert "FINISHED" in bpy.ops.building_pose.compare_estimates()
    assert cams[0]["pose_t_err_m"] < 0.25 and cams[0]["pose_R_err_deg"] < 2.0
    intr = importlib.import_module(PKG + ".blender.camera").intrinsics_at_size(cams[0], q.intrinsics.width,
                                                                              q.intrinsics.height)
    assert intr.fx == pytest.approx(q.intrinsics.fx, rel=1e-6)
    pts = est.photo_points(cams[0])["inliers"]  # the PnP inliers reprojected over the photo
    assert len(pts) >= 10 and (pts >= -0.5).all() and (pts[:, 0] < q.intrinsics.width).all() \
        and (pts[:, 1] < q.intrinsics.height).all()
    e.method = "retrieval_nn"  # every other method available here runs end to end and makes its camera
    assert "FINISHED" in bpy.ops.building_pose.estimate_camera()
    assert [c["pose_method"] for c in est.estimated_cameras()].count("retrieval_nn") == 1
    e.photo = str(tmp_path / "missing.jpg")
    with pytest.raises(RuntimeError, match="not found"):
        bpy.ops.building_pose.estimate_camera()


def test_models_panel_jobs_and_list(ops, dataset):
    """Build a database from the Models panel as a job, list it, pick it for estimation."""
    bpy.context.scene.pose_tools.render.output_dir = str(dataset.root)  # the panel's dataset folder
    assert "FINISHED" in bpy.ops.building_pose.start_model_job(kind="build_database", dataset=str(dataset.root))
    job = bpy.context.window_manager.building_pose.models_job
    assert ops.wait_until(lambda: any(j["id"] == job and j["state"] in ("done", "failed")
                                      for j in ops.SUPERVISOR.jobs), 120)
    assert "FINISHED" in bpy.ops.building_pose.refresh_models()
    items = bpy.context.scene.pose_tools.models
    dbs = [i for i, m in enumerate(items) if m.kind == "database"]
    assert dbs and any(m.kind == "dataset" for m in items)
    assert "FINISHED" in bpy.ops.building_pose.use_model(index=dbs[0])
    assert bpy.context.scene.pose_tools.estimate.database == items[dbs[0]].path
    with pytest.raises(RuntimeError, match="not found"):
        bpy.ops.building_pose.start_model_job(kind="train_regression", dataset="/no/such/dataset")


def test_manual_annotation_uses_the_workers_robust_pnp(ops, tmp_path):
    """With the worker running, a wrong click among the annotated keypoints is flagged as an outlier."""
    import json

    cams = importlib.import_module(PKG + ".core.cameras")
    smp = importlib.import_module(PKG + ".core.sampling")
    img = bpy.data.images.new("photo", 320, 240)
    img.filepath_raw = str(tmp_path / "photo.png")
    img.file_format = "PNG"
    img.save()
    kps = bpy.context.scene.pose_tools.keypoints
    kps.suggest_count = 12
    bpy.ops.building_pose.suggest_keypoints()
    assert "FINISHED" in bpy.ops.building_pose.add_photo_camera(filepath=str(tmp_path / "photo.png"))
    cam = bpy.context.scene.camera
    cam.data.lens = 300.0 * 36.0 / 320
    K = np.array([[300.0, 0, 159.5], [0, 300.0, 119.5], [0, 0, 1]])
    T = smp.look_at(np.array([22.0, -28.0, 9.0]), np.array([0.0, 0.0, 5.0]))
    names = []
    for it in kps.items:
        uv, z = cams.project_points(K, T, np.array(it.empty.location)[None])
        if z[0] > 0 and 0 <= uv[0, 0] < 320 and 0 <= uv[0, 1] < 240:
            px = uv[0] + (np.array([40.0, -30.0]) if not names else 0.0)  # the first click is wrong by 50 px
            bpy.ops.building_pose.annotate_point(keypoint=it.name, pixel=tuple(px))
            names.append(it.name)
    assert len(names) >= 8
    assert "FINISHED" in bpy.ops.building_pose.solve_annotation()
    ann = json.loads(cam["pose_annotation"])
    assert ann["solve"]["solver"] == "worker-poselib-ransac" and ann["outliers"] == [names[0]]
    est = importlib.import_module(PKG + ".blender.camera").get_cam_from_world(cam)
    assert np.linalg.norm(cams.camera_center(est) - cams.camera_center(T)) < 0.05


def test_ransac_outliers_keep_a_wrong_focal_out(ops, tmp_path):
    """Solve + Focal with a wrong click: the focal is solved again from the clicks RANSAC keeps, never from the
    wrong one."""
    import json

    cams = importlib.import_module(PKG + ".core.cameras")
    smp = importlib.import_module(PKG + ".core.sampling")
    bcam = importlib.import_module(PKG + ".blender.camera")
    img = bpy.data.images.new("photo2", 320, 240)
    img.filepath_raw = str(tmp_path / "photo2.png")
    img.file_format = "PNG"
    img.save()
    assert "FINISHED" in bpy.ops.building_pose.add_photo_camera(filepath=str(tmp_path / "photo2.png"))
    cam = bpy.context.scene.camera
    cam.data.lens = 300.0 * 36.0 / 320
    K = np.array([[300.0, 0, 159.5], [0, 300.0, 119.5], [0, 0, 1]])
    T = smp.look_at(np.array([-24.0, -26.0, 10.0]), np.array([0.0, 0.0, 5.0]))
    names = []
    for it in bpy.context.scene.pose_tools.keypoints.items:
        uv, z = cams.project_points(K, T, np.array(it.empty.location)[None])
        if z[0] > 0 and 0 <= uv[0, 0] < 320 and 0 <= uv[0, 1] < 240:
            px = uv[0] + (np.array([40.0, -30.0]) if not names else 0.0)
            bpy.ops.building_pose.annotate_point(keypoint=it.name, pixel=tuple(px))
            names.append(it.name)
    assert len(names) >= 9
    assert "FINISHED" in bpy.ops.building_pose.solve_annotation(estimate_focal=True)
    ann = json.loads(cam["pose_annotation"])
    assert ann["outliers"] == [names[0]]
    assert ann["solve"]["focal"].startswith("solved again from the")
    fx = bcam.intrinsics_at_size(cam, 320, 240).fx
    assert fx == pytest.approx(300.0, rel=0.01)
    est = bcam.get_cam_from_world(cam)
    assert np.linalg.norm(cams.camera_center(est) - cams.camera_center(T)) < 0.05


def test_killed_worker_is_reported_and_restart_works(ops):
    pid = ops.SUPERVISOR.proc.pid
    os.kill(pid, signal.SIGKILL)
    assert ops.wait_until(lambda: _state() == "error", 10)
    msg = bpy.context.window_manager.building_pose.worker_message
    assert "killed" in msg and "SIGKILL" in msg and "Restart" in msg
    lines = _panel_labels(ops)
    assert any("Error" in x for x in lines) and any("killed" in x for x in lines)
    assert "FINISHED" in bpy.ops.building_pose.worker_restart()
    assert ops.wait_until(lambda: _state() == "ready", 60), ops.SUPERVISOR.message
    assert ops.SUPERVISOR.proc.pid != pid
    assert call(ops, "ping")["pong"] is True
    assert "FINISHED" in bpy.ops.building_pose.worker_stop()
    assert ops.wait_until(lambda: _state() == "stopped", 15)
    assert not _pid_alive(pid)


def test_bad_interpreter_is_explained(ops, ext, dataset):
    prefs = bpy.context.preferences.addons[PKG].preferences
    good = prefs.worker_python
    prefs.worker_python = "/no/such/python"
    try:
        with pytest.raises(RuntimeError, match="does not exist"):
            bpy.ops.building_pose.worker_start()
        # Estimate Camera without a running worker: one message, not a traceback of the nested start
        e = bpy.context.scene.pose_tools.estimate
        e.photo, e.method, e.dataset = str(dataset.path(dataset.split("query")[0].image)), "sift", str(dataset.root)
        with pytest.raises(RuntimeError, match="No running worker and it cannot be started.*does not exist"):
            bpy.ops.building_pose.estimate_camera()
    finally:
        prefs.worker_python = good


def test_render_refuses_zero_cameras_and_an_empty_output(ext, tmp_path):
    render = importlib.import_module(PKG + ".blender.render")
    rc = importlib.import_module(PKG + ".core.render_config")
    smp = importlib.import_module(PKG + ".core.sampling")
    one = rc.RenderConfig(groups=[rc.RenderGroup("reference", smp.SamplerConfig(n=1))], width=32, height=32)
    for out in ("", "  ", None):
        with pytest.raises(ValueError, match="no output folder"):
            render.render_dataset("procedural", one, out)
    none = rc.RenderConfig(groups=[rc.RenderGroup("reference", smp.SamplerConfig(n=0))], width=32, height=32)
    with pytest.raises(ValueError, match="no cameras"):
        render.render_dataset("procedural", none, tmp_path / "ds")
    assert not (tmp_path / "ds").exists()


def _pid_alive(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


class _Layout:
    """Records what a panel draws."""

    def __init__(self, out):
        self.out = out

    def column(self, **kw):
        return self

    row = box = column

    def label(self, text="", **kw):
        self.out.append(text)

    def operator(self, idname, **kw):
        self.out.append("op:" + idname)
        return type("_Props", (), {})()

    def progress(self, **kw):
        self.out.append("progress")

    def prop(self, *a, **kw):
        pass


def _panel_labels(ops):
    out = []
    ops.draw_panel(_Layout(out), bpy.context)
    return out
