import json
import shutil

import h5py
import numpy as np
import pytest

from ml_backend import database
from ml_backend.database import FeatureDatabase, build_database, database_path, resolve_conf
from pose_addon.core.dataset import Dataset, DatasetError

from .synthetic import make_faces, plane_of_point


def test_contents(synth_dataset, synth_db):
    conf = resolve_conf("sift")
    assert synth_db.name.startswith("db-sift-n4000-") and synth_db.suffix == ".h5"
    assert synth_db == database_path(synth_db.parent, conf)
    assert not synth_db.with_name(synth_db.name + ".partial").exists()
    refs = synth_dataset.split("reference")
    faces = make_faces(0)
    with h5py.File(synth_db, "r") as f:
        assert json.loads(f.attrs["conf"]) == conf and f.attrs["conf_name"] == "sift"
        assert sorted(f["frames"]) == sorted(r.id for r in refs)
    with FeatureDatabase(synth_db) as db:
        assert len(db) == len(refs)
        assert db.global_descriptors.shape[0] == len(refs)
        for fr, ref in zip(db, sorted(refs, key=lambda r: r.id)):
            kp, desc, pts = fr.keypoints, fr.descriptors, fr.points3d
            assert kp.shape[1] == 2 and desc.shape == (len(kp), 128) and pts.shape == (len(kp), 3)
            assert len(kp) > 200 and np.isfinite(pts).all()
            assert np.allclose(fr.cam_from_world, ref.cam_from_world)
            assert fr.intrinsics == ref.intrinsics
        d = np.array([plane_of_point(faces, p) for p in db.frames[0].points3d])
        assert np.quantile(d, 0.9) < 1e-3 and d.max() < 0.05  # crease points (see lifting) within centimetres


def test_conf_changes_file_name():
    a = database_path("/x", resolve_conf("sift"))
    b = database_path("/x", resolve_conf({"name": "sift", "features": {"max_keypoints": 1000}}))
    assert a != b and a.parent == b.parent
    assert database_path("/x/explicit.h5", resolve_conf("sift")).name == "explicit.h5"
    with pytest.raises(ValueError, match="unknown database conf"):
        resolve_conf("surf")


def _small_dataset(src: Dataset, dst, n=4) -> Dataset:
    """Copy of the first ``n`` references of ``src``."""
    shutil.copytree(src.root, dst)
    ds = Dataset.load(dst)
    keep = {f.id for f in ds.split("reference")[:n]}
    ds.frames = [f for f in ds.frames if f.id in keep]
    ds.save()
    return ds


def test_resume_and_interrupt(synth_dataset, tmp_path, monkeypatch):
    ds = _small_dataset(synth_dataset, tmp_path / "ds", n=4)
    calls = []
    real = database.extract_frame

    def flaky(ds_, frame, conf):
        calls.append(frame.id)
        if len(calls) == 3:
            raise KeyboardInterrupt("simulated kill")
        return real(ds_, frame, conf)

    monkeypatch.setattr(database, "extract_frame", flaky)
    with pytest.raises(KeyboardInterrupt):
        build_database(ds.root, tmp_path / "db", progress=False)
    final = database_path(tmp_path / "db", resolve_conf("sift"))
    assert not final.exists()  # no final file from an interrupted build
    partial = final.with_name(final.name + ".partial")
    with h5py.File(partial, "r") as f:
        assert len(database._complete_ids(f)) == 2
    calls.clear()
    monkeypatch.setattr(database, "extract_frame", lambda *a: (calls.append(a[1].id), real(*a))[1])
    out = build_database(ds.root, tmp_path / "db", progress=False)
    assert out == final and final.exists() and not partial.exists()
    assert len(calls) == 2  # only the two missing frames
    calls.clear()
    assert build_database(ds.root, tmp_path / "db", progress=False) == final
    assert calls == []  # complete: nothing recomputed


def test_corrupt_partial_is_rebuilt(synth_dataset, tmp_path):
    ds = _small_dataset(synth_dataset, tmp_path / "ds", n=2)
    final = database_path(tmp_path / "db", resolve_conf("sift"))
    final.parent.mkdir(parents=True)
    final.with_name(final.name + ".partial").write_bytes(b"\x89HDF garbage from a killed writer")
    out = build_database(ds.root, tmp_path / "db", progress=False)
    with FeatureDatabase(out) as db:
        assert len(db) == 2


def test_grown_dataset_adds_frames(synth_dataset, tmp_path):
    ds = _small_dataset(synth_dataset, tmp_path / "ds", n=2)
    out = build_database(ds.root, tmp_path / "db", progress=False)
    full = Dataset.load(synth_dataset.root)
    ds.frames = [f for f in full.frames if f.split == "reference"][:3]
    ds.save()
    out2 = build_database(ds.root, tmp_path / "db", progress=False)
    assert out2 == out
    with FeatureDatabase(out2) as db:
        assert len(db) == 3


def test_bad_datasets(synth_dataset, tmp_path):
    with pytest.raises(DatasetError, match="manifest.json not found"):
        build_database(tmp_path / "nothing", tmp_path / "db")
    empty = Dataset.create(tmp_path / "empty", scene={}, render={}, planned={})
    empty.save()
    with pytest.raises(DatasetError, match="no 'reference' frames"):
        build_database(empty.root, tmp_path / "db")
    ds = _small_dataset(synth_dataset, tmp_path / "ds", n=1)
    (ds.root / ds.split("reference")[0].image).unlink()
    with pytest.raises(Exception, match="image not found"):
        build_database(ds.root, tmp_path / "db2", progress=False)
    with pytest.raises(FileNotFoundError):
        FeatureDatabase(tmp_path / "none.h5")
