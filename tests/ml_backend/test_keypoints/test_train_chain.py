"""The whole keypoint chain on a tiny set: labels -> 1-epoch offline YOLO training -> detections -> PnP, metrics,
the oracle, figures, the methods through ``run-method``, with every network connection of the children refused."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ml_backend.keypoints import pipeline
from ml_backend.keypoints.viz import draw_frame

BLOCK_NET = '''
import os, socket
_log = os.environ.get("NET_ATTEMPT_LOG")
_orig = socket.socket.connect
def _connect(self, address, *a, **k):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        if _log:
            with open(_log, "a") as f:
                f.write(repr(address) + "\\n")
        raise OSError("network disabled in this test")
    return _orig(self, address, *a, **k)
socket.socket.connect = _connect
socket.socket.connect_ex = lambda self, address: (_connect(self, address), 0)[1]
socket.create_connection = lambda address, *a, **k: (_ for _ in ()).throw(OSError("network disabled in this test"))
'''

TINY = {"backend": "yolo", "n_keypoints": 8, "train_views": 0,
        "train": {"epochs": 1, "time": None, "imgsz": 160, "batch": 8, "mosaic": 0.0}, "imgsz": 160, "device": "cpu",
        "progress": False, "pose": {"min_conf": 0.0}}


@pytest.fixture(scope="module")
def net_block(tmp_path_factory):
    d = tmp_path_factory.mktemp("netblock")
    (d / "sitecustomize.py").write_text(BLOCK_NET)
    log = d / "attempts.log"
    mp = pytest.MonkeyPatch()
    import os

    mp.setenv("PYTHONPATH", os.pathsep.join([str(d)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH")
                                                         else [])))
    mp.setenv("NET_ATTEMPT_LOG", str(log))
    yield log
    mp.undo()


@pytest.fixture(scope="module")
def trained(synth_dataset, tmp_path_factory, net_block):
    cache = tmp_path_factory.mktemp("kpcache")
    events = []
    conf = dict(TINY, cache=str(cache))
    model = pipeline.ensure_model(synth_dataset, conf, on_event=events.append)
    return model, conf, cache, events


def test_training_is_offline_cached_and_reports_progress(trained, synth_dataset, net_block):
    model, conf, cache, events = trained
    assert model.weights.is_file() and (model.model_dir / "train.json").is_file()
    assert any(e.get("event") == "progress" and e.get("total") == 1 for e in events)
    assert (cache / "ultralytics" / "Ultralytics" / "Arial.ttf").is_file()
    settings = json.loads((cache / "ultralytics" / "Ultralytics" / "settings.json").read_text())
    assert settings["sync"] is False and settings["runs_dir"].startswith(str(cache))
    assert not net_block.exists() or net_block.read_text() == "", net_block.read_text()
    again = pipeline.ensure_model(synth_dataset, conf)  # cached: no second training
    assert again.weights == model.weights


def test_detections_to_pose_metrics_oracle_and_figure(trained, synth_dataset, tmp_path, net_block):
    model, conf, cache, _ = trained
    rows, dets = pipeline.localize_queries(model, synth_dataset, conf)
    q = synth_dataset.split("query")
    assert [r["id"] for r in rows] == [f.id for f in q]
    for r, d in zip(rows, dets):
        assert d["uv"].shape == (8, 2) and d["conf"].shape == (8,)
        assert r["time_s"] > 0 and isinstance(r["keypoints_used"], list)
        if r["cam_from_world"] is None:
            assert r["message"]  # a tiny model may not find 4 keypoints: the failure says why
        else:
            assert r["n_keypoints_used"] >= 4 and np.asarray(r["cam_from_world"]).shape == (4, 4)
    m = pipeline.detection_metrics(synth_dataset, model.kset, dets)
    assert {"pck@5px", "pck@10px", "median_err_px", "n_visible"} <= set(m) and m["n_visible"] > 0
    oracle = pipeline.oracle_queries(synth_dataset, model.kset, 1.0)
    assert all(r["cam_from_world"] is not None for r in oracle)
    from ml_backend.evaluation import evaluate_results

    metrics, _ = evaluate_results(oracle, synth_dataset)
    assert metrics["recall"]["0.5m,5deg"] == 1.0
    png = draw_frame(synth_dataset, q[0], model.kset, tmp_path / "viz.png", dets[0], min_conf=0.0)
    import cv2

    img = cv2.imread(str(png))
    assert img.shape == (240, 640, 3)
    assert not net_block.exists() or net_block.read_text() == ""


def test_methods_through_run_method(trained, synth_dataset, tmp_path, net_block):
    from ml_backend.bench import format_table, run_method_subprocess

    model, conf, cache, _ = trained
    res = run_method_subprocess("keypoints", synth_dataset.root, tmp_path / "kp", dict(conf, val=True),
                                tmp_path / "kp.json")
    assert "rows" in res, res
    details = json.loads((tmp_path / "kp" / "method_metrics.json").read_text())
    assert details["n_keypoints"] == 8 and "pck@10px" in details
    assert set(details["oks"]) >= {"pose_map50", "pose_map50_95"}, details["oks"]
    res_o = run_method_subprocess("keypoints_oracle", synth_dataset.root, tmp_path / "or",
                                  {"cache": str(cache), "n_keypoints": 8, "progress": False}, tmp_path / "or.json")
    assert "rows" in res_o, res_o
    od = json.loads((tmp_path / "or" / "method_metrics.json").read_text())
    det = json.loads((cache / "keypoints" / f"{synth_dataset.root.name}.detector.json").read_text())
    if det["median_err_px"] is not None:  # matched to the detector's error when it has a finite median
        assert od["noise_from"].endswith(".detector.json")
        assert od["noise_px"] == pytest.approx(det["median_err_px"] / pipeline.RAYLEIGH_MEDIAN)
    else:
        assert od["noise_from"] == "conf" and od["noise_px"] == 2.0
    sweep = od["fixed_noise"]  # same seed: the noise draws scale with the sigma, so do the errors
    assert list(sweep) == ["1px", "2px", "3px", "5px"]
    assert sweep["1px"]["median_t_m"] < sweep["5px"]["median_t_m"]
    table = format_table({"scene": "s", "n_references": 16, "n_queries": 4, "methods": {
        "keypoints": {"recall": {k: 0.0 for k in ("0.05m,1deg", "0.25m,2deg", "0.5m,5deg", "5m,10deg")},
                      "median_t_m": None, "median_R_deg": None, "localized": 0.0, "ms_per_query": 1.0,
                      "details": details}}})
    assert "pck@10px" in table
    assert not net_block.exists() or net_block.read_text() == ""


def test_user_pt_missing_is_a_clear_error(synth_dataset, tmp_path):
    with pytest.raises(FileNotFoundError, match="model weights not found"):
        pipeline.ensure_model(synth_dataset, dict(TINY, cache=str(tmp_path), model=str(tmp_path / "mine.pt")))


def test_estimate_single_photos(trained, synth_dataset, tmp_path, net_block):
    """Keypoints + PnP on photos outside any dataset, with the keypoint set saved beside the weights."""
    import shutil

    from ml_backend.estimate import estimate_photos

    model, conf, cache, _ = trained
    kp_json = tmp_path / "keypoints.json"
    model.kset.save(kp_json)
    q = synth_dataset.split("query")[0]
    shutil.copy(synth_dataset.path(q.image), tmp_path / "photo.png")
    rows = estimate_photos(tmp_path / "photo.png", "keypoints",
                           dict(conf, model=str(model.weights), keypoints=str(kp_json)), q.intrinsics.to_dict())
    assert len(rows) == 1 and rows[0]["method"] == "keypoints" and rows[0]["message"] is not None
    if rows[0]["success"]:  # a one-epoch model may not find four keypoints: then it must say so
        assert np.asarray(rows[0]["cam_from_world"]).shape == (4, 4) and len(rows[0]["keypoints_used"]) >= 4
    else:
        assert rows[0]["cam_from_world"] is None and rows[0]["message"]
    with pytest.raises(FileNotFoundError, match="keypoint model not found"):
        estimate_photos(tmp_path / "photo.png", "keypoints", {"model": str(tmp_path / "none.pt")},
                        q.intrinsics.to_dict())
