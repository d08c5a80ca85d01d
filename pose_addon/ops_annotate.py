"""Manual annotation (the seed's annotator): click the 2D position of named 3D keypoints over a photo in camera
view, solve the camera pose (and focal length) inside Blender with numpy, check the per-point reprojection error,
nudge, and export a ground-truth pose and a YOLO pose label.

Annotations live on the camera object as a JSON custom property (``pose_annotation``), so they are saved in
the .blend: ``{"image", "width", "height", "points": {keypoint name: [u, v]}, "errors_px": {...}, "solve": {...}}``
with pixels in the OpenCV convention.
"""
import json
from pathlib import Path

import bpy
import numpy as np
from bpy.props import BoolProperty, FloatVectorProperty, StringProperty

from .blender import camera as bcam
from .core.annotation_pnp import solve_pnp_numpy
from .core.cameras import Intrinsics, blender_matrix_world_from_cam_from_world, project_points
from .core.dataset import atomic_write_bytes, atomic_write_json
from .ops_keypoints import current_keypoints
from .paths import resolve
from .scene_utils import ensure_collection

PROP = "pose_annotation"
PHOTO_COLLECTION = "Photo Cameras"
#: a focal solved with a larger RMSE is not applied: some click is wrong
FOCAL_MAX_RMSE_PX = 4.0


def get_annotation(cam_obj) -> dict:
    raw = cam_obj.get(PROP)
    return json.loads(raw) if raw else {"points": {}}


def set_annotation(cam_obj, ann: dict) -> None:
    cam_obj[PROP] = json.dumps(ann)


def photo_intrinsics(cam_obj, scene) -> Intrinsics:
    """Intrinsics of a photo camera at the photo's own size (the scene's resolution is only read when the
    annotation has no size)."""
    ann = get_annotation(cam_obj)
    if "width" in ann:
        return bcam.intrinsics_at_size(cam_obj, int(ann["width"]), int(ann["height"]))
    return bcam.intrinsics_from_camera(cam_obj, scene)


def create_photo_camera(context, image_path: str, name: str | None = None, lens_mm: float = 35.0):
    """A camera in the "Photo Cameras" collection with the photo as its background, sized to the photo."""
    path = Path(bpy.path.abspath(image_path))
    if not path.is_file():
        raise FileNotFoundError(f"photo not found: {path}")
    from .blender.photos import load_photo

    try:
        img = load_photo(path)  # upright: clicked pixels refer to the photo as the worker reads it
        w, h = img.size
    except RuntimeError as e:
        raise ValueError(f"cannot read photo {path}: {e}") from None
    if w == 0 or h == 0:
        raise ValueError(f"cannot read photo {path}: empty image")
    data = bpy.data.cameras.new(name or path.stem)
    obj = bpy.data.objects.new(name or path.stem, data)
    ensure_collection(context, PHOTO_COLLECTION).objects.link(obj)
    data.lens, data.sensor_width, data.sensor_fit = lens_mm, 36.0, "HORIZONTAL"
    data.show_background_images = True
    bg = data.background_images.new()
    bg.image = img
    bg.display_depth = "FRONT"
    bg.alpha = 0.6
    set_annotation(obj, {"image": str(path), "width": int(w), "height": int(h), "points": {}})
    context.scene.render.resolution_x, context.scene.render.resolution_y = int(w), int(h)
    context.scene.render.resolution_percentage = 100
    return obj


def region_to_pixel(context, cam_obj, region_xy) -> tuple[float, float] | None:
    """Region coordinates in a camera view -> photo pixel (OpenCV convention), via the camera frame corners."""
    from bpy_extras.view3d_utils import location_3d_to_region_2d

    frame = [cam_obj.matrix_world @ v for v in cam_obj.data.view_frame(scene=context.scene)]
    pts = [location_3d_to_region_2d(context.region, context.region_data, p) for p in frame]
    if any(p is None for p in pts):
        return None
    xs, ys = [p.x for p in pts], [p.y for p in pts]
    ann = get_annotation(cam_obj)
    w, h = ann.get("width", context.scene.render.resolution_x), ann.get("height", context.scene.render.resolution_y)
    u = (region_xy[0] - min(xs)) / (max(xs) - min(xs)) * w - 0.5
    v = (max(ys) - region_xy[1]) / (max(ys) - min(ys)) * h - 0.5
    return u, v


def active_photo_camera(context):
    cam = context.scene.camera
    return cam if cam is not None and cam.type == "CAMERA" else None


