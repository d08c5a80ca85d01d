"""Add-on preferences, keyed by the extension's package name: the worker's environment (create one or point at
an existing Python, check what it imports), its arguments and the data folder."""
import json
import sys
from pathlib import Path

import bpy
from bpy.props import StringProperty

from . import paths, worker_env
from .worker.protocol import WORKER_ARGS

#: the running create/check task (module state: nothing of it is saved)
_TASK = {"task": None, "kind": "", "python": ""}


def _source_default() -> str:
    from .worker.process import CHECKOUT

    return str(CHECKOUT) if (CHECKOUT / "pyproject.toml").is_file() else ""


class POSE_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = paths.PACKAGE

    worker_python: StringProperty(
        name="Worker Python", subtype="FILE_PATH",
        description="Python interpreter of the worker environment (an existing one, or the one Create Environment "
                    "made)")
    worker_args: StringProperty(
        name="Worker Arguments", default=WORKER_ARGS,
        description="Arguments that start the worker with that interpreter")
    data_dir: StringProperty(
        name="Data Folder", subtype="DIR_PATH",
        description="Where datasets, databases and checkpoints go (default: the extension's user folder)")
    worker_source: StringProperty(
        name="Worker Source", subtype="DIR_PATH",
        description="The Building Pose source folder (with pyproject.toml and ml_backend/) to install the worker from")
    base_python: StringProperty(
        name="Base Python", subtype="FILE_PATH",
        description="Python 3.11 that creates the environment (default: Blender's own Python)")
    pip_options: StringProperty(
        name="pip Options",
        description="Extra pip install options, e.g. --index-url URL, or --no-index --find-links FOLDER offline")
    env_check: StringProperty(
        name="Check Result", options={"SKIP_SAVE", "HIDDEN"},
        description="What the last check found (JSON)")

    def draw(self, context):
        draw_environment(self.layout, context, self)
        col = self.layout.column()
        col.prop(self, "worker_args")
        col.prop(self, "data_dir")


def draw_environment(layout, context, p) -> None:
    """The environment box: interpreter, create/check buttons, progress, what is missing."""
    box = layout.box()
    box.label(text="Worker Environment", icon="CONSOLE")
    box.prop(p, "worker_python")
    row = box.row(align=True)
    row.operator("building_pose.check_environment", icon="CHECKMARK")
    row.operator("building_pose.create_environment", icon="ADD")
    sub = box.column(align=True)
    sub.prop(p, "worker_source")
    sub.prop(p, "base_python")
    sub.prop(p, "pip_options")
    task = _TASK["task"]
    if task is not None and not task.finished:
        box.progress(factor=task.progress, text=f"{task.stage} {round(100 * task.progress)}%")
        box.label(text=task.message[:90] or "...")
        box.label(text="Esc cancels", icon="INFO")
    elif task is not None and task.state in ("failed", "cancelled"):
        box.label(text=task.message[:120], icon="ERROR")
    for line in environment_summary(p):
        box.label(text=line[:120], icon="CHECKMARK" if line.startswith("OK") else "ERROR")
    box.label(text=f"Log: {log_path()}", icon="TEXT")


def environment_summary(p) -> list:
    """Lines for the panels: "OK: ..." when everything imports, else one line per missing module."""
    if not p or not p.env_check:
        return []
    check = json.loads(p.env_check)
    if check.get("error"):
        return [f"Cannot run {check.get('python_path')}: {check['error']}"]
    missing = worker_env.missing_modules(check)
    if not missing:
        return [f"OK: Python {check.get('python')} imports " + ", ".join(check.get("modules", {}))]
    return [f"Missing {m}" for m in missing]


def log_path() -> Path:
    return paths.user_dir("logs") / "environment.log"


def get(context=None) -> "POSE_AP_preferences | None":
    """This extension's preferences, or None when it runs without being registered as an add-on."""
    context = context or bpy.context
    addon = context.preferences.addons.get(paths.PACKAGE)
    return addon.preferences if addon else None


def _redraw_prefs() -> None:
    wm = getattr(bpy.context, "window_manager", None)
    for window in (wm.windows if wm else []):
        for area in window.screen.areas:
            if area.type in ("PREFERENCES", "VIEW_3D"):
                area.tag_redraw()


