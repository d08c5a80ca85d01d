"""Keypoint caches are keyed by the dataset's digest: two datasets with the same folder name in one cache each get
their own training views and model; views of another dataset are refused naming both digests."""
from __future__ import annotations

import shutil

import pytest

from ml_backend.keypoints import heatmap_train as ht
from ml_backend.keypoints import pipeline
from pose_addon.core.dataset import Dataset, DatasetError

from ..synthetic import BOX_MAX, BOX_MIN, build_dataset

TINY_HM = {"size": 64, "width": 8, "batch": 2, "samples_per_epoch": 4, "time_s": 0.01, "pretrained": False,
           "val_views": 2, "progress": False}
CONF = {"n_keypoints": 8, "gl_views": 2, "heatmap": TINY_HM, "progress": False, "device": "cpu"}


def _scene_dataset(root, n_ref: int, seed: int) -> Dataset:
    """A synthetic dataset with the scene facts the Blender side records (bounds, boxes, target), which the
    worker-side training views are sampled from."""
    ds = build_dataset(root, n_ref=n_ref, n_query=1, seed=seed)
    ds.manifest["scene"].update(bounds=[BOX_MIN.tolist(), BOX_MAX.tolist()], boxes=[[BOX_MIN.tolist(),
                                BOX_MAX.tolist()]], target=((BOX_MIN + BOX_MAX) / 2).tolist(), gltf="scene.glb")
    ds.save()
    return Dataset.load(root)


def test_same_folder_name_other_content_gets_its_own_views_and_model(tmp_path):
    a = _scene_dataset(tmp_path / "a" / "dataset", n_ref=4, seed=0)
    b = _scene_dataset(tmp_path / "b" / "dataset", n_ref=5, seed=1)
    assert a.root.name == b.root.name and ht.dataset_digest(a) != ht.dataset_digest(b)
    cache = tmp_path / "cache"
    conf = dict(CONF, cache=str(cache))
    models = {name: pipeline.ensure_model(ds, conf) for name, ds in (("a", a), ("b", b))}
    assert models["a"].model_dir != models["b"].model_dir
    views = {name: pipeline.gl_views_dir(cache, ds, 2) for name, ds in (("a", a), ("b", b))}
    assert views["a"] != views["b"]
    for name, ds in (("a", a), ("b", b)):
        digest = ht.dataset_digest(ds)
        tr = Dataset.load(views[name])
        plan = tr.manifest["render"]["train_plan"]
        assert plan["source_digest"] == digest and plan["source_dataset"] == str(ds.root.resolve())
        copied = [f for f in tr.split("reference") if f.extras.get("source") == "blender"]
        assert [f.id for f in copied] == [f.id for f in ds.reference_frames()]
        assert all(tr.path(f.image).read_bytes() == ds.path(f.image).read_bytes() for f in copied)
        _, meta = ht.load_heatmap_model(models[name].weights, "cpu", ds)  # refuses another dataset's model
        assert meta["dataset_digest"] == digest
    # the first dataset again: its own cached model, nothing rebuilt
    assert pipeline.ensure_model(a, conf).weights == models["a"].weights

    # a views folder that holds another dataset's views is refused, naming both
    shutil.rmtree(views["b"])
    shutil.copytree(views["a"], views["b"])
    other = dict(conf, heatmap=dict(TINY_HM, width=4))  # another model: its training needs the views
    with pytest.raises(DatasetError) as e:
        pipeline.ensure_model(b, other)
    assert ht.dataset_digest(a) in str(e.value) and ht.dataset_digest(b) in str(e.value)