class POSE_OT_add_photo_camera(bpy.types.Operator):
    bl_idname = "building_pose.add_photo_camera"
    bl_label = "Add Photo Camera"
    bl_description = ("Create a camera with a photo as its background, ready to annotate; it becomes the scene "
                      "camera and the scene resolution is set to the photo's size")
    bl_options = {"REGISTER", "UNDO"}

    filepath: StringProperty(subtype="FILE_PATH", name="Photo", description="The photo to annotate")
    filter_image: BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"}, name="Filter Images",
                               description="Show only images in the file browser")

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        r = context.scene.render
        before = (r.resolution_x, r.resolution_y, r.resolution_percentage, context.scene.camera)
        try:
            obj = create_photo_camera(context, self.filepath)
        except (FileNotFoundError, ValueError) as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        context.scene.camera = obj
        changes = [f"scene camera {before[3].name if before[3] else 'none'} -> {obj.name}"]
        if (r.resolution_x, r.resolution_y, r.resolution_percentage) != before[:3]:
            changes.append(f"resolution {before[0]}x{before[1]} ({before[2]}%) -> {r.resolution_x}x"
                           f"{r.resolution_y} (the photo's size)")
        self.report({"INFO"}, f"Camera {obj.name} made for {Path(self.filepath).name}; look through it to "
                              f"annotate. Changed: {'; '.join(changes)}")
        return {"FINISHED"}


class POSE_OT_annotate_point(bpy.types.Operator):
    bl_idname = "building_pose.annotate_point"
    bl_label = "Annotate Keypoint"
    bl_description = ("Click where the active keypoint is in the photo (camera view), then the next one; Esc to "
                      "stop. From a script, give the pixel")
    bl_options = {"REGISTER", "UNDO"}

    keypoint: StringProperty(name="Keypoint", description="Keypoint name (default: the active one in the list)")
    pixel: FloatVectorProperty(name="Pixel", size=2, default=(-1.0, -1.0),
                               description="Photo pixel of the keypoint (OpenCV convention: centre of the "
                                           "top-left pixel at 0, 0)")
    remove: BoolProperty(name="Remove", default=False, description="Remove this keypoint's 2D position (not visible)")

    @classmethod
    def poll(cls, context):
        return active_photo_camera(context) is not None

    def _name(self, context) -> str | None:
        if self.keypoint:
            return self.keypoint
        from .ops_keypoints import sync_names

        sync_names(context.scene)
        kps = context.scene.pose_tools.keypoints
        return kps.items[kps.active_index].name if 0 <= kps.active_index < len(kps.items) else None

    def _store(self, context, uv) -> bool:
        cam = active_photo_camera(context)
        name = self._name(context)
        if name is None:
            self.report({"ERROR"}, "No keypoint chosen: place or import keypoints first")
            return False
        ann = get_annotation(cam)
        if uv is None:
            ann["points"].pop(name, None)
        else:
            ann["points"][name] = [float(uv[0]), float(uv[1])]
        set_annotation(cam, ann)
        return True

    def execute(self, context):
        if self.remove:
            return {"FINISHED"} if self._store(context, None) else {"CANCELLED"}
        if self.pixel[0] < 0 or self.pixel[1] < 0:
            self.report({"ERROR"}, "Give the pixel, or click in the camera view")
            return {"CANCELLED"}
        return {"FINISHED"} if self._store(context, tuple(self.pixel)) else {"CANCELLED"}

    def invoke(self, context, event):
        if context.area is None or context.area.type != "VIEW_3D":
            return self.execute(context)
        context.window_manager.modal_handler_add(self)
        context.workspace.status_text_set("Click the keypoint in the photo; Esc to stop")
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type in {"ESC", "RIGHTMOUSE"}:
            context.workspace.status_text_set(None)
            return {"FINISHED"}
        if event.type == "LEFTMOUSE" and event.value == "PRESS":
            uv = region_to_pixel(context, active_photo_camera(context), (event.mouse_region_x, event.mouse_region_y))
            if uv is not None and self._store(context, uv):
                kps = context.scene.pose_tools.keypoints
                kps.active_index = min(kps.active_index + 1, len(kps.items) - 1)  # next keypoint
                self.keypoint = ""
            return {"RUNNING_MODAL"}
        return {"PASS_THROUGH"}


def annotation_pairs(context, cam_obj) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(names, pixels [N, 2], world points [N, 3]) of the keypoints annotated on ``cam_obj``."""
    world = {k.name: k.position for k in current_keypoints(context)}
    ann = get_annotation(cam_obj)
    names = [n for n in ann["points"] if n in world]
    return (names, np.array([ann["points"][n] for n in names], dtype=np.float64).reshape(-1, 2),
            np.array([world[n] for n in names], dtype=np.float64).reshape(-1, 3))


def update_errors(context, cam_obj) -> float:
    """Recompute per-point reprojection errors at the camera's current pose; returns the RMSE in pixels."""
    names, uv, xyz = annotation_pairs(context, cam_obj)
    ann = get_annotation(cam_obj)
    if not names:
        ann["errors_px"] = {}
        set_annotation(cam_obj, ann)
        return float("nan")
    intr = photo_intrinsics(cam_obj, context.scene)
    proj, _ = project_points(intr.K, bcam.get_cam_from_world(cam_obj), xyz)
    err = np.linalg.norm(proj - uv, axis=1)
    ann["errors_px"] = {n: float(e) for n, e in zip(names, err)}
    set_annotation(cam_obj, ann)
    return float(np.sqrt(np.mean(err ** 2)))


