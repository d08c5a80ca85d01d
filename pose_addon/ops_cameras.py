"""Cameras panel operators: sample cameras around the target, clear them, copy a placement preset's ranges."""
import math

import bpy
import numpy as np

from .blender import camera as bcam
from .core.sampling import aabb_inside_fn, placement_preset, sample_cameras
from .scene_utils import box_corners, ensure_collection, target_objects, world_bounds
from .threaded import ThreadedOperator

COLLECTION = "Sampled Cameras"


class POSE_OT_sample_cameras(ThreadedOperator, bpy.types.Operator):
    bl_idname = "building_pose.sample_cameras"
    bl_label = "Sample Cameras"
    bl_description = ("Sample cameras around the selected meshes (or every visible mesh) with the panel's settings; "
                      "camera objects also set the scene resolution to the dataset's")
    bl_options = {"REGISTER", "UNDO"}
    busy_text = "Sampling cameras"

    @classmethod
    def poll(cls, context):
        return context.scene is not None and any(o.type == "MESH" for o in context.scene.objects)

    def prepare(self, context):
        """The sampler call (pure numpy, run in a thread from the UI)."""
        settings = context.scene.pose_tools
        objs = target_objects(context)
        if not objs:
            raise ValueError("No mesh to sample around: add or select a building mesh")
        boxes = world_bounds(objs)
        lo, hi = boxes[:, 0].min(0), boxes[:, 1].max(0)
        target = (lo + hi) / 2
        intr = settings.render.intrinsics()
        cfg = settings.sampling.to_config((lo, hi))
        self._n_objects = len(objs)
        return lambda: sample_cameras(cfg, target, intr, box_corners(boxes), aabb_inside_fn(boxes))

    def apply(self, context, poses):
        settings = context.scene.pose_tools
        intr = settings.render.intrinsics()
        clear_sampled(context)
        changed = ""
        if settings.sampling.output == "POSES":
            for T in poses:
                settings.poses.add().cam_from_world = [float(x) for x in np.asarray(T).ravel()]
        else:
            r = context.scene.render
            before = (r.resolution_x, r.resolution_y, r.resolution_percentage)
            col = ensure_collection(context, COLLECTION)
            for i, T in enumerate(poses):
                data = bpy.data.cameras.new(f"sampled_{i:04d}")
                obj = bpy.data.objects.new(f"sampled_{i:04d}", data)
                col.objects.link(obj)
                bcam.apply_intrinsics(obj, context.scene, intr)
                bcam.set_cam_from_world(obj, T)
            after = (r.resolution_x, r.resolution_y, r.resolution_percentage)
            if after != before:
                changed = (f"; scene resolution set to {after[0]}x{after[1]} (was {before[0]}x{before[1]} at "
                           f"{before[2]}%) to match the dataset")
        from . import draw

        draw.invalidate()
        self.report({"INFO"}, f"Sampled {len(poses)} cameras around {self._n_objects} object(s){changed}")
        return {"FINISHED"}


def clear_sampled(context) -> int:
    """Remove sampled camera objects and the pose list; returns how many were removed."""
    from . import draw

    draw.invalidate()
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
    bl_idname = "building_pose.clear_cameras"
    bl_label = "Clear"
    bl_description = "Remove the sampled cameras and the pose list"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        n = clear_sampled(context)
        self.report({"INFO"}, f"Removed {n} sampled camera(s)")
        return {"FINISHED"}


class POSE_OT_fit_sampling(bpy.types.Operator):
    bl_idname = "building_pose.fit_sampling"
    bl_label = "Fit to Model"
    bl_description = ("Copy the distances and elevations of a placement preset, scaled to the selected model's "
                      "size, into the custom settings")
    bl_options = {"REGISTER", "UNDO"}

    preset: bpy.props.EnumProperty(name="Preset", description="Placement to copy", default="orbit",
                                   items=[("orbit", "Orbit", "A shell around the model"),
                                          ("aerial", "Aerial", "High above the model")])

    @classmethod
    def poll(cls, context):
        return context.scene is not None and any(o.type == "MESH" for o in context.scene.objects)

    def execute(self, context):
        from .props import model_bounds

        try:
            lo, hi = model_bounds(context)
            cfg = placement_preset(self.preset, lo, hi)
        except ValueError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        s = context.scene.pose_tools.sampling
        s.placement, s.shape = "custom", "HEMISPHERE"
        s.distance_min, s.distance_max = cfg.distance
        s.elevation_min, s.elevation_max = (math.radians(x) for x in cfg.elevation_deg)
        self.report({"INFO"}, f"Custom placement: {cfg.distance[0]:.3g}-{cfg.distance[1]:.3g} m away, "
                              f"{cfg.elevation_deg[0]:.0f}-{cfg.elevation_deg[1]:.0f} deg up, "
                              f"for a model {float(np.max(hi - lo)):.3g} m long")
        return {"FINISHED"}
