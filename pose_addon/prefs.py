"""Add-on preferences, keyed by the extension's package name."""
import bpy
from bpy.props import StringProperty

from . import paths


class POSE_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = paths.PACKAGE

    worker_python: StringProperty(
        name="Worker Python", subtype="FILE_PATH",
        description="Python interpreter of the ml_backend worker environment (its .venv/bin/python)")
    worker_args: StringProperty(
        name="Worker Arguments", default="-m ml_backend serve",
        description="Arguments that start the worker with that interpreter")
    data_dir: StringProperty(
        name="Data Folder", subtype="DIR_PATH",
        description="Where datasets, databases and checkpoints go (default: the extension's user folder)")

    def draw(self, context):
        col = self.layout.column()
        col.prop(self, "worker_python")
        col.prop(self, "worker_args")
        col.prop(self, "data_dir")


def get(context=None) -> "POSE_AP_preferences | None":
    """This extension's preferences, or None when it runs without being registered as an add-on."""
    context = context or bpy.context
    addon = context.preferences.addons.get(paths.PACKAGE)
    return addon.preferences if addon else None


classes = (POSE_AP_preferences,)
