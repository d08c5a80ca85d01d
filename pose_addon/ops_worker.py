"""Worker operators (start, stop, restart, ping, open log), the timer that services the worker, and the panel body.

The timer calls :meth:`worker.supervisor.Supervisor.tick` (never blocking) and mirrors the state into every
window manager's runtime state (``building_pose.worker_state``, ``worker_message``; never saved) so panels and
scripts can read it.
"""
import bpy

from . import paths, prefs
from .worker.process import WorkerSetupError
from .worker.protocol import WORKER_ARGS
from .worker.supervisor import Supervisor

SUPERVISOR = Supervisor()
FAST_S, SLOW_S = 0.02, 0.25

_HINTS = {
    "stopped": "Start the worker to estimate poses",
    "starting": "Loading the worker environment...",
}


def log_path():
    return paths.user_dir("logs") / "worker.log"


def _start_kwargs(context=None):
    p = prefs.get(context)
    python = bpy.path.abspath(p.worker_python) if p and p.worker_python else ""
    args = (p.worker_args if p and p.worker_args.strip() else WORKER_ARGS)
    try:
        data_dir = str(paths.data_dir(context))
    except Exception:  # no context (timers at load time)
        data_dir = None
    return {"python": python, "args": args, "log_path": log_path(), "data_dir": data_dir}


def _mirror():
    for wm in bpy.data.window_managers:
        rt = getattr(wm, "building_pose", None)
        if rt is not None and (rt.worker_state != SUPERVISOR.state or rt.worker_message != SUPERVISOR.message[:1000]):
            rt.worker_state = SUPERVISOR.state
            rt.worker_message = SUPERVISOR.message[:1000]
            _redraw()


def _redraw():
    wm = getattr(bpy.context, "window_manager", None)
    for window in (wm.windows if wm else []):
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


def _tick():
    """The bpy.app.timers callback: returns the next interval, or None to stop when nothing is left to watch."""
    try:
        idle = SUPERVISOR.tick()
    except Exception as e:  # never let an exception kill the timer silently
        SUPERVISOR.state, SUPERVISOR.message = "error", "internal error in the worker client: %s" % e
        idle = False
    _mirror()
    if idle:
        return None
    return FAST_S if SUPERVISOR.busy_pumping() else SLOW_S


def ensure_timer():
    if not bpy.app.timers.is_registered(_tick):
        bpy.app.timers.register(_tick, first_interval=FAST_S, persistent=True)


def wait_until(predicate, timeout=30.0):
    """Service the worker until ``predicate()`` (scripts, tests and background mode only: this blocks)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        _tick()
        if predicate() or time.monotonic() > deadline:
            return predicate()
        time.sleep(0.005)


class POSE_OT_worker_start(bpy.types.Operator):
    bl_idname = "building_pose.worker_start"
    bl_label = "Start Worker"
    bl_description = "Start the pose worker with the interpreter set in the preferences"

    def execute(self, context):
        try:
            started = SUPERVISOR.start(**_start_kwargs(context))
        except WorkerSetupError as e:
            _mirror()
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        if not started:
            self.report({"INFO"}, "The worker is already running")
        ensure_timer()
        _mirror()
        return {"FINISHED"}


class POSE_OT_worker_stop(bpy.types.Operator):
    bl_idname = "building_pose.worker_stop"
    bl_label = "Stop Worker"
    bl_description = "Shut the pose worker down (running jobs are cancelled)"

    def execute(self, context):
        SUPERVISOR.stop()
        ensure_timer()
        _mirror()
        return {"FINISHED"}


class POSE_OT_worker_restart(bpy.types.Operator):
    bl_idname = "building_pose.worker_restart"
    bl_label = "Restart Worker"
    bl_description = "Stop the worker if it runs and start a new one once it is gone"

    def execute(self, context):
        try:
            SUPERVISOR.restart(**_start_kwargs(context))
        except WorkerSetupError as e:
            _mirror()
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        ensure_timer()
        _mirror()
        return {"FINISHED"}


class POSE_OT_worker_ping(bpy.types.Operator):
    bl_idname = "building_pose.worker_ping"
    bl_label = "Ping Worker"
    bl_description = "Measure the round trip to the worker"

    @classmethod
    def poll(cls, context):
        return SUPERVISOR.conn is not None and SUPERVISOR.conn.ready

    def execute(self, context):
        SUPERVISOR.ping()
        ensure_timer()
        return {"FINISHED"}


class POSE_OT_worker_open_log(bpy.types.Operator):
    bl_idname = "building_pose.worker_open_log"
    bl_label = "Open Worker Log"
    bl_description = "Open the worker's log file"

    def execute(self, context):
        p = SUPERVISOR.log_path or log_path()
        if not p.is_file():
            self.report({"WARNING"}, "No worker log yet: %s" % p)
            return {"CANCELLED"}
        if bpy.app.background:
            self.report({"INFO"}, str(p))
            return {"FINISHED"}
        bpy.ops.wm.path_open(filepath=str(p))
        return {"FINISHED"}


_ICONS = {"stopped": "PAUSE", "starting": "SORTTIME", "ready": "CHECKMARK", "busy": "SORTTIME",
          "stopping": "SORTTIME", "error": "ERROR"}


def draw_panel(layout, context):
    """Body of the "Worker" panel (``ui.POSE_PT_worker``)."""
    s = SUPERVISOR
    col = layout.column()
    col.label(text="Worker: %s" % s.state.capitalize(), icon=_ICONS.get(s.state, "NONE"))
    msg = s.message or _HINTS.get(s.state, "")
    if msg:
        box = col.box() if s.state == "error" else col
        for i in range(0, min(len(msg), 360), 60):
            box.label(text=msg[i:i + 60])
    if s.state == "busy" and s.job and s.job.get("progress") is not None:
        col.progress(factor=float(s.job["progress"]), text="%s %d%%" % (s.job.get("kind", ""),
                                                                   round(100 * s.job["progress"]))) \
            if hasattr(col, "progress") else None
    row = layout.row(align=True)
    alive = s.proc is not None and s.proc.alive()
    if alive:
        row.operator("building_pose.worker_stop", icon="CANCEL", text="Stop")
    else:
        row.operator("building_pose.worker_start", icon="PLAY", text="Start")
    row.operator("building_pose.worker_restart", icon="FILE_REFRESH", text="Restart")
    row = layout.row(align=True)
    row.operator("building_pose.worker_ping", icon="LINKED", text="Ping")
    row.operator("building_pose.worker_open_log", icon="TEXT", text="Log")


def unregister_runtime():
    """Stop the timer and the worker (extension disabled or Blender quitting)."""
    if bpy.app.timers.is_registered(_tick):
        bpy.app.timers.unregister(_tick)
    SUPERVISOR.shutdown_now()


