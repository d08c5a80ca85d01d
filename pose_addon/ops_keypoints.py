"""Keypoints panel operators: place named 3D keypoints on surfaces, list, reorder, import/export, suggest."""

import bpy
import numpy as np
from bpy.props import EnumProperty, FloatVectorProperty, IntProperty, StringProperty
from mathutils import Vector

from .blender import camera as bcam
from .core.dataset import DatasetError, Keypoint, load_keypoints, save_keypoints
from .core.keypoints import suggest_keypoints
from .paths import resolve
from .scene_utils import ensure_collection, target_objects, world_bounds
from .threaded import ThreadedOperator

COLLECTION = "Keypoints"


def keypoint_list(context):
    return context.scene.pose_tools.keypoints


def _unique_name(context, base: str) -> str:
    names = {it.name for it in keypoint_list(context).items}
    if base not in names:
        return base
    i = 1
    while f"{base}_{i}" in names:
        i += 1
    return f"{base}_{i}"


def add_keypoint(context, name: str, location, surface_object=None) -> "bpy.types.Object":
    """Create a keypoint empty at world ``location`` in the Keypoints collection and list it."""
    col = ensure_collection(context, COLLECTION)
    empty = bpy.data.objects.new(name, None)
    empty.empty_display_type = "SPHERE"
    empty.empty_display_size = keypoint_display_size(context)
    empty.location = Vector(location)
    empty["pose_keypoint"] = True
    if surface_object is not None:
        empty["pose_surface_object"] = surface_object.name
    col.objects.link(empty)
    kps = keypoint_list(context)
    item = kps.items.add()
    item.empty = empty
    item.name = empty.name
    kps.active_index = len(kps.items) - 1
    return empty


def keypoint_display_size(context) -> float:
    """Size of a keypoint's sphere: 1% of the target's longest side (0.15 m for a 15 m building)."""
    objs = [o for o in target_objects(context, selected_only=False) if o.type == "MESH"]
    if not objs:
        return 0.15
    boxes = world_bounds(objs)
    return float(max(np.max(boxes[:, 1].max(0) - boxes[:, 0].min(0)) * 0.01, 1e-3))


def prune_missing(context) -> None:
    """Drop list entries whose empty was deleted by the user; follow renames made in the Outliner."""
    kps = keypoint_list(context)
    for i in reversed(range(len(kps.items))):
        if kps.items[i].empty is None or kps.items[i].empty.name not in bpy.data.objects:
            kps.items.remove(i)
    kps.active_index = min(kps.active_index, max(len(kps.items) - 1, 0))
    sync_names(context.scene)


def sync_names(scene) -> int:
    """Give each list entry its empty's current name (renamed in the Outliner or by a script) and carry the
    photo annotations made under the old name over; returns how many entries changed."""
    import json

    kps = getattr(getattr(scene, "pose_tools", None), "keypoints", None)
    if kps is None:
        return 0
    renamed = {}
    for item in kps.items:
        if item.empty is not None and item.name != item.empty.name:
            renamed[item.name] = item.empty.name
            item.name = item.empty.name  # the update callback sees equal names and does nothing
    if renamed:
        for obj in bpy.data.objects:
            raw = obj.get("pose_annotation")
            if not raw:
                continue
            ann = json.loads(raw)
            pts = ann.get("points", {})
            if any(old in pts for old in renamed):
                ann["points"] = {renamed.get(k, k): v for k, v in pts.items()}
                ann["errors_px"] = {renamed.get(k, k): v for k, v in ann.get("errors_px", {}).items()}
                obj["pose_annotation"] = json.dumps(ann)
    return len(renamed)


_MSGBUS_OWNER = object()


def _on_object_renamed(*_args) -> None:
    for scene in bpy.data.scenes:
        sync_names(scene)


