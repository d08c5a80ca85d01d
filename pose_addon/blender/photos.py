"""Photos as Blender images, upright: Blender shows a JPEG's pixels as stored and ignores its EXIF orientation,
while poses and pixel coordinates of a photo refer to it upright (as the worker reads it)."""
from pathlib import Path

import bpy
import numpy as np

from ..core.exif import exif_orientation, upright

__all__ = ["load_photo"]


def load_photo(path) -> "bpy.types.Image":
    """The photo at ``path`` as an image shown upright: the file itself when its EXIF orientation is 1 (or absent),
    else an upright copy packed into the .blend (named after the file, turned once per file).

    Raises:
        RuntimeError: Blender cannot open the file (one it opens but cannot decode comes back empty, 0 x 0).
    """
    path = Path(path)
    img = bpy.data.images.load(str(path), check_existing=True)
    orientation = exif_orientation(path)
    w, h = img.size
    if orientation == 1 or w == 0 or h == 0:
        return img
    name = f"{path.name} (upright)"
    done = bpy.data.images.get(name)
    if done is not None and done.get("pose_photo") == str(path):
        return done
    px = np.empty(w * h * 4, np.float32)
    img.pixels.foreach_get(px)
    top_first = px.reshape(h, w, 4)[::-1]  # Blender's rows start at the bottom
    turned = upright(top_first, orientation)[::-1]
    out = bpy.data.images.new(name, turned.shape[1], turned.shape[0], alpha=False)
    out.pixels.foreach_set(np.ascontiguousarray(turned).ravel())
    out.pack()
    out["pose_photo"] = str(path)
    out["pose_exif_orientation"] = orientation
    if img.users == 0:
        bpy.data.images.remove(img)
    return out
