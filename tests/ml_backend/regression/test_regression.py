"""Regression pipeline: extractors, HDF5 features, the pose net, training (checkpoints, resume), inference."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ml_backend.blender_runner import REPO_ROOT
from ml_backend.regression import extractors, model
from ml_backend.regression.features import extract_features, load_features
from ml_backend.regression.train import load_checkpoint, merge_config, train
from pose_addon.core.poses import axis_angle_to_matrix

torch.set_num_threads(1)


def test_sixd_roundtrip_and_geodesic():
    rng = np.random.default_rng(0)
    R = torch.from_numpy(np.stack([axis_angle_to_matrix(rng.normal(size=3)) for _ in range(5)]))
    assert torch.allclose(model.sixd_to_matrix(model.matrix_to_sixd(R)), R, atol=1e-6)
    assert torch.allclose(model.geodesic_deg(R, R), torch.zeros(5, dtype=R.dtype), atol=1e-3)
    net = model.BuildingPoseNetCached(16, (8,), "quat")
    c, Rq = net(torch.randn(3, 16))
    assert c.shape == (3, 3) and torch.allclose(Rq @ Rq.transpose(1, 2), torch.eye(3).expand(3, 3, 3), atol=1e-5)


def test_extractor_errors(monkeypatch):
    monkeypatch.delenv("POSE_CLIP_CHECKPOINT", raising=False)
    with pytest.raises(extractors.ExtractorUnavailable, match="needs its weights as a file"):
        extractors.create_extractor("clip:ViT-B-32")
    with pytest.raises(extractors.ExtractorUnavailable, match="not found"):
        extractors.create_extractor("clip:ViT-B-32", checkpoint="/nonexistent/clip.bin")
    with pytest.raises(KeyError, match="unknown extractor"):
        extractors.create_extractor("resnet")


def test_efficientnet_weights_map_onto_timm():
    ex = extractors.create_extractor("efficientnet-lite0")
    assert ex.version.startswith("efficientnet-lite0") and ex.dim == 3840
    out = ex(torch.rand(1, 3, 60, 80))
    assert out.shape == (1, 3840) and torch.isfinite(out).all()


def test_extract_features_resumes(synth_dataset, tmp_path):
    ex = extractors.create_extractor("efficientnet-lite0", random_weights=True)
    ids = [f.id for f in synth_dataset.split("reference")[:5]]
    p = extract_features(synth_dataset.root, tmp_path, ex, frame_ids=ids, augment={"n_views": 1}, chunk=2,
                         progress=False)
    d = load_features(p)
    assert d["features"].shape == (10, 3840) and sorted(set(d["image_ids"])) == sorted(ids)
    assert list(d["view"][:2]) == [0, 1] and d["attrs"]["extractor"] == "efficientnet-lite0"
    # interrupted after the first shard: the rerun reuses it and gives the same file
    p.unlink()
    calls = {"n": 0}
    orig = ex.forward

    def failing(x):
        calls["n"] += 1
        if calls["n"] > 1:
            raise KeyboardInterrupt
        return orig(x)

    ex.forward = failing
    with pytest.raises(KeyboardInterrupt):
        extract_features(synth_dataset.root, tmp_path, ex, frame_ids=ids, augment={"n_views": 1}, chunk=2,
                         batch=4, progress=False)
    shard_dir = p.with_name(p.stem + ".shards")
    assert [x.name for x in shard_dir.iterdir() if x.suffix == ".h5"] == ["00000.h5"] and not p.exists()
    ex.forward = orig
    q = extract_features(synth_dataset.root, tmp_path, ex, frame_ids=ids, augment={"n_views": 1}, chunk=2,
                         progress=False)
    assert q == p and np.allclose(load_features(q)["features"], d["features"], atol=1e-5)
    assert not shard_dir.exists()


def _toy_features(path: Path, n_img=60, views=2, dim=32, seed=0):
    """Features that are a fixed random function of the pose, so the net can learn them."""
    from ml_backend.regression.features import _write_h5
    from pose_addon.core.sampling import look_at

    rng = np.random.default_rng(seed)
    W = rng.normal(size=(9, dim))
    rows_f, rows_T, ids, vs = [], [], [], []
    for i in range(n_img):
        az, el, r = rng.uniform(0, 2 * np.pi), rng.uniform(0.1, 0.6), rng.uniform(25, 40)
        eye = r * np.array([np.cos(az) * np.cos(el), np.sin(az) * np.cos(el), np.sin(el)]) + [0, 0, 8]
        T = look_at(eye, np.array([0.0, 0, 8]))
        base = np.concatenate([eye / 30, [np.cos(az), np.sin(az), el, np.cos(2 * az), np.sin(2 * az), 1.0]])
        for v in range(views):
            rows_f.append(np.tanh(base @ W) + rng.normal(0, 0.01 * v, dim))
            rows_T.append(T)
            ids.append(f"img_{i:03d}")
            vs.append(v)
    _write_h5(path, {"features": np.array(rows_f, np.float32), "image_ids": np.array(ids, dtype=object),
                     "view": np.array(vs, np.int32), "cam_from_world": np.array(rows_T)},
              {"extractor": "efficientnet-lite0", "extractor_version": "random", "preprocessing": "{}",
               "conf": "{}"})
    return path


def _cfg(tmp_path, name, **kw):
    return merge_config({"features": str(_toy_features(tmp_path / "toy.h5")), "out": str(tmp_path / name),
                         "epochs": 8, "batch_size": 16, "hidden": [64], "progress": False, "threads": 1,
                         "patience": 100, **kw})


def test_train_resume_matches_uninterrupted(tmp_path, monkeypatch):
    from ml_backend.regression import train as train_mod

    full = load_checkpoint(train(_cfg(tmp_path, "full")).with_name("last.pt"))
    saves = {"n": 0}
    orig = train_mod._save

    def interrupt_after_4_epochs(path, obj):
        orig(path, obj)
        if path.name == "last.pt":
            saves["n"] += 1
            if saves["n"] == 4:
                raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "_save", interrupt_after_4_epochs)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tmp_path, "resumed"))
    monkeypatch.setattr(train_mod, "_save", orig)
    assert load_checkpoint(tmp_path / "resumed" / "last.pt")["epoch"] == 3
    res = load_checkpoint(train(_cfg(tmp_path, "resumed"), resume=True).with_name("last.pt"))
    assert res["epoch"] == full["epoch"] == 7
    for k in full["model"]:
        assert torch.allclose(full["model"][k], res["model"][k], atol=1e-5), k
    assert abs(full["history"][-1]["val_median_t_m"] - res["history"][-1]["val_median_t_m"]) < 1e-5
    out = tmp_path / "full"
    assert (out / "metrics.csv").read_text().count("\n") == 9 and (out / "curves.png").is_file()
    assert any((out / "tb").iterdir())


def test_early_stopping_and_fresh_process_reproduces_val(tmp_path):
    cfg = _cfg(tmp_path, "es", epochs=200, patience=3, lr=1e-2, schedule="none")
    best = train(cfg)
    ck = load_checkpoint(best)
    assert len(ck["history"]) < 200 or ck["bad_epochs"] >= 3
    val = json.loads(ck["val_metrics"]) if isinstance(ck["val_metrics"], str) else ck["val_metrics"]
    code = ("import json,sys,numpy as np;from ml_backend.regression.train import *;"
            "from ml_backend.regression.features import load_features;"
            f"p=PosePredictor({str(best)!r},random_weights=True);d=load_features({cfg['features']!r});"
            "ids=set(p.checkpoint['val_ids']);m=np.array([i in ids for i in d['image_ids']])&(d['view']==0);"
            "print(json.dumps(evaluate_features(p.model,d['features'][m],d['cam_from_world'][m],p.norm)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    again = json.loads(out.stdout.strip().splitlines()[-1])
    assert abs(again["median_t_m"] - val["median_t_m"]) < 1e-6
    assert abs(again["median_R_deg"] - val["median_R_deg"]) < 1e-6


def test_infer_writes_json_csv(synth_dataset, tmp_path):
    from ml_backend.regression.infer import infer

    ex = extractors.create_extractor("efficientnet-lite0", random_weights=True)
    feats = extract_features(synth_dataset.root, tmp_path, ex, progress=False)
    best = train(merge_config({"features": str(feats), "out": str(tmp_path / "run"), "epochs": 2,
                               "hidden": [32], "progress": False, "val_fraction": 0.2}))
    j, c = infer(best, synth_dataset.root, tmp_path / "poses", random_weights=True, progress=False)
    d = json.loads(j.read_text())
    assert len(d["poses"]) == len(synth_dataset.split("query"))
    p = d["poses"][0]
    assert np.asarray(p["cam_from_world"]).shape == (4, 4) and "t_err_m" in p and "blender_matrix_world" in p
    assert c.read_text().splitlines()[0].startswith("id,image,cam_from_world_00")


def test_estimate_single_photos(synth_dataset, tmp_path):
    """The regression answers for photos outside any dataset (the worker's estimate job path)."""
    import shutil

    from ml_backend.estimate import estimate_photos

    ex = extractors.create_extractor("efficientnet-lite0", random_weights=True)
    feats = extract_features(synth_dataset.root, tmp_path, ex, progress=False)
    best = train(merge_config({"features": str(feats), "out": str(tmp_path / "run"), "epochs": 2,
                               "hidden": [32], "progress": False, "val_fraction": 0.2}))
    photos = tmp_path / "photos"
    photos.mkdir()
    q = synth_dataset.split("query")[0]
    shutil.copy(synth_dataset.path(q.image), photos / "a.png")
    rows = estimate_photos(photos, "regression", {"checkpoint": str(best), "random_weights": True},
                           q.intrinsics.to_dict())
    assert len(rows) == 1 and rows[0]["success"] and np.asarray(rows[0]["cam_from_world"]).shape == (4, 4)
    assert rows[0]["matrix_world"] is not None and rows[0]["method"] == "regression"
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        estimate_photos(photos, "regression", {"checkpoint": str(tmp_path / "none.pt")}, q.intrinsics.to_dict())
    refined = estimate_photos(photos, "regression+refine", {"checkpoint": str(best), "random_weights": True,
                                                            "dataset": str(synth_dataset.root)},
                              q.intrinsics.to_dict())
    assert "refined" in refined[0] and "refine" in refined[0]["timings"] and refined[0]["matcher"]
    with pytest.raises(FileNotFoundError, match="scene.glb"):
        estimate_photos(photos, "regression+refine", {"checkpoint": str(best), "random_weights": True},
                        q.intrinsics.to_dict())
