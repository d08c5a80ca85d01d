"""Intrinsics of query photos from EXIF, presets, calibration files (OpenCV, JSON, COLMAP) and guesses."""
import json

import cv2
import numpy as np
import pytest
from PIL import Image

from ml_backend import intrinsics as I


@pytest.fixture
def photo(tmp_path):
    p = tmp_path / "photo.jpg"
    img = Image.fromarray(np.zeros((300, 400, 3), np.uint8))
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 28  # 28 mm equivalent
    img.save(p, exif=exif)
    return p


def test_exif_35mm_equivalent(photo):
    k = I.from_exif(photo)
    assert (k.width, k.height) == (400, 300)
    assert k.fx == pytest.approx(28 / 36 * 400) and (k.cx, k.cy) == (199.5, 149.5)


def test_exif_missing_is_explained(tmp_path):
    p = tmp_path / "plain.png"
    Image.fromarray(np.zeros((10, 20, 3), np.uint8)).save(p)
    with pytest.raises(I.IntrinsicsError, match="no focal length"):
        I.from_exif(p)
    with pytest.raises(I.IntrinsicsError, match="not found"):
        I.resolve(tmp_path / "nope.jpg", {"source": "exif"})
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(I.IntrinsicsError, match="cannot read"):
        I.image_size(tmp_path / "broken.jpg")


def test_preset_and_guess(photo):
    k = I.resolve(photo, {"source": "preset", "focal_mm": 12.0, "preset": "aps-c"})
    assert k.fx == pytest.approx(12 / 23.5 * 400)
    with pytest.raises(I.IntrinsicsError, match="unknown camera preset"):
        I.from_preset(photo, 12.0, "pinhole-box")
    g = I.guess(photo, 90.0)
    assert g.fx == pytest.approx(200.0)


def test_opencv_yaml_with_distortion_scaled_to_photo(photo, tmp_path):
    path = tmp_path / "calib.yaml"
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_WRITE)
    fs.write("image_width", 800)
    fs.write("image_height", 600)
    fs.write("camera_matrix", np.array([[700.0, 0, 399.5], [0, 700.0, 299.5], [0, 0, 1]]))
    fs.write("distortion_coefficients", np.array([[-0.1, 0.01, 0.0, 0.0, 0.0]]))
    fs.release()
    k = I.resolve(photo, {"source": "calibration", "path": str(path)})
    assert (k.width, k.height) == (400, 300) and k.fx == pytest.approx(350.0)
    assert k.cx == pytest.approx(199.5) and k.dist[:2] == (-0.1, 0.01)


def test_json_and_colmap(photo, tmp_path):
    j = tmp_path / "k.json"
    j.write_text(json.dumps({"width": 400, "height": 300, "fx": 310, "fy": 311, "cx": 200, "cy": 150}))
    assert I.from_calibration(j, photo).fy == 311
    c = tmp_path / "cameras.txt"
    c.write_text("# comment\n1 OPENCV 400 300 320 321 200.5 150.5 -0.05 0.001 0 0\n")
    k = I.from_calibration(c, photo)
    assert (k.fx, k.cx, k.cy) == (320, 200.0, 150.0) and k.dist == (-0.05, 0.001, 0.0, 0.0)
    bad = tmp_path / "other.json"
    bad.write_text(json.dumps({"width": 400, "height": 400, "fx": 1, "fy": 1, "cx": 0, "cy": 0}))
    with pytest.raises(I.IntrinsicsError, match="aspect ratio"):
        I.from_calibration(bad, photo)
