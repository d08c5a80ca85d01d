import numpy as np
import pytest

from ml_backend.evaluation import pose_error
from ml_backend.matching.extractors import ImageReadError
from ml_backend.matching.localize import Localizer, localize


def test_localizes_queries_to_cm(synth_dataset, synth_db):
    with Localizer(synth_db) as loc:
        for q in synth_dataset.split("query"):
            r = loc.localize(synth_dataset.path(q.image), q.intrinsics)
            assert r.success, r.message
            dt, dr = pose_error(r.cam_from_world, q.cam_from_world)
            assert dt < 0.02 and dr < 0.1, (q.id, dt, dr)
            assert r.n_inliers >= 100 and r.reproj_error_px < 1.0
            assert len(r.retrieved) == 3 and set(r.timings) >= {"features", "matching", "pnp", "total"}


@pytest.mark.parametrize("backend", ["pycolmap", "opencv"])
def test_other_pnp_backends(synth_dataset, synth_db, backend):
    q = synth_dataset.split("query")[0]
    r = localize(synth_dataset.path(q.image), q.intrinsics, synth_db, {"pnp_backend": backend})
    assert r.success and pose_error(r.cam_from_world, q.cam_from_world)[0] < 0.02


def test_array_input_and_featureless_image(synth_dataset, synth_db):
    q = synth_dataset.split("query")[0]
    with Localizer(synth_db) as loc:
        r = loc.localize(np.full((q.intrinsics.height, q.intrinsics.width), 128, np.uint8), q.intrinsics)
        assert not r.success and r.cam_from_world is None and r.message
        with pytest.raises(ValueError, match="intrinsics are for"):
            loc.localize(np.zeros((10, 10), np.uint8), q.intrinsics)


def test_bad_images(synth_dataset, synth_db, tmp_path):
    q = synth_dataset.split("query")[0]
    with pytest.raises(ImageReadError, match="not found"):
        localize(tmp_path / "missing.jpg", q.intrinsics, synth_db)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(ImageReadError, match="cannot decode"):
        localize(bad, q.intrinsics, synth_db)
    with pytest.raises(FileNotFoundError, match="feature database not found"):
        localize(synth_dataset.path(q.image), q.intrinsics, tmp_path / "no.h5")


def test_large_and_distorted_queries(synth_dataset, synth_db):
    import cv2

    from pose_addon.core.cameras import Intrinsics

    q = synth_dataset.split("query")[1]
    img = cv2.imread(str(synth_dataset.path(q.image)), cv2.IMREAD_GRAYSCALE)
    big = cv2.resize(img, (640, 480), interpolation=cv2.INTER_CUBIC)
    big_intr = q.intrinsics.scaled(2.0)
    with Localizer(synth_db, {"resize_max": 320}) as loc:
        r = loc.localize(big, big_intr)  # downscaled back to 320x240 inside
    assert r.success and pose_error(r.cam_from_world, q.cam_from_world)[0] < 0.03
    # the same view seen through a lens with radial distortion
    k = q.intrinsics
    dist = (-0.15, 0.03, 0.0, 0.0)
    dintr = Intrinsics(k.width, k.height, k.fx, k.fy, k.cx, k.cy, dist)
    v, u = np.mgrid[0:k.height, 0:k.width].astype(np.float32)
    # map each distorted pixel to where it comes from in the pinhole image
    und = cv2.undistortPoints(np.stack([u, v], -1).reshape(-1, 1, 2), k.K, np.array(dist), P=k.K).reshape(
        k.height, k.width, 2)
    distorted = cv2.remap(img, und[..., 0], und[..., 1], cv2.INTER_LINEAR)
    r = localize(distorted, dintr, synth_db)
    assert r.success and pose_error(r.cam_from_world, q.cam_from_world)[0] < 0.05


def test_fallback_when_retrieval_is_wrong(synth_dataset, synth_db):
    q = synth_dataset.split("query")[2]
    with Localizer(synth_db, {"k": 1, "k_fallback": 16}) as loc:
        loc.db.global_descriptors = -loc.db.global_descriptors  # rank the least similar references first
        r = loc.localize(synth_dataset.path(q.image), q.intrinsics)
    assert r.success and pose_error(r.cam_from_world, q.cam_from_world)[0] < 0.02
    with Localizer(synth_db, {"k": 1, "k_fallback": 0}) as loc:
        loc.db.global_descriptors = -loc.db.global_descriptors
        r0 = loc.localize(synth_dataset.path(q.image), q.intrinsics)
    assert len(r0.retrieved) == 1
    assert r0.success or len(r.retrieved) == 16  # without fallback the worst reference alone rarely suffices


def test_global_retrieval_option(synth_dataset, synth_db):
    q = synth_dataset.split("query")[3]
    r = localize(synth_dataset.path(q.image), q.intrinsics, synth_db, {"retrieval": "global"})
    assert r.success and pose_error(r.cam_from_world, q.cam_from_world)[0] < 0.02
    with pytest.raises(ValueError, match="unknown retrieval"):
        Localizer(synth_db, {"retrieval": "oracle"})


def test_ensemble_pool_and_best(synth_dataset, synth_db):
    from ml_backend.matching.localize import EnsembleLocalizer, dedup_correspondences

    q = synth_dataset.split("query")[0]
    for mode in ("pool", "best"):
        with EnsembleLocalizer({"sift": synth_db, "sift-mutual": synth_db}, None,
                               {"members": ["sift", "sift-mutual"], "mode": mode}) as loc:
            r = loc.localize(synth_dataset.path(q.image), q.intrinsics)
        assert r.success and pose_error(r.cam_from_world, q.cam_from_world)[0] < 0.02, mode
    p2 = np.array([[1.0, 1.0], [1.2, 1.1], [5.0, 5.0]])
    p3 = np.zeros((3, 3))
    assert dedup_correspondences(p2, p3).tolist() == [0, 2]
    with pytest.raises(ValueError, match="unknown ensemble mode"):
        EnsembleLocalizer({"sift": synth_db}, None, {"members": ["sift"], "mode": "vote"})


def test_net_retrieval_option(synth_dataset, synth_db, tmp_path):
    from ml_backend.matching.retrieval import build_global_index

    g = build_global_index(synth_dataset.root, tmp_path / "g.h5")
    q = synth_dataset.split("query")[1]
    r = localize(synth_dataset.path(q.image), q.intrinsics, synth_db,
                 {"retrieval": "net", "global_index": str(g), "diversity_m": 1.0, "k_fallback": 16})
    # ImageNet features on the synthetic texture rank references loosely: only the code path is checked here
    assert r.success and len(r.retrieved) >= 3


def test_unknown_focal_length_is_estimated(synth_dataset, synth_db, tmp_path):
    """A photo without intrinsics: the focal length comes back within 2 % and the pose within centimetres."""
    import shutil

    from ml_backend.estimate import estimate_photos
    from pose_addon.core.cameras import camera_center

    q = synth_dataset.split("query")[0]
    shutil.copy(synth_dataset.path(q.image), tmp_path / "photo.png")
    row = estimate_photos(tmp_path / "photo.png", "sift", {"database": str(synth_db)}, {"source": "estimate"})[0]
    assert row["success"], row["message"]
    assert abs(row["intrinsics"]["fx"] / q.intrinsics.fx - 1) < 0.02
    err = np.linalg.norm(camera_center(np.array(row["cam_from_world"])) - camera_center(q.cam_from_world))
    assert err < 0.1
