"""Estimates panel operators: compare estimated cameras with the truth, export the table, clear."""
from pathlib import Path

import bpy

from . import estimates
from .core.dataset import DatasetError


class POSE_OT_compare_estimates(bpy.types.Operator):
    """Compute every estimated camera's translation and rotation error against the truth camera or dataset"""

    bl_idname = "pose.compare_estimates"
    bl_label = "Compare"

    @classmethod
    def poll(cls, context):
        return bool(estimates.estimated_cameras())

    def execute(self, context):
        c = context.scene.pose_tools.compare
        if c.truth_camera is None and not c.dataset_dir:
            self.report({"ERROR"}, "Choose a truth camera or a truth dataset folder first")
            return {"CANCELLED"}
        try:
            rows = estimates.compare(c.truth_camera, c.dataset_dir or None)
        except DatasetError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        matched = sum(1 for r in rows if r["t_err_m"] == r["t_err_m"])
        self.report({"INFO"}, f"Compared {matched} of {len(rows)} estimated cameras with the truth")
        return {"FINISHED"}


class POSE_OT_export_estimates_csv(bpy.types.Operator):
    """Write the table of estimated cameras and their errors to CSV"""

    bl_idname = "pose.export_estimates_csv"
    bl_label = "Export CSV"

    filepath: bpy.props.StringProperty(subtype="FILE_PATH", default="")

    @classmethod
    def poll(cls, context):
        return bool(estimates.estimated_cameras())

    def execute(self, context):
        c = context.scene.pose_tools.compare
        path = Path(bpy.path.abspath(self.filepath or c.csv_path))
        try:
            rows = estimates.compare(c.truth_camera, c.dataset_dir or None)
            estimates.write_csv(rows, path)
        except (DatasetError, OSError) as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Wrote {len(rows)} rows to {path}")
        return {"FINISHED"}


class POSE_OT_clear_estimates(bpy.types.Operator):
    """Delete all estimated cameras"""

    bl_idname = "pose.clear_estimates"
    bl_label = "Clear Estimates"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        for obj in estimates.estimated_cameras():
            data = obj.data
            bpy.data.objects.remove(obj, do_unlink=True)
            if data.users == 0:
                bpy.data.cameras.remove(data)
        return {"FINISHED"}


classes = (POSE_OT_compare_estimates, POSE_OT_export_estimates_csv, POSE_OT_clear_estimates)