@bpy.app.handlers.persistent
def _subscribe(*_args) -> None:
    """Follow object renames (the Outliner's included); subscriptions are dropped when a file loads, so this
    also runs after every load."""
    bpy.msgbus.clear_by_owner(_MSGBUS_OWNER)
    bpy.msgbus.subscribe_rna(key=(bpy.types.Object, "name"), owner=_MSGBUS_OWNER, args=(),
                             notify=_on_object_renamed)


def register_handlers() -> None:
    _subscribe()
    bpy.app.handlers.load_post.append(_subscribe)


def unregister_handlers() -> None:
    if _subscribe in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_subscribe)
    bpy.msgbus.clear_by_owner(_MSGBUS_OWNER)


def ray_cast_surface(context, origin, direction, snap_to_vertex: bool):
    """Hit point (world) on the closest visible non-keypoint mesh, or None; snaps to a vertex if asked."""
    depsgraph = context.evaluated_depsgraph_get()
    hit, loc, _normal, index, obj, _m = context.scene.ray_cast(depsgraph, Vector(origin), Vector(direction))
    if not hit:
        return None, None
    if snap_to_vertex and obj.type == "MESH":
        ev = obj.evaluated_get(depsgraph)
        mesh = ev.data
        poly = mesh.polygons[index]
        verts = [ev.matrix_world @ mesh.vertices[v].co for v in poly.vertices]
        loc = min(verts, key=lambda p: (p - loc).length)
    return loc, obj.original if hasattr(obj, "original") else obj


class POSE_OT_place_keypoint(bpy.types.Operator):
    bl_idname = "building_pose.place_keypoint"
    bl_label = "Place Keypoint"
    bl_description = ("Click on a mesh surface to place named keypoints (Esc or right click to stop); from a "
                      "script, give the pixel of the scene camera to cast through")
    bl_options = {"REGISTER", "UNDO"}

    name: StringProperty(name="Name", default="kp", description="Base name; a number is added if taken")
    pixel: FloatVectorProperty(name="Pixel", size=2, default=(-1.0, -1.0),
                               description="Image pixel (OpenCV convention) of the scene camera to cast through")

    @classmethod
    def poll(cls, context):
        return context.scene is not None

    def _place(self, context, origin, direction) -> bool:
        snap = keypoint_list(context).snap_to_vertex
        loc, obj = ray_cast_surface(context, origin, direction, snap)
        if loc is None:
            self.report({"WARNING"}, "No surface under the cursor: click on the building")
            return False
        empty = add_keypoint(context, _unique_name(context, self.name), loc, obj)
        self.report({"INFO"}, f"Placed {empty.name} at ({loc.x:.3f}, {loc.y:.3f}, {loc.z:.3f})")
        return True

    def execute(self, context):
        cam = context.scene.camera
        if cam is None:
            self.report({"ERROR"}, "Headless placement needs a scene camera (set Scene > Camera)")
            return {"CANCELLED"}
        if self.pixel[0] < 0 or self.pixel[1] < 0:
            self.report({"ERROR"}, "Give the pixel to place at, or run the operator from the 3D viewport")
            return {"CANCELLED"}
        intr = bcam.intrinsics_from_camera(cam, context.scene)
        T = bcam.get_cam_from_world(cam)
        d_cam = np.linalg.solve(intr.K, [self.pixel[0], self.pixel[1], 1.0])
        R = T[:3, :3]
        origin = -R.T @ T[:3, 3]
        direction = R.T @ d_cam
        return {"FINISHED"} if self._place(context, origin, direction / np.linalg.norm(direction)) \
            else {"CANCELLED"}

    def invoke(self, context, event):
        if context.area is None or context.area.type != "VIEW_3D":
            return self.execute(context)
        context.window_manager.modal_handler_add(self)
        context.workspace.status_text_set("Click on the building to place keypoints; Esc / right click to stop")
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type in {"ESC", "RIGHTMOUSE"}:
            context.workspace.status_text_set(None)
            return {"FINISHED"}
        if event.type == "LEFTMOUSE" and event.value == "PRESS":
            from bpy_extras import view3d_utils

            region, rv3d = context.region, context.region_data
            if region is None or rv3d is None:
                return {"PASS_THROUGH"}
            co = (event.mouse_region_x, event.mouse_region_y)
            origin = view3d_utils.region_2d_to_origin_3d(region, rv3d, co)
            direction = view3d_utils.region_2d_to_vector_3d(region, rv3d, co)
            self._place(context, origin, direction)
            return {"RUNNING_MODAL"}
        return {"PASS_THROUGH"}


