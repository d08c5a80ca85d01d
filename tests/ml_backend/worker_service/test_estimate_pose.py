"""The synchronous ``estimate_pose`` request: any photo method through the method interface, the ``estimate``
job's row (``n_inliers``, the acceptance rule's reason), methods opened once per (method, dataset, options)."""
import numpy as np
import pytest

from ml_backend.evaluation import pose_error
from ml_backend.service.protocol import RemoteError
from pose_addon.core.cameras import camera_center


def _cached(worker, method: str) -> int:
    return sum(1 for m in worker.info()["cached_methods"] if m == method)


def test_another_matching_method_and_the_method_cache(worker, synth_dataset):
    """colmap (not one of the old special cases) against a dataset; a second request reuses the opened method,
    other options open another one."""
    q0, q1 = synth_dataset.split("query")[:2]
    before = _cached(worker, "colmap")
    for q in (q0, q1):
        r = worker.estimate_pose(str(synth_dataset.path(q.image)), method="colmap",
                                 dataset=str(synth_dataset.root), timeout=300)
        assert r["success"], r["reason"]
        assert r["method"] == "colmap" and "inliers" not in r and r["n_inliers"] >= 12 and r["reason"] is None
        assert np.linalg.norm(camera_center(np.array(r["cam_from_world"])) - camera_center(q.cam_from_world)) < 0.1
        assert r["intrinsics"]["fx"] == q.intrinsics.fx  # looked up from the dataset frame of the image
        assert np.allclose(np.array(r["matrix_world"])[:3, 3], camera_center(np.array(r["cam_from_world"])))
        assert r["timings"]["server"] >= r["timings"]["compute"] > 0
    assert _cached(worker, "colmap") == before + 1  # opened once for both photos
    worker.estimate_pose(str(synth_dataset.path(q0.image)), method="colmap", dataset=str(synth_dataset.root),
                         options={"k": 2}, timeout=300)
    assert _cached(worker, "colmap") == before + 2


def test_failure_carries_the_acceptance_rule_reason(worker, synth_dataset, synth_db):
    q = synth_dataset.split("query")[0]
    r = worker.estimate_pose(str(synth_dataset.path(q.image)), database=str(synth_db),
                             intrinsics=q.intrinsics.to_dict(), options={"min_inliers": 100000})
    assert not r["success"] and r["cam_from_world"] is None and r["matrix_world"] is None
    assert "inliers" in r["reason"] and "(< 100000)" in r["reason"] and r["n_inliers"] > 0


def test_focal_length_solved_when_asked(worker, synth_dataset, synth_db):
    q = synth_dataset.split("query")[0]
    r = worker.estimate_pose(str(synth_dataset.path(q.image)), dataset=str(synth_dataset.root),
                             database=str(synth_db), intrinsics={"source": "estimate", "hfov_deg": 60.0},
                             timeout=300)  # the solve starts from a 60 deg guess
    assert r["success"], r["reason"]
    assert r["intrinsics"]["fx"] == pytest.approx(q.intrinsics.fx, rel=0.02)
    assert pose_error(np.array(r["cam_from_world"]), q.cam_from_world)[1] < 1.0


def test_resize_max_downscales_and_answers_in_the_photos_pixels(worker, synth_dataset, synth_db):
    """``options.resize_max`` bounds the side a method sees; the row's intrinsics stay the photo's own."""
    q = synth_dataset.split("query")[0]
    r = worker.estimate_pose(str(synth_dataset.path(q.image)), database=str(synth_db),
                             intrinsics=q.intrinsics.to_dict(), options={"resize_max": 256})
    assert r["success"], r["reason"]
    got, want = r["intrinsics"], q.intrinsics.to_dict()
    assert got.pop("dist") == want.pop("dist") and got == pytest.approx(want)
    assert np.linalg.norm(camera_center(np.array(r["cam_from_world"])) - camera_center(q.cam_from_world)) < 0.25


def test_methods_that_cannot_run_are_clear_errors(worker, synth_dataset, synth_db):
    q = synth_dataset.split("query")[0]
    img, intr = str(synth_dataset.path(q.image)), q.intrinsics.to_dict()
    with pytest.raises(RemoteError) as e:
        worker.estimate_pose(img, method="no_such_method", database=str(synth_db), intrinsics=intr)
    assert e.value.code == "invalid_params" and "unknown method 'no_such_method'" in e.value.message
    with pytest.raises(RemoteError) as e:
        worker.estimate_pose(img, method="keypoints_oracle", dataset=str(synth_dataset.root), intrinsics=intr)
    assert e.value.code == "invalid_params" and "ground truth" in e.value.message
    with pytest.raises(RemoteError) as e:
        worker.estimate_pose(img, method="regression", dataset=str(synth_dataset.root), intrinsics=intr,
                             options={"checkpoint": "/no/such/checkpoint.pt"})
    assert e.value.code == "not_found" and "/no/such/checkpoint.pt" in e.value.message
    with pytest.raises(RemoteError) as e:
        worker.estimate_pose(img, database=str(synth_db), intrinsics=intr, options={"no_such_option": 1})
    assert e.value.code == "invalid_params" and "no_such_option" in e.value.message
    with pytest.raises(RemoteError) as e:
        worker.estimate_pose(img, database=str(synth_db), intrinsics=intr | {"width": intr["width"] * 2})
    assert e.value.code == "invalid_params" and "intrinsics are for" in e.value.message


def test_photo_is_read_with_its_exif_orientation(worker, synth_dataset, synth_db, tmp_path):
    """A photo stored rotated with an EXIF orientation tag is localized as displayed (the intrinsics' size)."""
    from PIL import Image

    q = synth_dataset.split("query")[0]
    path = tmp_path / "rotated.png"
    with Image.open(synth_dataset.path(q.image)) as im:
        exif = Image.Exif()
        exif[0x0112] = 6  # displayed after a 90 deg clockwise turn
        im.convert("RGB").rotate(90, expand=True).save(path, exif=exif)
    r = worker.estimate_pose(str(path), database=str(synth_db), intrinsics=q.intrinsics.to_dict())
    assert r["success"], r["reason"]
    assert np.linalg.norm(camera_center(np.array(r["cam_from_world"])) - camera_center(q.cam_from_world)) < 0.1
