"""Keypoints panel operators: place named 3D keypoints on surfaces, list, reorder, import/export, suggest, and
count how many views see each."""

import bpy
import numpy as np
from bpy.props import EnumProperty, FloatVectorProperty, IntProperty, StringProperty
from mathutils import Vector

from .blender import camera as bcam
from .core.dataset import Dataset, DatasetError, Keypoint, load_keypoints, save_keypoints
from .core.keypoints import candidate_pools, choose_keypoints, min_views, view_counts
from .ops_cameras import COLLECTION as SAMPLED_COLLECTION
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
    context.view_layer.update()  # empties placed in this operator have their matrix_world only after an update
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
    bl_idname = "building_pose.suggest_keypoints"
    bl_label = "Suggest Keypoints"
    bl_description = ("Propose well-spread salient keypoints (corners on sharp edges, farthest-point sampling) on "
                      "the target, keeping to corners enough of the views (dataset references or sampled cameras) see")
    bl_options = {"REGISTER", "UNDO"}
    busy_text = "Suggesting keypoints"

    @classmethod
    def poll(cls, context):
        return context.scene is not None and any(o.type == "MESH" for o in context.scene.objects)

    def prepare(self, context):
        """The target's triangles, then the keypoint candidates (pure numpy, run in a thread from the UI)."""
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
        self._V, self._owners = V, owners
        return lambda: candidate_pools(V, F, min_z=ground)

    def apply(self, context, pools):
        """Keep to candidates enough views see (ray casts need the main thread), spread them, count views."""
        kps = keypoint_list(context)
        try:
            views = ViewSet(context)
        except (ValueError, DatasetError) as e:
            views, note = None, f"; views not counted: {e}"
        seen_by = views.counts if views is not None else None
        pts = choose_keypoints(pools, kps.suggest_count, seen_by,
                               min_views(views.n, kps.min_view_share) if views is not None else 1)
        for i, p in enumerate(pts):
            owner = bpy.data.objects.get(self._owners[int(np.argmin(np.linalg.norm(self._V - p, axis=1)))])
            add_keypoint(context, _unique_name(context, f"kp_{i:02d}"), p, owner)
        if views is not None:
            note = f"; {count_views(context, views)}"
        self.report({"INFO"}, f"Suggested {len(pts)} keypoints{note}")
        return {"FINISHED"}


def ray_cast_occlusion(context, tol_rel: float, tol_abs: float):
    """``occluded(eye [3], points [M, 3]) -> bool [M]`` by the scene's visible meshes: a point is hidden when a ray
    from ``eye`` towards it hits a surface nearer than ``|p - eye| * (1 - tol_rel) - tol_abs`` (the planar-depth
    test's rule along the ray)."""
    depsgraph = context.evaluated_depsgraph_get()
    scene = context.scene

    def occluded(eye: np.ndarray, points: np.ndarray) -> np.ndarray:
        out = np.zeros(len(points), bool)
        origin = Vector(eye)
        for i, p in enumerate(points):
            v = np.asarray(p, np.float64) - eye
            dist = float(np.linalg.norm(v))
            if dist <= 1e-9:
                continue
            hit, loc, *_ = scene.ray_cast(depsgraph, origin, Vector(v / dist), distance=dist)
            out[i] = bool(hit) and (loc - origin).length < dist * (1 - tol_rel) - tol_abs
        return out

    return occluded


def _dataset_views(context):
    """The dataset in the Dataset panel's output folder, or None when there is none (or the path cannot be
    resolved yet)."""
    try:
        root = resolve(context.scene.pose_tools.render.output_dir, "dataset output folder")
    except ValueError:  # unset, or relative to an unsaved .blend
        return None
    if not (root / "manifest.json").is_file():
        return None
    return Dataset.load(root)


def dataset_mismatch(ds: Dataset, lo: np.ndarray, hi: np.ndarray) -> str:
    """Why ``ds`` was not rendered in this scene's world (its recorded model bounds differ from the target's
    ``lo..hi`` by more than 1% of the model's size: another scene, or a model rescaled on import), or ""."""
    b = np.asarray(ds.scene.get("bounds", []), np.float64)
    if b.shape != (2, 3):
        return f"dataset {ds.root} records no model bounds"
    tol = 0.01 * float(np.max(hi - lo))
    if np.abs(b - np.stack([lo, hi])).max() > tol:
        return (f"dataset {ds.root} was rendered from another model or world (its model spans "
                f"{np.round(b[0], 2).tolist()}..{np.round(b[1], 2).tolist()}, this scene's "
                f"{np.round(lo, 2).tolist()}..{np.round(hi, 2).tolist()})")
    return ""


