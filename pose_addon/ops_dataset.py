"""Dataset panel operator: a modal, resumable, cancellable "Render Dataset" of the current scene."""
from pathlib import Path

import bpy
import numpy as np

from . import paths
from .blender.render import DatasetMismatchError, DatasetRender
from .scene_utils import target_objects, world_bounds


def output_folder(context) -> Path:
    """The panel's output folder; a blend-relative path in an unsaved file goes to the user data folder."""
    raw = context.scene.pose_tools.render.output_dir
    if raw.startswith("//") and not bpy.data.filepath:
        return paths.data_dir(context) / "datasets" / (raw[2:] or "pose_dataset")
    return Path(bpy.path.abspath(raw))


def scene_description(context) -> tuple[dict, str, np.ndarray, tuple]:
    """(manifest scene entry, scene key, building points [N, 3], (building objects, ground objects))."""
    objs = target_objects(context)
    if not objs:
        raise ValueError("No mesh to render: add or select a building mesh")
    boxes = world_bounds(objs)
    lo, hi = boxes[:, 0].min(0), boxes[:, 1].max(0)
    pts = []
    for o in objs:
        M = np.array(o.matrix_world)
        co = np.empty(len(o.data.vertices) * 3)
        o.data.vertices.foreach_get("co", co)
        pts.append(co.reshape(-1, 3) @ M[:3, :3].T + M[:3, 3])
    pts = np.concatenate(pts)
    if len(pts) > 20000:
        pts = pts[np.linspace(0, len(pts) - 1, 20000).astype(int)]
    ground = [o for o in context.scene.objects if o.type == "MESH" and o not in objs
              and o.name.lower().startswith("ground")]
    name = bpy.path.basename(bpy.data.filepath) or context.scene.name
    info = {"name": name, "source": bpy.data.filepath or "(unsaved)", "scale": 1.0,
            "bounds": [lo.tolist(), hi.tolist()], "target": ((lo + hi) / 2).tolist(), "boxes": boxes.tolist(),
            "objects": sorted(o.name for o in objs)}
    key = f"blend:{name}|{','.join(info['objects'])}"
    return info, key, pts, (objs, ground)


class POSE_OT_render_dataset(bpy.types.Operator):
    """Render RGB, depth and poses of the train/val/test views into the output folder.
    Resumes a matching partial dataset; Esc cancels and keeps the finished frames"""

    bl_idname = "building_pose.render_dataset"
    bl_label = "Render Dataset"

    _job = None
    _timer = None

    @classmethod
    def poll(cls, context):
        return context.scene is not None and not context.scene.pose_tools.render.running

    def _start(self, context) -> bool:
        settings = context.scene.pose_tools
        try:
            info, key, pts, gltf = scene_description(context)
            config = settings.render.to_config(settings.sampling)
            self._job = DatasetRender(config, output_folder(context), info, key, pts, gltf=gltf)
        except (DatasetMismatchError, ValueError, RuntimeError, OSError) as e:
            self.report({"ERROR"}, str(e))
            return False
        settings.render.running = True
        self._update(context, f"{self._job.done}/{self._job.total} frames")
        return True

    def _update(self, context, status: str) -> None:
        r = context.scene.pose_tools.render
        r.progress = self._job.done / max(self._job.total, 1)
        r.status = status

    def _finish(self, context, cancelled: bool):
        r = context.scene.pose_tools.render
        ds = self._job.finish()
        r.running = False
        if cancelled:
            r.status = f"Cancelled at {self._job.done}/{self._job.total}; run again to resume"
            self.report({"WARNING"}, r.status)
        else:
            r.status = f"Dataset complete: {len(ds.frames)} frames in {ds.root}"
            self.report({"INFO"}, r.status)
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None
        if context.area:
            context.area.tag_redraw()
        return {"CANCELLED"} if cancelled else {"FINISHED"}

    def execute(self, context):
        """Blocking render (headless and scripts)."""
        if not self._start(context):
            return {"CANCELLED"}
        try:
            while self._job.step() is not None:
                pass
        except Exception as e:  # keep the finished frames; report instead of a traceback
            context.scene.pose_tools.render.running = False
            self.report({"ERROR"}, f"Render stopped at frame {self._job.done}: {e}")
            return {"CANCELLED"}
        return self._finish(context, cancelled=False)

    def invoke(self, context, event):
        if bpy.app.background:
            return self.execute(context)
        if not self._start(context):
            return {"CANCELLED"}
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.05, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC":
            return self._finish(context, cancelled=True)
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        try:
            msg = self._job.step()  # one frame per timer tick: the UI gets control back between frames
        except Exception as e:
            self.report({"ERROR"}, f"Render stopped at frame {self._job.done}: {e}")
            return self._finish(context, cancelled=True)
        if msg is None:
            return self._finish(context, cancelled=False)
        self._update(context, f"{self._job.done}/{self._job.total}: {msg}")
        if context.area:
            context.area.tag_redraw()
        return {"RUNNING_MODAL"}


classes = (POSE_OT_render_dataset,)
