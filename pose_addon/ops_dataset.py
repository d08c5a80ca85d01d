"""Dataset panel operator: a modal, resumable, cancellable "Render Dataset" of the current scene.

The render happens in a temporary scene (:class:`DatasetJob`) that links the user's visible objects: the
engine, colour management, resolution, passes, camera, sun and world of the render live there, and closing the job
(finished, cancelled or failed) removes it with every data block it created, so the user's scene, objects,
selection, active camera and world are left as they were.
"""
from pathlib import Path

import bpy
import numpy as np

from . import paths
from .blender.render import DatasetMismatchError, DatasetRender
from .props import runtime
from .scene_utils import target_objects, world_bounds

TEMP_SCENE = "Building Pose Render"
#: the bpy.data collections whose new data blocks a closed job removes
_DATA = ("scenes", "objects", "meshes", "cameras", "lights", "materials", "images", "worlds", "node_groups",
         "textures", "collections")


def output_folder(context) -> Path:
    """The panel's output folder as an absolute path (a ``//`` path in an unsaved file is refused)."""
    return paths.resolve(context.scene.pose_tools.render.output_dir, "dataset output folder")


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


def rendered_objects(scene, view_layer) -> list:
    """What a dataset shows: the scene's visible, renderable objects except its cameras and lamps (a dataset
    brings its own camera, sun and sky)."""
    return [o for o in scene.objects if o.type not in ("CAMERA", "LIGHT") and not o.hide_render
            and o.visible_get(view_layer=view_layer)]


class DatasetJob:
    """A :class:`DatasetRender` of the user's scene run inside a temporary scene; :meth:`close` (always called,
    also after a cancel or an error) removes the temporary scene and what the render created."""

    def __init__(self, context):
        settings = context.scene.pose_tools
        self.closed = False
        self.tmp = None
        self._before = {k: {i.as_pointer() for i in getattr(bpy.data, k)} for k in _DATA}
        self._had_result = "Render Result" in bpy.data.images
        out = output_folder(context)
        info, key, pts, gltf = scene_description(context)
        config = settings.render.to_config(settings.sampling, (np.array(info["bounds"][0]),
                                                               np.array(info["bounds"][1])))
        objects = rendered_objects(context.scene, context.view_layer)
        self._pass_index = {o.as_pointer(): (o, o.pass_index) for o in objects}
        tmp = bpy.data.scenes.new(TEMP_SCENE)
        self.tmp = tmp
        try:
            tmp.world = bpy.data.worlds.new(TEMP_SCENE)
            tmp.unit_settings.system = context.scene.unit_settings.system
            tmp.unit_settings.scale_length = context.scene.unit_settings.scale_length
            for o in objects:
                tmp.collection.objects.link(o)
            self._export_gltf(context, out, config.digest(key), gltf, settings.render.bake_resolution)
            with self.override():
                self.render = DatasetRender(config, out, info, key, pts, gltf=gltf)
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _export_gltf(context, out: Path, digest: str, gltf: tuple, bake_resolution: int) -> None:
        """Bake and export ``scene.glb`` from the user's scene (the baking operators need its view layer), then
        put its selection and active object back. A folder holding another dataset is refused first."""
        from .blender import scene_io
        from .blender.render import GLTF_NAME

        if (out / GLTF_NAME).is_file():
            return
        DatasetRender._open_existing(type("_Out", (), {"out": out})(), digest)
        vl = context.view_layer
        vl.update()
        selected = {o.name for o in vl.objects if o is not None and o.select_get()}
        active = vl.objects.active
        try:
            scene_io.export_scene_gltf(out / GLTF_NAME, bake_resolution=bake_resolution, building=gltf[0],
                                       ground=gltf[1])
        finally:
            vl.update()
            for o in vl.objects:
                if o is not None and o.select_get() != (o.name in selected):
                    o.select_set(o.name in selected)
            vl.objects.active = active

    def override(self):
        """A context in which ``bpy.context.scene`` is the temporary scene."""
        return bpy.context.temp_override(scene=self.tmp, view_layer=self.tmp.view_layers[0])

    @property
    def done(self) -> int:
        return self.render.done

    @property
    def total(self) -> int:
        return self.render.total

    def step(self):
        """Render the next frame; None when nothing is left."""
        with self.override():
            return self.render.step()

    def finish(self):
        """Mark the dataset complete when every frame exists; returns the dataset."""
        return self.render.finish()

    def close(self) -> None:
        """Remove the temporary scene and every data block created since the job began that nothing else uses."""
        if self.closed:
            return
        self.closed = True
        for o, index in self._pass_index.values():
            if o.pass_index != index:
                o.pass_index = index
        if self.tmp is not None:
            for o in list(self.tmp.collection.objects):
                self.tmp.collection.objects.unlink(o)
            bpy.data.scenes.remove(self.tmp)
            self.tmp = None
        if not self._had_result and "Render Result" in bpy.data.images:
            bpy.data.images.remove(bpy.data.images["Render Result"])
        for _ in range(4):  # objects first, then their data, then materials and images
            new = [i for k in _DATA for i in getattr(bpy.data, k)
                   if i.as_pointer() not in self._before[k] and i.users == 0]
            if not new:
                break
            bpy.data.batch_remove(new)