def _camera_views(context) -> list:
    """``(cam_from_world, intrinsics, None)`` of the sampled camera objects, else of the pose list."""
    col = bpy.data.collections.get(SAMPLED_COLLECTION)
    cams = sorted((o for o in col.objects if o.type == "CAMERA"), key=lambda o: o.name) if col else []
    if cams:
        return [(bcam.get_cam_from_world(o), bcam.intrinsics_from_camera(o, context.scene), None) for o in cams]
    settings = context.scene.pose_tools
    intr = settings.render.intrinsics()
    return [(np.array(p.cam_from_world, np.float64).reshape(4, 4), intr, None) for p in settings.poses]


class ViewSet:
    """The views whose sight of the keypoints is counted: the reference frames of the Dataset panel's dataset
    (depth-tested; frames without depth are ray cast) or the sampled cameras (ray cast), as the Keypoints panel's
    Views setting says (Auto: the dataset when it was rendered in this scene's world, else the cameras).

    Raises:
        ValueError: no building mesh, no views of the chosen source, or a dataset rendered in another world.
    """

    def __init__(self, context):
        from .props import model_bounds

        source = keypoint_list(context).view_source
        lo, hi = model_bounds(context)
        self.tol_rel, self.tol_abs = 0.02, 0.01 * float(np.max(hi - lo))  # 0.15 m at 15 m, as the worker's
        self.occluded = ray_cast_occlusion(context, self.tol_rel, self.tol_abs)
        self.skipped = ""
        try:
            ds = _dataset_views(context) if source in ("AUTO", "DATASET") else None
        except DatasetError as e:
            if source == "DATASET":
                raise ValueError(str(e)) from None
            ds, self.skipped = None, f" (the Dataset panel's dataset is unreadable: {e})"
        if source == "DATASET" and ds is None:
            raise ValueError("the Dataset panel's output folder holds no dataset: render it first, or count the "
                             "sampled cameras")
        if ds is not None and (why := dataset_mismatch(ds, lo, hi)):
            if source == "DATASET":
                raise ValueError(why)
            ds, self.skipped = None, f" ({why}: not counted)"
        self.dataset = ds
        if ds is not None:
            self.frames = ds.reference_frames()
            self.n, self.what = len(self.frames), f"reference views of {ds.root.name}"
        else:
            self.cameras = _camera_views(context)
            self.n = len(self.cameras)
            self.what = "sampled camera" if self.n == 1 else "sampled cameras"
        if self.n == 0:
            raise ValueError("no views to count: Sample Cameras (or render a dataset) first")

    def _views(self):
        if self.dataset is None:
            yield from self.cameras
            return
        ds = self.dataset
        for fr in self.frames:
            depth = ds.read_depth(fr) if fr.depth and ds.path(fr.depth).is_file() else None
            yield fr.cam_from_world, fr.intrinsics, depth

    def counts(self, points: np.ndarray) -> np.ndarray:
        """``[N]`` how many of the views see each world point ``points [N, 3]`` unoccluded."""
        return view_counts(points, self._views(), self.occluded, self.tol_rel, self.tol_abs)[0]


def count_views(context, views: "ViewSet | None" = None) -> str:
    """Count, per listed keypoint, the :class:`ViewSet` views that see it unoccluded and store it on the list
    entry (``views``; the list's ``views_total`` and ``views_source`` say over what). Returns a one-line summary.

    Raises:
        ValueError: no keypoints, or what :class:`ViewSet` raises.
    """
    kps = keypoint_list(context)
    points = np.array([k.position for k in current_keypoints(context)], np.float64).reshape(-1, 3)
    if len(points) == 0:
        raise ValueError("no keypoints to count views for")
    views = ViewSet(context) if views is None else views
    counts = views.counts(points)
    for item, c in zip(kps.items, counts):
        item.views = int(c)
    kps.views_total, kps.views_source = views.n, f"{views.n} {views.what}"
    need = min_views(views.n, kps.min_view_share)
    low = int((counts < need).sum())
    return (f"views counted over {views.n} {views.what}: {int(counts.min())}-{int(counts.max())} per keypoint"
            + (f", {low} seen by fewer than {need}" if low else "") + views.skipped)


class POSE_OT_count_views(bpy.types.Operator):
    bl_idname = "building_pose.count_views"
    bl_label = "Count Views"
    bl_description = ("Count how many views (the dataset's reference views, or the sampled cameras) see each "
                      "keypoint unoccluded; keypoints too few views see cannot be learned")
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return context.scene is not None and len(keypoint_list(context).items) > 0

    def execute(self, context):
        try:
            summary = count_views(context)
        except (ValueError, DatasetError) as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        self.report({"INFO"}, summary[0].upper() + summary[1:])
        return {"FINISHED"}
