"""File > Import and File > Export: cameras as COLMAP text models and nerfstudio ``transforms.json``, and the
``poses.json`` of ``localize`` (one estimated camera per localized photo). Imported cameras show their photo as
background; the scene's resolution is left alone (each camera keeps its photo's size in ``pose_width`` /
``pose_height``)."""
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, StringProperty
from bpy_extras.io_utils import ExportHelper, ImportHelper

from . import estimates
from .blender import camera as bcam
from .core.dataset import Frame, write_colmap, write_nerfstudio
from .core.interchange import InterchangeError, read_colmap, read_localize, read_nerfstudio
from .scene_utils import ensure_collection

IMPORT_COLLECTION = "Imported Cameras"


def create_camera(context, rec, collection_name: str):
    """A camera object for a :class:`.core.interchange.CameraRecord` (named after the photo's stem), with the
    photo as background when the file exists. Returns (object, whether the photo was found)."""
    data = bpy.data.cameras.new(rec.name)
    obj = bpy.data.objects.new(rec.name, data)
    ensure_collection(context, collection_name).objects.link(obj)
    estimates.set_camera_intrinsics(obj, rec.intrinsics)
    bcam.set_cam_from_world(obj, rec.cam_from_world)
    found = estimates.add_photo_background(obj, rec.image)
    obj["pose_image"] = rec.image
    obj["pose_width"], obj["pose_height"] = rec.intrinsics.width, rec.intrinsics.height
    return obj, found


def _report_import(op, cams: list, found: int, distorted: int, source: Path, extra: str = "") -> None:
    msg = f"Imported {len(cams)} camera(s) from {source.name}"
    if found < len(cams):
        msg += f"; {len(cams) - found} photo(s) not found, those cameras have no background"
    if distorted:
        msg += f"; lens distortion of {distorted} camera(s) ignored (Blender cameras have none)"
    op.report({"INFO"}, msg + extra)


def camera_frames(context, selected_only: bool) -> list:
    """:class:`.core.dataset.Frame` s of the scene's cameras (the selected ones, else all): each camera's pose,
    its intrinsics at its photo's size (else the scene's resolution) and its photo's path (else its name)."""
    import json

    objs = [o for o in context.scene.objects if o.type == "CAMERA" and (o.select_get() or not selected_only)]
    if selected_only and not objs:
        objs = [o for o in context.scene.objects if o.type == "CAMERA"]
    frames = []
    for o in sorted(objs, key=lambda o: o.name):
        ann = json.loads(o["pose_annotation"]) if o.get("pose_annotation") else {}
        w = int(o.get("pose_width", ann.get("width", 0)))
        h = int(o.get("pose_height", ann.get("height", 0)))
        image = o.get("pose_image") or ann.get("image") or ""
        if not image:
            for bg in o.data.background_images:
                if bg.image is not None and bg.image.filepath:
                    image = bpy.path.abspath(bg.image.filepath)
                    w, h = w or bg.image.size[0], h or bg.image.size[1]
                    break
        intr = bcam.intrinsics_at_size(o, w, h) if w and h else bcam.intrinsics_from_camera(o, context.scene)
        frames.append(Frame(o.name, "export", str(image or f"{o.name}.png"), None, intr, bcam.get_cam_from_world(o)))
    return frames


class POSE_OT_import_colmap(bpy.types.Operator, ImportHelper):
    bl_idname = "building_pose.import_colmap"
    bl_label = "Import COLMAP Cameras"
    bl_description = ("Import the cameras of a COLMAP text model (cameras.txt + images.txt), with their photos as "
                      "camera backgrounds")
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = ".txt"
    filter_glob: StringProperty(default="*.txt", options={"HIDDEN"}, name="Filter",
                                description="Files shown in the browser")
    image_dir: StringProperty(name="Image Folder", subtype="DIR_PATH",
                              description="Where the photos are (default: images/ next to the model folder)")

    def execute(self, context):
        try:
            recs = read_colmap(Path(self.filepath), bpy.path.abspath(self.image_dir) if self.image_dir else None)
        except InterchangeError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        made = [create_camera(context, r, IMPORT_COLLECTION) for r in recs]
        _report_import(self, made, sum(f for _, f in made), sum(1 for r in recs if r.intrinsics.dist),
                       Path(self.filepath).parent)
        return {"FINISHED"}