def _set_status(context, done: int, total: int, status: str, running: bool) -> None:
    rt = runtime(context)
    rt.render_progress = done / max(total, 1)
    rt.render_status = status
    rt.render_running = running


class POSE_OT_render_dataset(bpy.types.Operator):
    bl_idname = "building_pose.render_dataset"
    bl_label = "Render Dataset"
    bl_description = ("Render RGB, depth and poses of the train/val/test views into the output folder, in a "
                      "temporary scene (yours stays as it is); resumes a matching partial dataset, Esc cancels "
                      "and keeps the finished frames")

    _job = None
    _timer = None

    @classmethod
    def poll(cls, context):
        return context.scene is not None and not runtime(context).render_running

    def _start(self, context) -> bool:
        if context.mode != "OBJECT":
            self.report({"ERROR"}, "Switch to Object Mode before rendering a dataset")
            return False
        try:
            self._job = DatasetJob(context)
        except (DatasetMismatchError, ValueError, RuntimeError, OSError) as e:
            self.report({"ERROR"}, str(e))
            return False
        _set_status(context, self._job.done, self._job.total, f"{self._job.done}/{self._job.total} frames", True)
        return True

    def _finish(self, context, cancelled: bool, error: str = ""):
        job = self._job
        try:
            ds = job.finish()
        finally:
            job.close()
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None
        if error:
            status = f"Render stopped at frame {job.done}/{job.total}: {error}"
            self.report({"ERROR"}, status)
        elif cancelled:
            status = f"Cancelled at {job.done}/{job.total}; run again to resume"
            self.report({"WARNING"}, status)
        else:
            status = f"Dataset complete: {len(ds.frames)} frames in {ds.root}"
            self.report({"INFO"}, status)
        _set_status(context, job.done, job.total, status, False)
        if context.area:
            context.area.tag_redraw()
        return {"CANCELLED"} if cancelled or error else {"FINISHED"}

    def execute(self, context):
        """Blocking render (headless and scripts)."""
        if not self._start(context):
            return {"CANCELLED"}
        try:
            while self._job.step() is not None:
                pass
        except Exception as e:  # keep the finished frames; report instead of a traceback
            return self._finish(context, cancelled=False, error=str(e))
        except BaseException:
            self._job.close()
            _set_status(context, self._job.done, self._job.total, "Interrupted", False)
            raise
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
            return self._finish(context, cancelled=False, error=str(e))
        if msg is None:
            return self._finish(context, cancelled=False)
        _set_status(context, self._job.done, self._job.total, f"{self._job.done}/{self._job.total}: {msg}", True)
        if context.area:
            context.area.tag_redraw()
        return {"RUNNING_MODAL"}
