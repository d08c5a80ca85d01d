"""Estimates panel operators: compare estimated cameras with the truth, export the table, clear."""
from pathlib import Path

import bpy

from . import estimates
from .core.dataset import DatasetError
from .paths import resolve
from .props import runtime


class POSE_OT_compare_estimates(bpy.types.Operator):
    bl_idname = "building_pose.compare_estimates"
    bl_label = "Compare"
    bl_description = ("Translation and rotation error of each estimated camera against the truth of its own photo "
                      "(the truth camera showing the same file stem, or the truth dataset's frame of that stem)")

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
        if matched == 0:
            what = (f"photo '{estimates.photo_stem(c.truth_camera)}' of truth camera {c.truth_camera.name}"
                    if c.truth_camera is not None else "any frame of the truth dataset")
            self.report({"ERROR"}, f"No estimated camera shows the {what} (photos are matched by file stem)")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Compared {matched} of {len(rows)} estimated cameras with the truth of their photo")
        return {"FINISHED"}


class POSE_OT_export_estimates_csv(bpy.types.Operator):
    bl_idname = "building_pose.export_estimates_csv"
    bl_label = "Export CSV"
    bl_description = "Write the table of estimated cameras and their errors to CSV"

    filepath: bpy.props.StringProperty(subtype="FILE_PATH", default="", name="File",
                                       description="CSV file to write (default: the panel's CSV path)")

    @classmethod
    def poll(cls, context):
        return bool(estimates.estimated_cameras())

    def execute(self, context):
        c = context.scene.pose_tools.compare
        try:
            path = resolve(self.filepath or c.csv_path, "CSV file")
            rows = estimates.compare(c.truth_camera, c.dataset_dir or None)
            estimates.write_csv(rows, path)
        except (DatasetError, OSError, ValueError) as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Wrote {len(rows)} rows to {path}")
        return {"FINISHED"}


class POSE_OT_clear_estimates(bpy.types.Operator):
    bl_idname = "building_pose.clear_estimates"
    bl_label = "Clear Estimates"
    bl_description = "Delete every camera of the 'Estimated Cameras' collection"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        cams = estimates.estimated_cameras()
        for obj in cams:
            data = obj.data
            bpy.data.objects.remove(obj, do_unlink=True)
            if data.users == 0:
                bpy.data.cameras.remove(data)
        self.report({"INFO"}, f"Deleted {len(cams)} estimated camera(s)")
        return {"FINISHED"}


def estimate_job_params(context) -> dict:
    """The worker's ``estimate`` job parameters from the panel settings (paths made absolute)."""
    e = context.scene.pose_tools.estimate
    ab = bpy.path.abspath
    if not e.photo:
        raise ValueError("Choose a photo or a folder of photos")
    conf = {k: ab(getattr(e, k)) for k in ("database", "dataset", "checkpoint", "model") if getattr(e, k)}
    intr = {"source": e.intrinsics}
    if e.intrinsics == "preset":
        intr.update(focal_mm=e.focal_mm, preset=e.preset)
    elif e.intrinsics == "calibration":
        if not e.calibration:
            raise ValueError("Choose the calibration file")
        intr["path"] = ab(e.calibration)
    return {"path": ab(e.photo), "method": e.method, "conf": conf, "intrinsics": intr}


def cameras_from_result(context, result: dict) -> list:
    """Estimated camera objects from an ``estimate`` job's result; failed photos are reported, not created."""
    import numpy as np

    from .core.cameras import Intrinsics

    made = []
    for row in result.get("estimates", []):
        if not row.get("success") or row.get("cam_from_world") is None:
            continue
        intr = Intrinsics.from_dict(row["intrinsics"])
        made.append(estimates.create_estimated_camera(
            context, row["image"], np.array(row["cam_from_world"]), intr, row.get("method", "?"),
            {"n_inliers": row.get("n_inliers", 0), "reproj_error_px": row.get("reproj_error_px") or float("nan"),
             "timings": row.get("timings", {}), "inliers_3d": row.get("inliers_3d"),
             "keypoints_2d": row.get("keypoints_2d")}))
    return made