class POSE_OT_remove_keypoint(bpy.types.Operator):
    """Delete the active keypoint"""

    bl_idname = "building_pose.remove_keypoint"
    bl_label = "Remove Keypoint"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return len(keypoint_list(context).items) > 0

    def execute(self, context):
        kps = keypoint_list(context)
        item = kps.items[kps.active_index]
        if item.empty is not None:
            bpy.data.objects.remove(item.empty, do_unlink=True)
        kps.items.remove(kps.active_index)
        kps.active_index = max(0, min(kps.active_index, len(kps.items) - 1))
        return {"FINISHED"}


class POSE_OT_move_keypoint(bpy.types.Operator):
    """Move the active keypoint up or down in the list (the order is the keypoint index in labels)"""

    bl_idname = "building_pose.move_keypoint"
    bl_label = "Move Keypoint"
    bl_options = {"REGISTER", "UNDO"}

    direction: EnumProperty(name="Direction", description="Where the keypoint moves in the list",
                            items=[("UP", "Up", "One place up"), ("DOWN", "Down", "One place down")])

    @classmethod
    def poll(cls, context):
        return len(keypoint_list(context).items) > 1

    def execute(self, context):
        kps = keypoint_list(context)
        i = kps.active_index
        j = i - 1 if self.direction == "UP" else i + 1
        if 0 <= j < len(kps.items):
            kps.items.move(i, j)
            kps.active_index = j
        return {"FINISHED"}


class POSE_OT_select_keypoint(bpy.types.Operator):
    """Select the keypoint's empty in the viewport"""

    bl_idname = "building_pose.select_keypoint"
    bl_label = "Select Keypoint"
    bl_options = {"REGISTER", "UNDO"}

    index: IntProperty(default=-1, name="Index", description="Keypoint to select (-1: the active one)")

    def execute(self, context):
        kps = keypoint_list(context)
        i = kps.active_index if self.index < 0 else self.index
        if not 0 <= i < len(kps.items) or kps.items[i].empty is None:
            self.report({"ERROR"}, "No such keypoint")
            return {"CANCELLED"}
        for o in context.view_layer.objects:
            o.select_set(False)
        empty = kps.items[i].empty
        empty.select_set(True)
        context.view_layer.objects.active = empty
        kps.active_index = i
        return {"FINISHED"}


def current_keypoints(context) -> list[Keypoint]:
    """The listed keypoints with world and (when placed on an object) object-relative coordinates."""
    prune_missing(context)
    out = []
    for item in keypoint_list(context).items:
        e = item.empty
        world = e.matrix_world.translation
        surf = bpy.data.objects.get(e.get("pose_surface_object", "")) if "pose_surface_object" in e else None
        local = tuple(surf.matrix_world.inverted() @ world) if surf else None
        out.append(Keypoint(e.name, tuple(world), surf.name if surf else None, local))
    return out


class POSE_OT_export_keypoints(bpy.types.Operator):
    """Write the keypoints to JSON (world and object-relative coordinates)"""

    bl_idname = "building_pose.export_keypoints"
    bl_label = "Export Keypoints"

    filepath: StringProperty(subtype="FILE_PATH", default="", name="File",
                             description="JSON file to write (default: the panel's JSON path)")

    @classmethod
    def poll(cls, context):
        return len(keypoint_list(context).items) > 0

    def execute(self, context):
        try:
            path = resolve(self.filepath or keypoint_list(context).json_path, "keypoint file")
        except ValueError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        try:
            save_keypoints(path, current_keypoints(context), scene=context.scene.name)
        except (OSError, ValueError) as e:
            self.report({"ERROR"}, f"Could not write {path}: {e}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Wrote {len(keypoint_list(context).items)} keypoints to {path}")
        return {"FINISHED"}


