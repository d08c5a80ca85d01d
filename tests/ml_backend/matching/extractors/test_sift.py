import cv2
import numpy as np
import pytest

from ml_backend.matching.extractors import ImageReadError, load_image_gray, sift


def _blob(cx, cy, s, size=160):
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    return (40 + 180 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))).astype(np.uint8)


def test_keypoint_offset_corrected():
    rng = np.random.default_rng(0)
    err = []
    for _ in range(20):
        cx, cy = rng.uniform(50, 110, 2)
        f = sift.extract(_blob(cx, cy, rng.uniform(2.5, 4.5)))
        if len(f):  # some blob sizes fall between DoG scales and give no extremum
            err.append(f.keypoints[0] - [cx, cy])
    assert len(err) >= 10
    med = np.median(np.array(err), axis=0)
    assert np.all(np.abs(med) < 0.05), med  # uncorrected OpenCV keypoints sit at +0.25
    raw = sift.extract(_blob(80.3, 70.6, 3.0), {"keypoint_offset": 0.0}).keypoints[0]
    assert np.allclose(raw - [80.3, 70.6], 0.25, atol=0.06)


def test_rootsift_and_cap():
    rng = np.random.default_rng(1)
    img = cv2.GaussianBlur((rng.random((240, 320)) * 255).astype(np.uint8), (0, 0), 2)
    f = sift.extract(img, {"max_keypoints": 100})
    assert len(f) == 100 and f.descriptors.shape == (100, 128) and f.descriptors.dtype == np.float32
    assert np.allclose(np.linalg.norm(f.descriptors, axis=1), 1, atol=1e-4)
    assert np.all(np.diff(f.scores) <= 0)  # strongest first
    assert f.image_size == (320, 240)


def test_unknown_option_and_empty_image():
    with pytest.raises(ValueError, match="unknown sift options"):
        sift.extract(np.zeros((50, 50), np.uint8), {"max_keypoint": 5})
    f = sift.extract(np.zeros((50, 50), np.uint8))
    assert len(f) == 0 and f.descriptors.shape == (0, 128)


def test_image_errors(tmp_path):
    with pytest.raises(ImageReadError, match="not found"):
        load_image_gray(tmp_path / "missing.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ImageReadError, match="cannot decode"):
        load_image_gray(bad)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageReadError):
        load_image_gray(empty)
