"""Photos behind cameras are shown upright: a JPEG stored turned, with an EXIF orientation, is turned back."""
import struct

import bpy
import numpy as np
import pytest

from pose_addon.blender.photos import load_photo
from pose_addon.blender.scene_io import reset_scene
from pose_addon.estimates import add_photo_background

W, H = 48, 32  # stored size


def _exif_app1(orientation: int) -> bytes:
    """An APP1 EXIF segment holding only the Orientation tag (little-endian TIFF)."""
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) \
        + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    body = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body


def stored_jpeg(path, orientation: int):
    """A W x H JPEG, red in its top-left quarter (as stored), grey elsewhere, with an EXIF orientation."""
    img = bpy.data.images.new("stored", W, H, alpha=False)
    px = np.full((H, W, 4), 0.5, np.float32)
    px[..., 3] = 1.0
    px[:H // 2, :W // 2, :3] = (1.0, 0.0, 0.0)  # top-left, rows top-first
    img.pixels.foreach_set(px[::-1].ravel())  # Blender's rows start at the bottom
    img.filepath_raw, img.file_format = str(path), "JPEG"
    img.save()
    bpy.data.images.remove(img)
    data = path.read_bytes()
    path.write_bytes(data[:2] + _exif_app1(orientation) + data[2:])


def top_first(img) -> np.ndarray:
    w, h = img.size
    px = np.empty(w * h * 4, np.float32)
    img.pixels.foreach_get(px)
    return px.reshape(h, w, 4)[::-1]


def test_a_photo_stored_turned_is_shown_upright(tmp_path):
    reset_scene()
    path = tmp_path / "turned.jpg"
    stored_jpeg(path, 6)  # "turn 90 deg clockwise to display": the red corner goes to the top right
    img = load_photo(path)
    assert tuple(img.size) == (H, W) and img.packed_file is not None
    px = top_first(img)
    assert px[2, -3, 0] > 0.8 and px[2, -3, 1] < 0.2  # red at the top right
    assert px[2, 2, 0] < 0.7 and px[-3, -3, 0] < 0.7  # grey at the top left and bottom right
    assert load_photo(path) == img  # one upright copy per file
    cam = bpy.data.objects.new("c", bpy.data.cameras.new("c"))
    bpy.context.scene.collection.objects.link(cam)
    assert add_photo_background(cam, str(path))
    assert tuple(cam.data.background_images[0].image.size) == (H, W)


def test_an_upright_photo_is_the_file_itself(tmp_path):
    reset_scene()
    path = tmp_path / "upright.jpg"
    stored_jpeg(path, 1)
    img = load_photo(path)
    assert tuple(img.size) == (W, H) and img.packed_file is None
    assert bpy.path.abspath(img.filepath) == str(path)
    px = top_first(img)
    assert px[2, 2, 0] > 0.8 and px[2, 2, 1] < 0.2  # red at the top left, as stored
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 nothing")  # unreadable: Blender's empty image, no copy
    assert tuple(load_photo(tmp_path / "bad.jpg").size) == (0, 0)
    with pytest.raises(RuntimeError):
        load_photo(tmp_path / "missing.jpg")
