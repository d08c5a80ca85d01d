"""The `estimate` job: photos (a file or a folder) -> cameras, with the intrinsics resolved per photo."""
import json
import shutil
from pathlib import Path

import numpy as np

from pose_addon.core.cameras import camera_center


def test_estimate_job_on_a_folder(worker, synth_dataset, synth_db, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    queries = synth_dataset.split("query")[:2]
    for q in queries:
        shutil.copy(synth_dataset.path(q.image), photos / Path(q.image).name)
    (photos / "notes.txt").write_text("not a photo")
    calib = tmp_path / "calib.json"
    calib.write_text(json.dumps(queries[0].intrinsics.to_dict()))
    job = worker.start_job("estimate", path=str(photos), method="sift", conf={"database": str(synth_db)},
                           intrinsics={"source": "calibration", "path": str(calib)})
    st = worker.wait_job(job["id"], timeout=120)
    assert st["state"] == "done", st
    rows = st["result"]["estimates"]
    assert [Path(r["image"]).name for r in rows] == sorted(Path(q.image).name for q in queries)
    by_name = {Path(q.image).name: q for q in queries}
    for r in rows:
        assert r["success"], r["message"]
        q = by_name[Path(r["image"]).name]
        assert np.linalg.norm(camera_center(np.array(r["cam_from_world"])) - camera_center(q.cam_from_world)) < 0.1
        assert r["intrinsics"]["fx"] == q.intrinsics.fx and r["matrix_world"] is not None and r["method"] == "sift"


def test_estimate_job_bad_input(worker, synth_db, tmp_path):
    import pytest

    from ml_backend.service.protocol import RemoteError as WorkerError

    with pytest.raises(WorkerError, match="not found"):
        worker.start_job("estimate", path=str(tmp_path / "none.jpg"), conf={"database": str(synth_db)})
    (tmp_path / "a.png").write_bytes(b"garbage")
    with pytest.raises(WorkerError, match="conf needs"):
        worker.start_job("estimate", path=str(tmp_path / "a.png"), conf={})
    st = worker.wait_job(worker.start_job("estimate", path=str(tmp_path / "a.png"), conf={"database": str(synth_db)},
                                          intrinsics={"source": "guess"})["id"], timeout=60)
    assert st["state"] == "done"
    row = st["result"]["estimates"][0]
    assert not row["success"] and "cannot read" in row["message"]


def test_models_list_shows_what_the_worker_built(worker, synth_dataset, tmp_path):
    db_job = worker.start_job("build_database", dataset=str(synth_dataset.root), out=str(tmp_path / "db"))
    st = worker.wait_job(db_job["id"], timeout=120)
    models = worker.request("models.list", {"roots": [str(tmp_path), str(synth_dataset.root.parent)]})["models"]
    kinds = {(m["kind"], m["path"]) for m in models}
    assert ("database", st["result"]["database"]) in kinds
    assert ("dataset", str(synth_dataset.root)) in kinds
    db = next(m for m in models if m["path"] == st["result"]["database"])
    assert db["figures"]["images"] == len(synth_dataset.split("reference")) and db["date"]


def test_training_jobs_validate_their_dataset(worker, tmp_path):
    import pytest

    from ml_backend.service.protocol import RemoteError

    for kind in ("train_regression", "train_keypoints"):
        with pytest.raises(RemoteError, match="not found"):
            worker.start_job(kind, dataset=str(tmp_path / "nowhere"))


def test_solve_pnp_request(worker):
    import pytest

    from ml_backend.service.protocol import RemoteError
    from pose_addon.core.cameras import Intrinsics, project_points
    from pose_addon.core.sampling import look_at

    intr = Intrinsics(640, 480, 500.0, 500.0, 319.5, 239.5)
    T = look_at(np.array([20.0, -25.0, 8.0]), np.array([0.0, 0.0, 5.0]))
    pts = np.random.default_rng(0).uniform([-7, -5, 0], [7, 5, 12], (20, 3))
    uv, _ = project_points(intr.K, T, pts)
    uv[0] += 60  # one wrong correspondence
    r = worker.request("solve_pnp", {"points2d": uv.tolist(), "points3d": pts.tolist(), "intrinsics": intr.to_dict()})
    assert r["success"] and r["inliers"][0] is False and r["n_inliers"] == 19
    np.testing.assert_allclose(np.array(r["cam_from_world"]), T, atol=1e-6)
    few = worker.request("solve_pnp", {"points2d": uv[:3].tolist(), "points3d": pts[:3].tolist(),
                                       "intrinsics": intr.to_dict()})
    assert not few["success"] and "at least" in few["message"]
    with pytest.raises(RemoteError, match="points2d"):
        worker.request("solve_pnp", {"points2d": [[1, 2, 3]], "points3d": [[1, 2]], "intrinsics": intr.to_dict()})
