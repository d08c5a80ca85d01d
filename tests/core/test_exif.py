"""EXIF orientation read with the standard library and applied with numpy, against Pillow's exif_transpose."""
import numpy as np
import pytest

from pose_addon.core.exif import exif_orientation, upright

Image = pytest.importorskip("PIL.Image")
ImageOps = pytest.importorskip("PIL.ImageOps")


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_is_read_and_applied_as_pillow_does(tmp_path, orientation):
    rng = np.random.default_rng(orientation)
    stored = (rng.random((6, 10, 3)) * 255).astype(np.uint8)
    stored = np.kron(stored, np.ones((8, 8, 1), np.uint8))  # 48 x 80 blocks: JPEG keeps them apart
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "maker"  # another tag before it
    path = tmp_path / f"o{orientation}.jpg"
    Image.fromarray(stored).save(path, quality=95, exif=exif)
    assert exif_orientation(path) == orientation
    raw = np.asarray(Image.open(path).convert("RGB"))
    want = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    np.testing.assert_array_equal(upright(raw, orientation), want)


def test_no_exif_or_not_a_jpeg_is_as_stored(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "plain.jpg")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a JPEG")
    for name in ("plain.jpg", "a.png", "broken.jpg", "missing.jpg"):
        assert exif_orientation(tmp_path / name) == 1
    with pytest.raises(ValueError, match="1-8"):
        upright(np.zeros((2, 2)), 9)
