"""Small bpy helpers shared by the operators: target geometry and collections."""
import bpy
import numpy as np
from mathutils import Vector


def target_objects(context, selected_only: bool = True) -> list:
    """Mesh objects to sample around: the selected meshes, else every visible mesh except helpers."""
    meshes = [o for o in context.scene.objects if o.type == "MESH" and o.visible_get()]
    if selected_only:
        sel = [o for o in meshes if o.select_get()]
        if sel:
            return sel
    return [o for o in meshes if not o.name.lower().startswith("ground")] or meshes


def world_bounds(objects) -> np.ndarray:
    """Axis-aligned boxes ``[B, 2, 3]`` (min, max corners, world) of ``objects``' bounding boxes."""
    boxes = []
    for o in objects:
        corners = np.array([o.matrix_world @ Vector(c) for c in o.bound_box])
        boxes.append([corners.min(0), corners.max(0)])
    return np.array(boxes, dtype=np.float64).reshape(-1, 2, 3)


def box_corners(boxes: np.ndarray) -> np.ndarray:
    """The 8 corners of each box ``[B, 2, 3]`` -> ``[8B, 3]``."""
    out = []
    for lo, hi in boxes:
        out += [[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
    return np.array(out, dtype=np.float64)


def ensure_collection(context, name: str) -> "bpy.types.Collection":
    """A collection linked under the scene's master collection (created when missing)."""
    col = bpy.data.collections.get(name)
    if col is None:
        col = bpy.data.collections.new(name)
    if col.name not in context.scene.collection.children:
        context.scene.collection.children.link(col)
    return col