class POSE_OT_import_keypoints(bpy.types.Operator):
    """Replace the keypoints with those of a JSON file (object-relative coordinates win when the object exists)"""

    bl_idname = "building_pose.import_keypoints"
    bl_label = "Import Keypoints"
    bl_options = {"REGISTER", "UNDO"}

    filepath: StringProperty(subtype="FILE_PATH", default="", name="File",
                             description="JSON file to read (default: the panel's JSON path)")

    def execute(self, context):
        try:
            path = resolve(self.filepath or keypoint_list(context).json_path, "keypoint file")
            kps = load_keypoints(path)
        except (DatasetError, ValueError) as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        clear_keypoints(context)
        for k in kps:
            surf = bpy.data.objects.get(k.object) if k.object else None
            loc = surf.matrix_world @ Vector(k.local) if surf is not None and k.local is not None else k.position
            add_keypoint(context, k.name, loc, surf)
        self.report({"INFO"}, f"Imported {len(kps)} keypoints from {path}")
        return {"FINISHED"}


def clear_keypoints(context) -> None:
    kps = keypoint_list(context)
    for item in kps.items:
        if item.empty is not None:
            bpy.data.objects.remove(item.empty, do_unlink=True)
    kps.items.clear()
    kps.active_index = 0


class POSE_OT_suggest_keypoints(ThreadedOperator, bpy.types.Operator):
    """Propose well-spread salient keypoints (corners on sharp edges, farthest-point sampling) on the target"""

    bl_idname = "building_pose.suggest_keypoints"
    bl_label = "Suggest Keypoints"
    bl_options = {"REGISTER", "UNDO"}
    busy_text = "Suggesting keypoints"

    @classmethod
    def poll(cls, context):
        return context.scene is not None and any(o.type == "MESH" for o in context.scene.objects)

    def prepare(self, context):
        """The target's triangles, then the suggestion itself (pure numpy, run in a thread from the UI)."""
        objs = target_objects(context)
        depsgraph = context.evaluated_depsgraph_get()
        verts, faces, owners, offset = [], [], [], 0
        for o in objs:
            ev = o.evaluated_get(depsgraph)
            mesh = ev.to_mesh()
            mesh.calc_loop_triangles()
            co = np.empty(len(mesh.vertices) * 3)
            mesh.vertices.foreach_get("co", co)
            M = np.array(ev.matrix_world)
            v = co.reshape(-1, 3) @ M[:3, :3].T + M[:3, 3]
            tri = np.empty(len(mesh.loop_triangles) * 3, dtype=np.int64)
            mesh.loop_triangles.foreach_get("vertices", tri)
            ev.to_mesh_clear()
            verts.append(v)
            faces.append(tri.reshape(-1, 3) + offset)
            owners += [o.name] * len(v)
            offset += len(v)
        if offset == 0:
            raise ValueError("The target meshes have no vertices")
        V, F = np.concatenate(verts), np.concatenate(faces)
        ground = float(V[:, 2].min()) + 0.05
        n = keypoint_list(context).suggest_count
        self._V, self._owners = V, owners
        return lambda: suggest_keypoints(V, F, n, min_z=ground)

    def apply(self, context, pts):
        for i, p in enumerate(pts):
            owner = bpy.data.objects.get(self._owners[int(np.argmin(np.linalg.norm(self._V - p, axis=1)))])
            add_keypoint(context, _unique_name(context, f"kp_{i:02d}"), p, owner)
        self.report({"INFO"}, f"Suggested {len(pts)} keypoints")
        return {"FINISHED"}