class POSE_OT_import_nerfstudio(bpy.types.Operator, ImportHelper):
    bl_idname = "building_pose.import_nerfstudio"
    bl_label = "Import nerfstudio Cameras"
    bl_description = "Import the cameras of a nerfstudio transforms.json, with their images as camera backgrounds"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = ".json"
    filter_glob: StringProperty(default="*.json", options={"HIDDEN"}, name="Filter",
                                description="Files shown in the browser")

    def execute(self, context):
        try:
            recs = read_nerfstudio(Path(self.filepath))
        except InterchangeError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        made = [create_camera(context, r, IMPORT_COLLECTION) for r in recs]
        _report_import(self, made, sum(f for _, f in made), sum(1 for r in recs if r.intrinsics.dist),
                       Path(self.filepath))
        return {"FINISHED"}


class POSE_OT_import_localize(bpy.types.Operator, ImportHelper):
    bl_idname = "building_pose.import_localize"
    bl_label = "Import Localized Photos"
    bl_description = ("Import the poses.json of 'localize': one estimated camera per localized photo, with the "
                      "photo as background; failed photos are listed with their reason")
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = ".json"
    filter_glob: StringProperty(default="poses.json;*.json", options={"HIDDEN"}, name="Filter",
                                description="Files shown in the browser")
    frame: EnumProperty(name="Place In", default="import",
                        description="Which world the cameras are placed in",
                        items=[("import", "Imported Model", "Around the model as Blender's importer places it "
                                                            "(glTF and OBJ turned Z up)"),
                               ("model", "Model File Frame", "The model file's own coordinates, unchanged"),
                               ("render", "Render World", "The scaled, centred world the references were "
                                                          "rendered in")])

    def execute(self, context):
        try:
            doc, recs = read_localize(Path(self.filepath), self.frame)
        except InterchangeError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        ok = [r for r in recs if r.cam_from_world is not None]
        made = []
        for r in ok:
            info = {"n_inliers": r.info.get("n_inliers") or 0, "timings": {"total_s": r.info.get("time_s")}}
            obj = estimates.create_estimated_camera(context, r.image, r.cam_from_world, r.intrinsics,
                                                    str(doc.get("method") or "localize"), info)
            obj["pose_confidence"] = float(r.info.get("confidence") or 0.0)
            obj["pose_inlier_ratio"] = float(r.info.get("inlier_ratio") or 0.0)
            made.append(obj)
        failed = [r for r in recs if r.cam_from_world is None]
        for r in failed[:5]:
            self.report({"WARNING"}, f"{r.name}: not localized ({r.info.get('reason') or 'no reason given'})")
        self.report({"INFO"}, f"Imported {len(made)} localized photo(s) of {len(recs)} from {Path(self.filepath).name}"
                              + (f"; {len(failed)} failed" if failed else ""))
        return {"FINISHED"} if made else {"CANCELLED"}


class POSE_OT_export_colmap(bpy.types.Operator):
    bl_idname = "building_pose.export_colmap"
    bl_label = "Export COLMAP Cameras"
    bl_description = ("Write the selected cameras (or every camera) as a COLMAP text model: cameras.txt, images.txt "
                      "and an empty points3D.txt")

    directory: StringProperty(name="Folder", subtype="DIR_PATH", description="Folder of the COLMAP model")
    selected_only: BoolProperty(name="Selected Only", default=True,
                                description="Only the selected cameras (all cameras when none is selected)")

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        from .paths import resolve

        try:
            out = resolve(self.directory, "COLMAP folder")
            frames = camera_frames(context, self.selected_only)
            if not frames:
                raise ValueError("No camera to export")
            for f in frames:
                f.image = Path(f.image).name  # COLMAP names images relative to its image folder
            write_colmap(frames, out)
        except (ValueError, OSError) as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Wrote {len(frames)} camera(s) to {out}")
        return {"FINISHED"}


