import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from ml_backend.matching import database
from ml_backend.matching.database import (
    FeatureDatabase,
    build_database,
    check_database,
    database_path,
    reference_digest,
    resolve_conf,
)
from pose_addon.core.dataset import Dataset, DatasetError

from ..synthetic import make_faces, plane_of_point


def _final(ds: Dataset, folder) -> Path:
    conf = {**resolve_conf("sift"), "split": ds.reference_splits()}
    return database_path(folder, conf, reference_digest(ds))


def test_contents(synth_dataset, synth_db):
    conf = {**resolve_conf("sift"), "split": ["reference"]}
    assert synth_db.name.startswith("db-sift-n4000-") and synth_db.suffix == ".h5"
    assert synth_db == _final(synth_dataset, synth_db.parent)
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
    final = _final(ds, tmp_path / "db")
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
    final = _final(ds, tmp_path / "db")
    final.parent.mkdir(parents=True)
    final.with_name(final.name + ".partial").write_bytes(b"\x89HDF garbage from a killed writer")
    out = build_database(ds.root, tmp_path / "db", progress=False)
    with FeatureDatabase(out) as db:
        assert len(db) == 2


def test_grown_dataset_gets_its_own_database(synth_dataset, tmp_path):
    ds = _small_dataset(synth_dataset, tmp_path / "ds", n=2)
    out = build_database(ds.root, tmp_path / "db", progress=False)
    full = Dataset.load(synth_dataset.root)
    ds.frames = [f for f in full.frames if f.split == "reference"][:3]
    ds.save()
    out2 = build_database(ds.root, tmp_path / "db", progress=False)
    assert out2 != out  # other references, other digest
    with FeatureDatabase(out2) as db:
        assert len(db) == 3
    with pytest.raises(DatasetError, match="digest"):
        check_database(out, Dataset.load(ds.root))
    # an explicit path holding an earlier state of the same dataset folder is rebuilt
    explicit = tmp_path / "mine.h5"
    shutil.copyfile(out, explicit)
    assert build_database(ds.root, explicit, progress=False) == explicit
    with FeatureDatabase(explicit) as db:
        assert len(db) == 3 and db.dataset_digest == reference_digest(ds)


def test_bad_datasets(synth_dataset, tmp_path):
    with pytest.raises(DatasetError, match="manifest.json not found"):
        build_database(tmp_path / "nothing", tmp_path / "db")
    empty = Dataset.create(tmp_path / "empty", scene={}, render={}, planned={})
    empty.save()
    with pytest.raises(DatasetError, match="no reference frames"):
        build_database(empty.root, tmp_path / "db")
    ds = _small_dataset(synth_dataset, tmp_path / "ds", n=1)
    (ds.root / ds.split("reference")[0].image).unlink()
    with pytest.raises(Exception, match="image not found"):
        build_database(ds.root, tmp_path / "db2", progress=False)
    with pytest.raises(FileNotFoundError):
        FeatureDatabase(tmp_path / "none.h5")


def _shifted_copy(src: Dataset, dst, shift) -> Dataset:
    """The same renders in a world moved by ``shift`` [3]: identical images, ids and settings, other poses."""
    shutil.copytree(src.root, dst)
    ds = Dataset.load(dst)
    M = np.eye(4)
    M[:3, 3] = -np.asarray(shift, float)  # old_world_from_new_world
    for f in ds.frames:
        f.cam_from_world = f.cam_from_world @ M
    ds.save()
    return ds


def test_two_datasets_in_one_work_folder_localize_against_their_own_references(synth_dataset, tmp_path):
    """Same settings, same frame ids, same images: only the identity tells the databases apart."""
    from ml_backend.evaluation import pose_error
    from ml_backend.matching.localize import Localizer
    from ml_backend.methods._common import ensure_database

    a = _small_dataset(synth_dataset, tmp_path / "a", n=16)
    b = _shifted_copy(a, tmp_path / "b", [24.0, 0.0, 0.0])
    work = tmp_path / "work"
    db_a = ensure_database(a, work, {"progress": False})
    db_b = ensure_database(b, work, {"progress": False})
    assert db_a != db_b and db_a.parent == db_b.parent
    q = synth_dataset.split("query")[0]
    M = np.eye(4)
    M[:3, 3] = [-24.0, 0.0, 0.0]
    for db, truth in ((db_a, q.cam_from_world), (db_b, q.cam_from_world @ M)):
        with Localizer(db) as loc:
            r = loc.localize(synth_dataset.path(q.image), q.intrinsics)
        assert r.success and pose_error(r.cam_from_world, truth)[0] < 0.05
    with pytest.raises(DatasetError, match=rf"built from {a.root}.*digest.*not from the references of {b.root}"):
        ensure_database(b, work, {"database": str(db_a)})