class POSE_OT_solve_annotation(bpy.types.Operator):
    bl_idname = "building_pose.solve_annotation"
    bl_label = "Solve Camera"
    bl_description = ("Solve the photo camera's position and orientation from its annotated keypoints (4 or "
                      "more), keeping its focal length")
    bl_options = {"REGISTER", "UNDO"}

    estimate_focal: BoolProperty(name="Estimate Focal Length", default=False,
                                 description="Also solve the focal length (6 or more points); a focal solved with "
                                             "a wrong click among the points is not applied")

    @classmethod
    def description(cls, context, properties):
        if properties.estimate_focal:
            return ("Solve the photo camera's pose and focal length from its annotated keypoints (6 or more); the "
                    "focal is not applied when the points disagree (a wrong click)")
        return cls.bl_description

    @classmethod
    def poll(cls, context):
        return active_photo_camera(context) is not None

    def execute(self, context):
        cam = active_photo_camera(context)
        names, uv, xyz = annotation_pairs(context, cam)
        intr = photo_intrinsics(cam, context.scene)
        try:
            sol = solve_pnp_numpy(uv, xyz, None if self.estimate_focal else intr.K, (intr.width, intr.height))
        except ValueError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        notes = list(sol.notes)
        if sol.focal_estimated and sol.rmse_px > FOCAL_MAX_RMSE_PX:
            notes.append(f"focal {sol.K[0, 0]:.1f} px not applied: the points disagree (RMSE {sol.rmse_px:.1f} px "
                         f"> {FOCAL_MAX_RMSE_PX} px), look for a wrong click")
            self.report({"WARNING"}, notes[-1])
            sol = solve_pnp_numpy(uv, xyz, intr.K, (intr.width, intr.height))
        if sol.focal_estimated:
            from .estimates import set_camera_intrinsics

            set_camera_intrinsics(cam, Intrinsics.from_K(sol.K, intr.width, intr.height))
        bcam.set_cam_from_world(cam, sol.cam_from_world)
        ann = get_annotation(cam)
        ann["solve"] = {"solver": "numpy-lm", "n_points": len(names), "rmse_px": sol.rmse_px,
                        "focal_estimated": sol.focal_estimated, "focal_requested": bool(self.estimate_focal),
                        "notes": notes, "previous_K": intr.K.tolist()}
        set_annotation(cam, ann)
        rmse = update_errors(context, cam)
        self.report({"INFO"}, f"Solved from {len(names)} points, RMSE {rmse:.2f} px")
        if len(names) >= 6:  # enough points for RANSAC to flag a wrong click: ask the worker's robust PnP too
            robust_solve(context, cam, names, uv, xyz, photo_intrinsics(cam, context.scene))
        return {"FINISHED"}


def robust_solve(context, cam_obj, names, uv, xyz, intr: Intrinsics, threshold_px: float = 4.0) -> None:
    """When the worker runs, re-solve with its RANSAC PnP (poselib) and adopt the result if it keeps at least six
    points: clicks it rejects are listed as outliers. Non-blocking in the UI (the reply lands from the timer);
    headless, it waits for the reply."""
    from . import ops_worker

    sup = ops_worker.SUPERVISOR
    if sup.state not in ("ready", "busy"):
        return
    scene, cam_name, box = context.scene, cam_obj.name, {}

    def apply(result, error):
        box["done"] = True
        cam = bpy.data.objects.get(cam_name)
        if error or cam is None or not result.get("success") or result["n_inliers"] < 6:
            return
        ann = get_annotation(cam)
        previous = ann.get("solve", {})
        inlier = np.asarray(result["inliers"], dtype=bool)
        outliers = [n for n, ok in zip(names, inlier) if not ok]
        T = np.array(result["cam_from_world"])
        solve = {"solver": "worker-poselib-ransac", "n_points": len(names), "n_inliers": result["n_inliers"],
                 "threshold_px": threshold_px}
        if outliers and previous.get("focal_requested"):
            # a focal solved with the outliers among the points is wrong: solve it again from the inliers alone,
            # or go back to the focal the camera had before
            try:
                sol = solve_pnp_numpy(uv[inlier], xyz[inlier], None, (intr.width, intr.height))
                ok = sol.rmse_px <= FOCAL_MAX_RMSE_PX
            except ValueError:
                ok = False
            from .estimates import set_camera_intrinsics

            if ok:
                set_camera_intrinsics(cam, Intrinsics.from_K(sol.K, intr.width, intr.height))
                T = sol.cam_from_world
                solve["focal"] = f"solved again from the {int(inlier.sum())} inliers"
            elif previous.get("previous_K") is not None:
                K0 = np.array(previous["previous_K"])
                set_camera_intrinsics(cam, Intrinsics.from_K(K0, intr.width, intr.height))
                T = solve_pnp_numpy(uv[inlier], xyz[inlier], K0, (intr.width, intr.height)).cam_from_world
                solve["focal"] = "kept the previous focal: the inliers do not fix it"
        bcam.set_cam_from_world(cam, T)
        solve["notes"] = previous.get("notes", [])
        ann["solve"] = solve
        ann["outliers"] = outliers
        set_annotation(cam, ann)
        update_errors(bpy.context if bpy.context.scene else scene, cam)

    sup.request("solve_pnp", {"points2d": uv.tolist(), "points3d": xyz.tolist(), "intrinsics": intr.to_dict(),
                              "threshold_px": threshold_px}, apply, timeout=10)
    if bpy.app.background:
        ops_worker.wait_until(lambda: box.get("done"), 15)


