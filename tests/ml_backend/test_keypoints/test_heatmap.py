"""Heatmap keypoints: sub-pixel decoding, crop geometry, training samples, resumable training with its dataset
digest, the method end to end and single photos (tiny random-weight models: code paths, not accuracy)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ml_backend.keypoints import heatmap_train as ht
from ml_backend.keypoints import pipeline
from ml_backend.keypoints.heatmap import (
    STRIDE,
    apply_affine,
    cell_to_input,
    crop_affine,
    decode_heatmaps,
    invert_affine,
    resolve_device,
    warp_crop,
)

TINY_HM = {"size": 64, "width": 8, "batch": 2, "samples_per_epoch": 4, "time_s": 0.01, "pretrained": False,
           "val_views": 2, "progress": False}
CONF = {"n_keypoints": 8, "gl_views": 0, "heatmap": TINY_HM, "progress": False, "device": "cpu",
        "pose": {"min_conf": 0.0}}


def test_decode_recovers_a_subpixel_gaussian_peak():
    h, w, sigma = 16, 20, 1.25
    peaks = [(10.3, 7.6), (3.8, 12.45), (0.4, 0.2)]
    logits = torch.zeros(1, len(peaks), h, w)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    for k, (cx, cy) in enumerate(peaks):
        logits[0, k] = -((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma ** 2)
    xy, conf = decode_heatmaps(logits, torch.full((1, len(peaks)), 10.0))
    for k, (cx, cy) in enumerate(peaks):  # sub-pixel inside the map, to the nearest cell on its border
        tol = 0.05 if k < 2 else 0.5
        assert np.allclose(xy[0, k], cell_to_input(np.array([cx, cy])), atol=tol * STRIDE), (k, xy[0, k])
    assert (conf[0] > 0.8).all()  # sharp peaks, present: confident
    _, low = decode_heatmaps(logits, torch.full((1, len(peaks)), -10.0))
    assert (low < 1e-3).all()  # absent keypoints: no confidence


def test_crop_maps_image_points_to_crop_pixels():
    img = np.zeros((240, 320, 3), np.uint8)
    u, v = 201.0, 87.0
    img[int(v) - 1:int(v) + 2, int(u) - 1:int(u) + 2] = 255
    A = crop_affine(np.array([180.0, 110.0]), 150.0, 96, angle_deg=7.0)
    crop = warp_crop(img, A, 96).astype(np.float64)[..., 0]
    ys, xs = np.nonzero(crop > 0)
    centroid = np.array([np.average(xs, weights=crop[ys, xs]), np.average(ys, weights=crop[ys, xs])])
    assert np.allclose(centroid, apply_affine(A, np.array([[u, v]]))[0], atol=0.3)
    back = apply_affine(invert_affine(A), apply_affine(A, np.array([[u, v]])))
    assert np.allclose(back, [[u, v]], atol=1e-9)


def test_training_samples_follow_the_image(synth_dataset):
    from ml_backend.keypoints.labels import keypoint_set_for_dataset

    kset = keypoint_set_for_dataset(synth_dataset, k=8)
    view = ht.load_views(synth_dataset, synth_dataset.split("reference")[:1], kset, "blender")[0]
    h, w = view.rgb.shape[:2]
    dots = np.zeros((h, w, 3), np.uint8)
    inside = view.vis >= 1
    for (x, y) in view.uv[inside]:
        dots[max(0, int(round(y)) - 3):int(round(y)) + 4, max(0, int(round(x)) - 3):int(round(x)) + 4] = 255
    view = ht.TrainView(dots, view.uv, view.vis, "blender", "x")
    rng = np.random.default_rng(0)
    conf = dict(ht.default_train_conf)
    for regime in ("whole", "loose", "tight", "zoom", "eval"):
        crop, uv, vis = ht.make_sample(view, rng, 96, conf, regime)
        assert crop.shape == (96, 96, 3) and uv.shape == (len(kset), 2)
        assert (vis[~inside] == 0).all()
        for (x, y), s in zip(uv, vis):
            if s:
                assert crop[int(round(y)), int(round(x))].mean() > 60, (regime, x, y)


@pytest.fixture(scope="module")
def trained_hm(synth_dataset, tmp_path_factory):
    cache = tmp_path_factory.mktemp("hmcache")
    events = []
    model = pipeline.ensure_model(synth_dataset, dict(CONF, cache=str(cache)), on_event=events.append)
    return model, cache, events


def test_training_records_digest_progress_curves_and_resumes(trained_hm, synth_dataset):
    model, cache, events = trained_hm
    assert model.backend == "heatmap" and model.weights.name == "model.pt"
    assert any(e["event"] == "progress" and "validation median" in e["message"] for e in events)
    for name in ("checkpoint.pt", "model.pt", "model.json", "curves.png", "keypoints.json"):
        assert (model.model_dir / name).is_file(), name
    saved = torch.load(model.weights, map_location="cpu", weights_only=True)
    assert saved["meta"]["dataset_digest"] == ht.dataset_digest(synth_dataset)
    assert saved["meta"]["names"] == list(model.kset.names) and saved["meta"]["epochs"] == 1
    ck = torch.load(model.model_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ck["epoch"] == 1 and len(ck["history"]) == 1
    # more time on the same run continues from the checkpoint
    views = ht.load_views(synth_dataset, synth_dataset.reference_frames(), model.kset, "blender")
    conf = dict(ht.default_train_conf, **dict(TINY_HM, time_s=ck["elapsed_s"] + 0.01))
    ht.train_heatmap(views, model.kset, model.model_dir, ht.dataset_digest(synth_dataset), conf)
    ck2 = torch.load(model.model_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ck2["epoch"] == 2 and [h["epoch"] for h in ck2["history"]] == [1, 2]
    assert ck2["history"][0] == ck["history"][0]
    with pytest.raises(ValueError, match="another training"):
        ht.train_heatmap(views, model.kset, model.model_dir, "0" * 16, conf)
    again = pipeline.ensure_model(synth_dataset, dict(CONF, cache=str(cache)))  # cached: no training
    assert again.weights == model.weights
    more = dict(CONF, cache=str(cache), heatmap=dict(TINY_HM, time_s=ck2["elapsed_s"] + 0.01))
    longer = pipeline.ensure_model(synth_dataset, more)  # a larger budget continues the same run
    assert longer.model_dir == model.model_dir and longer.train_info["epochs"] == 3
    assert "epoch_cpu_s" in longer.train_info["history"][-1]


def test_model_is_refused_for_another_dataset_or_keypoint_set(trained_hm, synth_dataset, tmp_path):
    from ml_backend.keypoints.labels import KeypointSet

    from ..synthetic import build_dataset

    model, _, _ = trained_hm
    other = build_dataset(tmp_path / "other", n_ref=3, n_query=1)
    with pytest.raises(ht.ModelMismatch, match="trained on dataset"):
        ht.load_heatmap_model(model.weights, "cpu", other)
    with pytest.raises(ht.ModelMismatch, match="other keypoints"):
        ht.load_heatmap_model(model.weights, "cpu", synth_dataset, KeypointSet(["a", "b", "c", "d"], np.eye(4, 3)))
    with pytest.raises(ht.ModelMismatch):
        pipeline.ensure_model(other, dict(CONF, weights=str(model.weights), keypoints=None))
    with pytest.raises(FileNotFoundError, match="keypoint model not found"):
        ht.load_heatmap_model(tmp_path / "none.pt")
    assert ht.is_heatmap_model(model.weights) and not ht.is_heatmap_model(tmp_path / "none.pt")


def test_detections_pose_and_method_rows(trained_hm, synth_dataset, tmp_path):
    from ml_backend.bench import run_method_subprocess

    model, cache, _ = trained_hm
    rows, dets = pipeline.localize_queries(model, synth_dataset, dict(CONF, cache=str(cache)))
    assert [r["id"] for r in rows] == [f.id for f in synth_dataset.split("query")]
    for r, d in zip(rows, dets):
        assert d["uv"].shape == (8, 2) and np.isfinite(d["uv"]).all() and ((0 <= d["conf"]) & (d["conf"] <= 1)).all()
        if r["cam_from_world"] is None:
            assert r["message"]
        else:
            assert r["n_keypoints_used"] >= 4 and r["solver"].startswith("ransac")
    res = run_method_subprocess("keypoints", synth_dataset.root, tmp_path / "kp", dict(CONF, cache=str(cache)),
                                tmp_path / "kp.json")
    assert "rows" in res, res
    details = json.loads((tmp_path / "kp" / "method_metrics.json").read_text())
    assert details["backend"] == "heatmap" and details["median_keypoint_px"] > 0
    res_o = run_method_subprocess("keypoints_oracle", synth_dataset.root, tmp_path / "or",
                                  {"cache": str(cache), "n_keypoints": 8, "progress": False, "noise_px": 2.0},
                                  tmp_path / "or.json")
    od = json.loads((tmp_path / "or" / "method_metrics.json").read_text())
    assert "rows" in res_o and od["median_keypoint_px"] == pytest.approx(2.0 * pipeline.RAYLEIGH_MEDIAN, rel=0.5)


def test_single_photo_with_a_heatmap_model(trained_hm, synth_dataset, tmp_path):
    import shutil

    from ml_backend.estimate import estimate_photos

    model, cache, _ = trained_hm
    q = synth_dataset.split("query")[0]
    shutil.copy(synth_dataset.path(q.image), tmp_path / "photo.png")
    rows = estimate_photos(tmp_path / "photo.png", "keypoints", {"model": str(model.weights), "device": "cpu",
                                                                  "pose": {"min_conf": 0.0}}, q.intrinsics.to_dict())
    assert len(rows) == 1 and rows[0]["method"] == "keypoints"
    assert rows[0]["success"] == (rows[0]["cam_from_world"] is not None)


def test_device_is_cuda_when_present():
    assert resolve_device(None) == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("0") == "cuda:0" and resolve_device("cpu") == "cpu"


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated", b"not a torch file at all"])
def test_corrupt_model_file_is_an_error_naming_it(tmp_path, content):
    from ml_backend.integrity import CorruptFile

    bad = tmp_path / "model.pt"
    bad.write_bytes(content)
    with pytest.raises(CorruptFile, match="model.pt"):
        ht.load_heatmap_model(bad)


def test_corrupt_yolo_weights_are_an_error_naming_them(tmp_path):
    from ml_backend.keypoints._yolo_proc import _open_yolo

    bad = tmp_path / "weights.pt"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="weights.pt"):
        _open_yolo(str(bad))


def test_eval_and_viz_commands_on_a_heatmap_model(trained_hm, synth_dataset, tmp_path, capsys):
    from ml_backend.keypoints import cli

    model, cache, _ = trained_hm
    p = __import__("argparse").ArgumentParser()
    cli.add_parsers(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(["keypoints-eval", "--dataset", str(synth_dataset.root), "--weights", str(model.weights),
                         "--n-keypoints", "8", "--hidden-weight", "0.3", "--zoom", "0"])
    assert cli.dispatch(args) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["hidden_weight"] == 0.3 and out["zoom"] == 0.0 and out["n_queries"] == len(synth_dataset.split("query"))
    assert 0.0 <= out["visibility_accuracy"] <= 1.0 and set(out["recall"]) and out["median_err_px"] > 0
    args = p.parse_args(["keypoints-viz", "--dataset", str(synth_dataset.root), "--out", str(tmp_path / "viz"),
                         "--weights", str(model.weights), "--n-keypoints", "8", "--max", "1"])
    assert cli.dispatch(args) == 0
    assert len(list((tmp_path / "viz").glob("*_keypoints.png"))) == 1