def _finish_task(context) -> str:
    """Store what a finished task found in the preferences; returns a report line."""
    task, p = _TASK["task"], get(context)
    if _TASK["kind"] == "check":
        check = worker_env.parse_check("\n".join(task.output))
        if check is None:
            check = {"error": task.message or "no answer", "python_path": _TASK["python"]}
        if p is not None:
            p.env_check = json.dumps(check)
        return "; ".join(environment_summary(p)) if p else str(check)
    if task.state == "done" and p is not None:
        p.worker_python = _TASK["python"]
        p.env_check = ""  # the new interpreter has not been checked yet
    return task.message if task.state != "done" else f"Worker environment ready: {_TASK['python']}"


class _EnvOperator:
    """Runs an :class:`worker_env.EnvTask`: modal with progress and Esc in the UI, blocking headless."""

    _timer = None

    def _commands(self, context):
        raise NotImplementedError

    def execute(self, context):
        if not self._begin(context):
            return {"CANCELLED"}
        _TASK["task"].wait()
        return self._end(context)

    def invoke(self, context, event):
        if bpy.app.background:
            return self.execute(context)
        if not self._begin(context):
            return {"CANCELLED"}
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.2, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        task = _TASK["task"]
        if event.type == "ESC":
            task.cancel()
            task.wait(10)
            return self._end(context)
        if event.type == "TIMER":
            _redraw_prefs()
            if task.finished:
                return self._end(context)
        return {"PASS_THROUGH"}

    def _begin(self, context) -> bool:
        if _TASK["task"] is not None and not _TASK["task"].finished:
            self.report({"ERROR"}, "An environment task is already running")
            return False
        try:
            commands, python, expected = self._commands(context)
        except ValueError as e:
            self.report({"ERROR"}, str(e))
            return False
        _TASK.update(task=worker_env.EnvTask(commands, log_path(), expected, self._env(python)), kind=self.kind,
                     python=str(python))
        return True

    def _end(self, context):
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None
        task = _TASK["task"]
        line = _finish_task(context)
        _redraw_prefs()
        if task.state == "done" and self.kind == "check" and not line.startswith("OK"):
            self.report({"WARNING"}, line)
            return {"FINISHED"}
        if task.state != "done":
            self.report({"ERROR"}, line)
            return {"CANCELLED"}
        self.report({"INFO"}, line)
        return {"FINISHED"}


    @staticmethod
    def _env(python) -> dict:
        return {}


class POSE_OT_check_environment(_EnvOperator, bpy.types.Operator):
    bl_idname = "building_pose.check_environment"
    bl_label = "Check Environment"
    bl_description = ("Run the worker's Python and list which of its modules (torch, cv2, ml_backend...) it can "
                      "import")
    kind = "check"

    @staticmethod
    def _env(python) -> dict:
        """The worker's own launch environment: its checkout on PYTHONPATH when the interpreter lives in one."""
        from .worker.process import _project_root

        root = _project_root(python)
        return {"PYTHONPATH": str(root)} if root is not None else {}

    def _commands(self, context):
        from .worker.process import WorkerSetupError, find_python

        p = get(context)
        try:
            python = find_python(bpy.path.abspath(p.worker_python) if p and p.worker_python else "")
        except WorkerSetupError as e:
            raise ValueError(str(e)) from None
        return [("Checking the worker's modules", worker_env.check_command(str(python)))], python, 1


class POSE_OT_create_environment(_EnvOperator, bpy.types.Operator):
    bl_idname = "building_pose.create_environment"
    bl_label = "Create Environment"
    bl_description = ("Create a Python environment for the worker in the extension's user folder and install the "
                      "worker from its source folder (minutes; progress and a log; Esc cancels)")
    kind = "create"

    def _commands(self, context):
        p = get(context)
        source = bpy.path.abspath(p.worker_source) if p and p.worker_source else _source_default()
        if not source:
            raise ValueError("Choose the Worker Source folder (the Building Pose source with pyproject.toml)")
        base = bpy.path.abspath(p.base_python) if p and p.base_python else sys.executable
        env_dir = paths.user_dir("worker-env", create=False)
        cmds = worker_env.create_commands(base, env_dir, Path(source), p.pip_options if p else "")
        return cmds, worker_env.env_python(env_dir), 60


def unregister_runtime() -> None:
    """Stop a running environment task (extension disabled)."""
    task = _TASK["task"]
    if task is not None and not task.finished:
        task.cancel()
    _TASK.update(task=None, kind="", python="")