class POSE_OT_estimate_camera(bpy.types.Operator):
    bl_idname = "building_pose.estimate_camera"
    bl_label = "Estimate Camera from Photo"
    bl_description = ("Estimate the camera of a photo (or of every photo in a folder) with the worker, with "
                      "progress; each result becomes a camera in 'Estimated Cameras' with the photo as "
                      "background. Esc cancels")
    bl_options = {"REGISTER", "UNDO"}

    _timer = None

    def _begin(self, context) -> bool:
        from . import ops_worker

        try:
            params = estimate_job_params(context)
        except ValueError as e:
            self.report({"ERROR"}, str(e))
            return False
        sup = ops_worker.SUPERVISOR
        if sup.state in ("stopped", "error"):
            try:  # a nested operator that reports an error raises RuntimeError carrying its message
                if "CANCELLED" in bpy.ops.building_pose.worker_start():
                    return False
            except RuntimeError as e:
                msg = str(e).replace("Error: ", "").strip()
                self.report({"ERROR"}, f"No running worker and it cannot be started: {msg}")
                return False
        self._reply = None
        self._params = params
        self._status = None
        return True

    def _send(self):
        from . import ops_worker

        ops_worker.SUPERVISOR.request("job.start", {"kind": "estimate", "params": self._params},
                                      lambda r, e: setattr(self, "_reply", (r, e)), timeout=30)

    def _poll_status(self):
        from . import ops_worker

        job = self._reply[0]["id"]
        ops_worker.SUPERVISOR.request("job.status", {"job": job}, lambda r, e: setattr(self, "_status", (r, e)),
                                      timeout=10)

    def _finish(self, context, status: dict) -> set:
        e = runtime(context)
        if status.get("state") != "done":
            err = (status.get("error") or {}).get("message", status.get("state"))
            e.estimate_status = f"Estimate {status.get('state')}: {err}"
            self.report({"ERROR"}, e.estimate_status)
            return {"CANCELLED"}
        made = cameras_from_result(context, status.get("result") or {})
        rows = (status.get("result") or {}).get("estimates", [])
        failed = [r for r in rows if not r.get("success")]
        e.estimate_progress, e.estimate_status = 1.0, f"{len(made)} of {len(rows)} photos localized"
        for r in failed[:5]:
            self.report({"WARNING"}, f"{Path(r['image']).name}: {r.get('message', 'not localized')}")
        self.report({"INFO"}, e.estimate_status)
        return {"FINISHED"} if made else {"CANCELLED"}

    def execute(self, context):
        """Blocking variant (headless, scripts): services the worker until the job ends."""
        from . import ops_worker

        if not self._begin(context):
            return {"CANCELLED"}
        if not ops_worker.wait_until(lambda: ops_worker.SUPERVISOR.state in ("ready", "busy", "error"), 120) or \
                ops_worker.SUPERVISOR.state == "error":
            self.report({"ERROR"}, f"Worker not ready: {ops_worker.SUPERVISOR.message}")
            return {"CANCELLED"}
        self._send()
        ops_worker.wait_until(lambda: self._reply is not None, 60)
        if self._reply is None or self._reply[1]:
            self.report({"ERROR"}, f"Worker refused the job: {(self._reply or (None, {}))[1]}")
            return {"CANCELLED"}
        while True:
            self._status = None
            self._poll_status()
            if not ops_worker.wait_until(lambda: self._status is not None, 30) or self._status[1]:
                self.report({"ERROR"}, "Lost the worker while estimating: see the Worker panel")
                return {"CANCELLED"}
            st = self._status[0]
            runtime(context).estimate_progress = st.get("progress") or 0.0
            if st.get("state") in ("done", "failed", "cancelled"):
                return self._finish(context, st)
            ops_worker.wait_until(lambda: False, 0.2)

    def invoke(self, context, event):
        if bpy.app.background:
            return self.execute(context)
        if not self._begin(context):
            return {"CANCELLED"}
        self._sent = False
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        from . import ops_worker

        e = runtime(context)
        if event.type == "ESC":
            if self._reply and self._reply[0]:
                ops_worker.SUPERVISOR.request("job.cancel", {"job": self._reply[0]["id"]})
            e.estimate_status = "Cancelled"
            return self._end(context, {"CANCELLED"})
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        sup = ops_worker.SUPERVISOR
        if sup.state == "error":
            e.estimate_status = f"Worker error: {sup.message}"
            return self._end(context, {"CANCELLED"})
        if not self._sent:
            if sup.state in ("ready", "busy"):
                self._send()
                self._sent = True
            return {"RUNNING_MODAL"}
        if self._reply is None:
            return {"RUNNING_MODAL"}
        if self._reply[1]:
            e.estimate_status = f"Worker refused the job: {self._reply[1].get('message')}"
            self.report({"ERROR"}, e.estimate_status)
            return self._end(context, {"CANCELLED"})
        if self._status is None:
            self._status = ()  # request in flight
            self._poll_status()
            return {"RUNNING_MODAL"}
        if self._status == ():
            return {"RUNNING_MODAL"}
        st, err = self._status
        self._status = None
        if err:
            return {"RUNNING_MODAL"}
        e.estimate_progress = st.get("progress") or 0.0
        e.estimate_status = f"{st.get('stage', '')} {st.get('message', '')}".strip()
        if st.get("state") in ("done", "failed", "cancelled"):
            return self._end(context, self._finish(context, st))
        return {"RUNNING_MODAL"}

    def _end(self, context, result):
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None
        return result


