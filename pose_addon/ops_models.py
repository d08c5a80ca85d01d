"""Models panel: build a matching database and train the regression or keypoint model of the current scene's
dataset as worker jobs (progress in the Worker panel, cancel here), and list what the worker has built to pick
from in "Estimate Camera from Photo"."""
import json

import bpy
from bpy.props import EnumProperty, IntProperty, StringProperty

from . import ops_worker, paths
from .props import runtime

JOB_KINDS = [("build_database", "Matching Database", "SIFT features of the references lifted through depth"),
             ("train_regression", "Regression Model", "Training views, image features and the pose network"),
             ("train_keypoints", "Keypoint Model", "Labelled renders and an offline YOLO pose training")]


def _call(method: str, params: dict, on_done, timeout: float = 60.0) -> bool:
    """Send a request when the worker is ready; ``on_done(result, error)`` runs from the timer."""
    if ops_worker.SUPERVISOR.state not in ("ready", "busy"):
        return False
    ops_worker.SUPERVISOR.request(method, params, on_done, timeout=timeout)
    return True


def _wait(box: dict, timeout: float) -> bool:
    """Headless only: service the worker until ``box`` is filled."""
    return ops_worker.wait_until(lambda: bool(box), timeout)


def known_folders(context) -> list[str]:
    """Folders the user pointed the extension at (data folder, dataset output, estimation inputs) for the worker
    to search besides its own."""
    from . import paths
    from .ops_dataset import output_folder

    e = context.scene.pose_tools.estimate
    out = {str(paths.data_dir(context))}
    try:
        out.add(str(output_folder(context)))
    except ValueError:  # a '//' output folder in an unsaved file: nothing there yet
        pass
    out |= {bpy.path.abspath(p) for p in (e.dataset,) if p}
    return sorted(out)


def store_models(scene, models: list) -> None:
    items = scene.pose_tools.models
    items.clear()
    for m in models:
        it = items.add()
        it.kind, it.path = m.get("kind", "?"), m.get("path", "")
        it.scene, it.date = str(m.get("scene") or ""), m.get("date", "")
        it.figures = json.dumps(m.get("figures", {}))


class POSE_OT_refresh_models(bpy.types.Operator):
    """Ask the worker which datasets, databases and checkpoints it has"""

    bl_idname = "building_pose.refresh_models"
    bl_label = "Refresh"

    def execute(self, context):
        box = {}
        params = {"roots": known_folders(context)}
        if not _call("models.list", params, lambda r, e: box.update(r=r, e=e)):
            self.report({"ERROR"}, "Start the worker first (Worker panel)")
            return {"CANCELLED"}
        if bpy.app.background or not context.window:
            if not _wait(box, 60) or box["e"]:
                self.report({"ERROR"}, f"The worker did not list its models: {box.get('e')}")
                return {"CANCELLED"}
            store_models(context.scene, box["r"]["models"])
        else:  # interactive: the reply lands from the timer
            scene = context.scene
            ops_worker.SUPERVISOR.request("models.list", params,
                                          lambda r, e: (not e) and store_models(scene, r["models"]))
        return {"FINISHED"}


class POSE_OT_use_model(bpy.types.Operator):
    """Use this database, dataset or checkpoint in "Estimate Camera from Photo\""""

    bl_idname = "building_pose.use_model"
    bl_label = "Use for Estimation"

    index: IntProperty(default=-1, name="Index", description="Entry of the models list (-1: the selected one)")

    def execute(self, context):
        s = context.scene.pose_tools
        i = s.models_index if self.index < 0 else self.index
        if not 0 <= i < len(s.models):
            self.report({"ERROR"}, "Pick a model in the list")
            return {"CANCELLED"}
        m, e = s.models[i], s.estimate
        if m.kind == "database":
            e.database = m.path
            if e.method.startswith(("regression", "keypoints")):
                e.method = "sift"  # a feature database serves the matching methods
        elif m.kind == "dataset":
            e.dataset = m.path
        elif m.kind == "regression":
            e.checkpoint, e.method = m.path, "regression"
        elif m.kind == "keypoints":
            e.model, e.method = m.path, "keypoints"
        else:
            self.report({"ERROR"}, f"A {m.kind} cannot be used for estimation")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Estimation uses {m.path}")
        return {"FINISHED"}


class POSE_OT_start_model_job(bpy.types.Operator):
    """Build or train a model for a dataset as a worker job"""

    bl_idname = "building_pose.start_model_job"
    bl_label = "Build"

    kind: EnumProperty(name="What", items=JOB_KINDS, description="What to build from the dataset")
    dataset: StringProperty(name="Dataset", subtype="DIR_PATH",
                            description="Dataset folder (default: the Dataset panel's output)")

    def execute(self, context):
        from .ops_dataset import output_folder

        try:
            ds = str(paths.resolve(self.dataset, "dataset folder")) if self.dataset else str(output_folder(context))
        except ValueError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        box = {}
        if not _call("job.start", {"kind": self.kind, "params": {"dataset": ds}}, lambda r, e: box.update(r=r, e=e)):
            self.report({"ERROR"}, "Start the worker first (Worker panel)")
            return {"CANCELLED"}
        if not _wait(box, 30) or box["e"]:
            self.report({"ERROR"}, f"The worker refused the job: {(box.get('e') or {}).get('message')}")
            return {"CANCELLED"}
        runtime(context).models_job = box["r"]["id"]
        self.report({"INFO"}, f"Job {box['r']['id']} started: {self.kind} on {ds}")
        return {"FINISHED"}


class POSE_OT_cancel_model_job(bpy.types.Operator):
    """Cancel the running model job (finished outputs stay; nothing half-written is kept)"""

    bl_idname = "building_pose.cancel_model_job"
    bl_label = "Cancel Job"

    @classmethod
    def poll(cls, context):
        return bool(runtime(context).models_job)

    def execute(self, context):
        job = runtime(context).models_job
        _call("job.cancel", {"job": job}, lambda r, e: None)
        runtime(context).models_job = ""
        self.report({"INFO"}, f"Cancel requested for job {job}")
        return {"FINISHED"}


