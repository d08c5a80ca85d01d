"""Operators whose heavy part is pure computation (numpy, no ``bpy``) run it in a thread so Blender stays
responsive: a timer polls it, the status bar shows the elapsed time, Esc abandons it (the computation has no side
effects, its result is dropped). Headless and from scripts the same computation runs in place.

An operator mixes in :class:`ThreadedOperator` and defines ``prepare(context)`` (reads what it needs from bpy,
returns a zero-argument callable) and ``apply(context, result)`` (writes the result into the scene, returns the
operator's result set).
"""
import threading
import time

import bpy


class ThreadedOperator:
    _timer = None
    _thread = None
    _box: dict = None
    _started = 0.0
    #: what the status bar says while it runs
    busy_text = "Working"

    def prepare(self, context):
        raise NotImplementedError

    def apply(self, context, result):
        raise NotImplementedError

    def execute(self, context):
        try:
            job = self.prepare(context)
            if job is None:
                return {"CANCELLED"}
            result = job()
        except (RuntimeError, ValueError) as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        return self.apply(context, result)

    def invoke(self, context, event):
        if bpy.app.background or context.window is None:
            return self.execute(context)
        try:
            job = self.prepare(context)
        except (RuntimeError, ValueError) as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        if job is None:
            return {"CANCELLED"}
        box = {}
        self._box = box

        def run():
            try:
                box["result"] = job()
            except Exception as e:  # reported on the main thread
                box["error"] = e

        self._thread = threading.Thread(target=run, name=f"building-pose-{self.bl_idname}", daemon=True)
        self._started = time.monotonic()
        self._thread.start()
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def _end(self, context) -> None:
        context.window_manager.event_timer_remove(self._timer)
        self._timer = None
        if context.workspace:
            context.workspace.status_text_set(None)

    def modal(self, context, event):
        if event.type == "ESC":
            self._end(context)
            self.report({"WARNING"}, f"{self.bl_label} cancelled; nothing was changed")
            return {"CANCELLED"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        if self._thread.is_alive():
            if context.workspace:
                context.workspace.status_text_set(
                    f"{self.busy_text}... {time.monotonic() - self._started:.1f} s (Esc cancels)")
            return {"RUNNING_MODAL"}
        self._end(context)
        if "error" in self._box:
            e = self._box["error"]
            self.report({"ERROR"}, str(e) if isinstance(e, (RuntimeError, ValueError)) else f"{type(e).__name__}: {e}")
            return {"CANCELLED"}
        return self.apply(context, self._box["result"])