class POSE_OT_export_nerfstudio(bpy.types.Operator, ExportHelper):
    bl_idname = "building_pose.export_nerfstudio"
    bl_label = "Export nerfstudio Cameras"
    bl_description = "Write the selected cameras (or every camera) as a nerfstudio transforms.json"

    filename_ext = ".json"
    filter_glob: StringProperty(default="*.json", options={"HIDDEN"}, name="Filter",
                                description="Files shown in the browser")
    selected_only: BoolProperty(name="Selected Only", default=True,
                                description="Only the selected cameras (all cameras when none is selected)")

    def invoke(self, context, event):
        if not self.filepath:
            self.filepath = "transforms.json"
        return ExportHelper.invoke(self, context, event)

    def execute(self, context):
        from .paths import resolve

        try:
            out = resolve(self.filepath, "transforms.json")
            frames = camera_frames(context, self.selected_only)
            if not frames:
                raise ValueError("No camera to export")
            for f in frames:
                f.image = str(Path(f.image).resolve()) if Path(f.image).is_absolute() else f.image
            write_nerfstudio(frames, out, out.parent)
        except (ValueError, OSError) as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Wrote {len(frames)} camera(s) to {out}")
        return {"FINISHED"}


class POSE_OT_export_dataset(bpy.types.Operator):
    bl_idname = "building_pose.export_dataset"
    bl_label = "Export Dataset"
    bl_description = ("Write a rendered dataset's cameras for other tools: a COLMAP text model in <dataset>/colmap, "
                      "or a nerfstudio transforms.json (with depth_file_path) in the dataset folder")

    format: EnumProperty(name="Format", default="COLMAP", description="Which tool's format",
                         items=[("COLMAP", "COLMAP", "cameras.txt, images.txt and points3D.txt in <dataset>/colmap"),
                                ("NERFSTUDIO", "nerfstudio", "<dataset>/transforms.json, depth as depth_mm/*.npy")])
    dataset: StringProperty(name="Dataset", subtype="DIR_PATH",
                            description="Dataset folder (default: the Dataset panel's output folder)")

    def execute(self, context):
        from .core.dataset import Dataset, DatasetError, export_colmap, export_nerfstudio
        from .ops_dataset import output_folder
        from .paths import resolve

        try:
            root = resolve(self.dataset, "dataset folder") if self.dataset else output_folder(context)
            ds = Dataset.load(root)
            if self.format == "COLMAP":
                out = export_colmap(ds, root / "colmap")
            else:
                out = export_nerfstudio(ds, root / "transforms.json")
        except (DatasetError, ValueError, OSError) as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Wrote the {len(ds.frames)} cameras of {root.name} to {out}")
        return {"FINISHED"}


def _menu_import(self, context):
    self.layout.operator(POSE_OT_import_colmap.bl_idname, text="COLMAP Cameras (.txt)")
    self.layout.operator(POSE_OT_import_nerfstudio.bl_idname, text="nerfstudio Cameras (transforms.json)")
    self.layout.operator(POSE_OT_import_localize.bl_idname, text="Localized Photos (poses.json)")


def _menu_export(self, context):
    self.layout.operator(POSE_OT_export_colmap.bl_idname, text="COLMAP Cameras (.txt)")
    self.layout.operator(POSE_OT_export_nerfstudio.bl_idname, text="nerfstudio Cameras (transforms.json)")


def register_menus() -> None:
    bpy.types.TOPBAR_MT_file_import.append(_menu_import)
    bpy.types.TOPBAR_MT_file_export.append(_menu_export)


def unregister_menus() -> None:
    bpy.types.TOPBAR_MT_file_import.remove(_menu_import)
    bpy.types.TOPBAR_MT_file_export.remove(_menu_export)
