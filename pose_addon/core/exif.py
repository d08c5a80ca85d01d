"""EXIF orientation of a photo, read with the standard library (Blender bundles no image library that applies it),
and the turn that makes its pixels upright, as every photo is read on the worker's side.

numpy only; used by the extension to show a photo upright behind its camera.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

__all__ = ["exif_orientation", "upright"]


def exif_orientation(path: Path | str) -> int:
    """The EXIF ``Orientation`` (1-8) of a JPEG file; 1 (as stored) when there is none or the file is not a JPEG
    with a readable EXIF block."""
    try:
        with open(path, "rb") as f:
            if f.read(2) != b"\xff\xd8":
                return 1
            while True:
                head = f.read(4)
                if len(head) < 4 or head[0] != 0xFF:
                    return 1
                marker, length = head[1], struct.unpack(">H", head[2:])[0]
                if marker == 0xDA or length < 2:  # start of scan: no EXIF before the image data
                    return 1
                data = f.read(length - 2)
                if marker == 0xE1 and data[:6] == b"Exif\x00\x00":
                    return _tiff_orientation(data[6:])
    except (OSError, struct.error):
        return 1


def _tiff_orientation(tiff: bytes) -> int:
    if tiff[:2] not in (b"II", b"MM"):
        return 1
    e = "<" if tiff[:2] == b"II" else ">"
    ifd = struct.unpack(e + "I", tiff[4:8])[0]
    n = struct.unpack(e + "H", tiff[ifd:ifd + 2])[0]
    for i in range(n):
        at = ifd + 2 + 12 * i
        tag, typ = struct.unpack(e + "HH", tiff[at:at + 4])
        if tag == 0x0112 and typ == 3:  # Orientation, SHORT
            value = struct.unpack(e + "H", tiff[at + 8:at + 10])[0]
            return value if 1 <= value <= 8 else 1
    return 1


def upright(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Stored pixels ``[H, W, ...]`` (first row at the top) turned as EXIF ``orientation`` says to display them."""
    a = np.asarray(pixels)
    t = {1: lambda x: x,
         2: lambda x: x[:, ::-1],
         3: lambda x: x[::-1, ::-1],
         4: lambda x: x[::-1],
         5: lambda x: x.swapaxes(0, 1),
         6: lambda x: np.rot90(x, -1),
         7: lambda x: x.swapaxes(0, 1)[::-1, ::-1],
         8: lambda x: np.rot90(x, 1)}.get(int(orientation))
    if t is None:
        raise ValueError(f"EXIF orientation must be 1-8, got {orientation}")
    return np.ascontiguousarray(t(a))