class POSE_OT_update_annotation_errors(bpy.types.Operator):
    """Recompute the per-point reprojection errors after moving the camera or the keypoints"""

    bl_idname = "building_pose.update_annotation_errors"
    bl_label = "Update Errors"

    @classmethod
    def poll(cls, context):
        return active_photo_camera(context) is not None

    def execute(self, context):
        rmse = update_errors(context, active_photo_camera(context))
        self.report({"INFO"}, f"RMSE {rmse:.2f} px")
        return {"FINISHED"}


class POSE_OT_export_annotation(bpy.types.Operator):
    """Export the photo camera as a ground-truth pose (JSON) and a YOLO pose label (TXT)"""

    bl_idname = "building_pose.export_annotation"
    bl_label = "Export Annotation"

    directory: StringProperty(subtype="DIR_PATH", default="//annotations", name="Folder",
                              description="Where the pose JSON and the label go ('//' is next to the saved .blend)")

    @classmethod
    def poll(cls, context):
        return active_photo_camera(context) is not None

    def execute(self, context):
        cam = active_photo_camera(context)
        ann = get_annotation(cam)
        if not ann.get("points"):
            self.report({"ERROR"}, "Nothing annotated on this camera yet")
            return {"CANCELLED"}
        try:
            out = resolve(self.directory, "annotation folder")
        except ValueError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        intr = photo_intrinsics(cam, context.scene)
        T = bcam.get_cam_from_world(cam)
        stem = Path(ann.get("image", cam.name)).stem
        update_errors(context, cam)
        ann = get_annotation(cam)
        atomic_write_json(out / f"{stem}.pose.json", {
            "image": ann.get("image"), "intrinsics": intr.to_dict(), "cam_from_world": T,
            "blender_matrix_world": blender_matrix_world_from_cam_from_world(T),
            "convention": "cam_from_world, OpenCV camera axes; pixels OpenCV (centre of top-left pixel at 0,0)",
            "points": ann["points"], "errors_px": ann.get("errors_px", {}), "solve": ann.get("solve")})
        atomic_write_bytes(out / "labels" / f"{stem}.txt", (yolo_label(context, cam, intr) + "\n").encode())
        self.report({"INFO"}, f"Wrote {stem}.pose.json and labels/{stem}.txt to {out}")
        return {"FINISHED"}


def yolo_label(context, cam_obj, intr: Intrinsics) -> str:
    """One Ultralytics pose line: ``0 cx cy w h`` then ``x y v`` per keypoint of the list order, normalized;
    v = 2 for annotated points, 0 for points not annotated (not visible). The box spans the annotated points."""
    ann = get_annotation(cam_obj)
    order = [k.name for k in current_keypoints(context)]
    pts = np.array([ann["points"][n] for n in order if n in ann["points"]], dtype=np.float64).reshape(-1, 2)
    W, H = intr.width, intr.height
    lo, hi = np.clip(pts.min(0), 0, [W, H]), np.clip(pts.max(0), 0, [W, H])
    vals = [0, (lo[0] + hi[0]) / 2 / W, (lo[1] + hi[1]) / 2 / H, (hi[0] - lo[0]) / W, (hi[1] - lo[1]) / H]
    for n in order:
        if n in ann["points"]:
            u, v = ann["points"][n]
            vals += [(u + 0.5) / W, (v + 0.5) / H, 2]
        else:
            vals += [0, 0, 0]
    return " ".join(f"{x:.6f}" if isinstance(x, float) else str(x) for x in vals)

