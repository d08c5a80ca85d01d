"""Cameras panel operators: sample cameras around the target, clear them."""
import bpy
import numpy as np

from .blender import camera as bcam
from .core.sampling import aabb_inside_fn, sample_cameras
from .scene_utils import box_corners, ensure_collection, target_objects, world_bounds

COLLECTION = "Sampled Cameras"


class POSE_OT_sample_cameras(bpy.types.Operator):
    """Sample cameras around the selected objects (or the whole scene) with the panel's settings"""

    bl_idname = "building_pose.sample_cameras"
    bl_label = "Sample Cameras"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return context.scene is not None and any(o.type == "MESH" for o in context.scene.objects)

    def execute(self, context):
        settings = context.scene.pose_tools
        objs = target_objects(context)
        if not objs:
            self.report({"ERROR"}, "No mesh to sample around: add or select a building mesh")
            return {"CANCELLED"}
        boxes = world_bounds(objs)
        target = (boxes[:, 0].min(0) + boxes[:, 1].max(0)) / 2
        intr = settings.render.to_config(settings.sampling).intrinsics()
        try:
            poses = sample_cameras(settings.sampling.to_config(), target, intr, box_corners(boxes),
                                   aabb_inside_fn(boxes))
        except (RuntimeError, ValueError) as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        clear_sampled(context)
        if settings.sampling.output == "POSES":
            for T in poses:
                settings.poses.add().cam_from_world = [float(x) for x in np.asarray(T).ravel()]
        else:
            col = ensure_collection(context, COLLECTION)
            for i, T in enumerate(poses):
                data = bpy.data.cameras.new(f"sampled_{i:04d}")
                obj = bpy.data.objects.new(f"sampled_{i:04d}", data)
                col.objects.link(obj)
                bcam.apply_intrinsics(obj, context.scene, intr)
                bcam.set_cam_from_world(obj, T)
        self.report({"INFO"}, f"Sampled {len(poses)} cameras around {len(objs)} object(s)")
        return {"FINISHED"}


def clear_sampled(context) -> int:
    """Remove sampled camera objects and the pose list; returns how many were removed."""
    n = len(context.scene.pose_tools.poses)
    context.scene.pose_tools.poses.clear()
    col = bpy.data.collections.get(COLLECTION)
    if col:
        for obj in list(col.objects):
            data = obj.data
            bpy.data.objects.remove(obj, do_unlink=True)
            if data and data.users == 0:
                bpy.data.cameras.remove(data)
            n += 1
    return n


class POSE_OT_clear_cameras(bpy.types.Operator):
    """Remove the sampled cameras and the pose list"""

    bl_idname = "building_pose.clear_cameras"
    bl_label = "Clear"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        n = clear_sampled(context)
        self.report({"INFO"}, f"Removed {n} sampled camera(s)")
        return {"FINISHED"}


classes = (POSE_OT_sample_cameras, POSE_OT_clear_cameras)
