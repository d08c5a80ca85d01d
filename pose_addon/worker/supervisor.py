"""The worker's life seen from Blender: start, connect, watch, stop and restart; no ``bpy`` here.

:meth:`Supervisor.tick` does all the work in small non-blocking steps and is called from a ``bpy.app.timers``
callback (``ops_worker.py``). States shown to the user:

``stopped`` | ``starting`` | ``ready`` | ``busy`` (a job runs: ``job`` holds its status) | ``stopping`` |
``error`` (``message`` says what happened and what to do).

The worker is respawned only by the user (Start/Restart) and only once the old process is really gone.
"""
import time

from .connection import Connection
from .process import WorkerProcess, WorkerSetupError, find_python
from .protocol import WORKER_ARGS

READY_TIMEOUT_S = 90.0
STOP_GRACE_S = 3.0
JOB_POLL_S = 0.5


class Supervisor:
    def __init__(self):
        self.proc = None
        self.conn = None
        self.state = "stopped"
        self.message = ""
        self.jobs = []
        self.job = None  # the running job's status, if any
        self.methods = None  # the last methods.list answer of a worker (kept after it stops; worker/methods.py)
        self._methods_asked = False
        self.last_ping_ms = None
        self.log_path = None
        self._stopping_since = None
        self._restart_args = None
        self._last_job_poll = 0.0
        self._polling = False
        self._user_stop = False

    # ----------------------------------------------------------------------------------- commands
    def start(self, python="", args=WORKER_ARGS, log_path=None, data_dir=None, extra_env=None):
        """Spawn the worker unless one is alive. Raises :class:`WorkerSetupError` with a user-facing message."""
        if self.proc is not None and self.proc.alive():
            return False
        exe = find_python(python)
        self._cleanup()
        self.proc = WorkerProcess(exe, args, log_path=log_path, data_dir=data_dir, extra_env=extra_env)
        self.log_path = self.proc.log_path
        self._restart_args = (python, args, log_path, data_dir, extra_env)
        self._user_stop = False
        try:
            self.proc.start()
        except WorkerSetupError as e:
            self._set("error", str(e))
            raise
        self._set("starting", "starting %s" % exe)
        return True

    def stop(self):
        """Ask the worker to shut down; terminate, then kill it if it does not (see :meth:`tick`)."""
        self._user_stop = True
        if self.proc is None or not self.proc.alive():
            self._cleanup()
            self._set("stopped", "")
            return
        if self.conn is not None and self.conn.ready:
            self.conn.request("shutdown", timeout=5)
        else:
            self.proc.terminate(STOP_GRACE_S)
        self._stopping_since = time.monotonic()
        self._set("stopping", "stopping")

    def restart(self, python="", args=WORKER_ARGS, log_path=None, data_dir=None, extra_env=None):
        """Stop the worker if it runs, then start a new one once the old process is gone."""
        self.stop()
        if self.state == "stopped":
            return self.start(python, args, log_path, data_dir, extra_env)
        self._pending_restart = (python, args, log_path, data_dir, extra_env)
        return True

    _pending_restart = None

    def request(self, method, params=None, callback=None, timeout=120.0):
        """Send a request if connected; else ``callback(None, error)`` right away."""
        if self.conn is None or not self.conn.ready:
            if callback:
                callback(None, {"code": "not_ready", "message": "the worker is %s" % self.state, "detail": None})
            return None
        return self.conn.request(method, params, callback, timeout)

    def ping(self, callback=None):
        t0 = time.perf_counter()

        def done(result, error):
            if not error:
                self.last_ping_ms = (time.perf_counter() - t0) * 1e3
            if callback:
                callback(result, error)

        return self.request("ping", {}, done, timeout=10)

    # ----------------------------------------------------------------------------------- the pump
    def busy_pumping(self):
        """True while something is in flight (the timer then ticks faster)."""
        return self.state in ("starting", "stopping") or (self.conn is not None and self.conn.n_pending > 0)

    def tick(self):
        """One non-blocking step. Returns True when the supervisor has nothing alive to watch."""
        p = self.proc
        if p is None:
            return self.state in ("stopped", "error")
        if self.state == "stopping":
            if self.conn is not None:
                self.conn.service()
            if p.reap():
                self._cleanup()
                self._set("stopped", "")
                if self._pending_restart:
                    args, self._pending_restart = self._pending_restart, None
                    try:
                        self.start(*args)
                    except WorkerSetupError:
                        pass
                return False
            if time.monotonic() - self._stopping_since > STOP_GRACE_S and p._kill_at is None:
                p.terminate(STOP_GRACE_S)
            return False
        if not p.alive():  # died on its own: say why, keep the process object for the log and the exit code
            p.reap()
            msg = p.describe_exit()
            if self.conn is not None:
                self.conn.close("the worker process ended")
                self.conn = None
            self.job = None
            self._set("error", msg + ". Press Restart to start it again")
            self.proc = None
            self._last_proc = p
            return True
        if self.conn is None:
            if p.ready is not None:
                self.conn = Connection(p.address(), p.token, on_event=self._on_event)
            elif time.monotonic() - p.started_at > READY_TIMEOUT_S:
                p.terminate(STOP_GRACE_S)
                self._set("error", "The worker did not get ready in %.0f s: open its log" % READY_TIMEOUT_S)
                self._stopping_since = time.monotonic()
                self.state = "stopping"
                self._pending_restart = None
                return False
            else:
                return False
        self.conn.service()
        if self.conn.state == "closed":
            reason = self.conn.close_reason
            self.conn = None
            if p.alive():  # connection lost but the process lives: reconnect, never spawn a second worker
                self._set("starting", "reconnecting (%s)" % reason)
            return False
        if self.conn.ready:
            if self.methods is None and not self._methods_asked:
                self._methods_asked = True
                self.conn.request("methods.list", {}, self._on_methods, timeout=30)
            now = time.monotonic()
            if not self._polling and now - self._last_job_poll > JOB_POLL_S:
                self._polling = True
                self._last_job_poll = now
                self.conn.request("job.list", {}, self._on_jobs, timeout=10)
            self._update_ready_state()
        return False

    def _on_jobs(self, result, error):
        self._polling = False
        if error or not isinstance(result, dict):
            return
        self.jobs = result.get("jobs", [])
        running = [j for j in self.jobs if j.get("state") in ("running", "queued")]
        self.job = running[0] if running else None

    def _on_methods(self, result, error):
        if error or not isinstance(result, dict) or not isinstance(result.get("methods"), list):
            self._methods_asked = False  # asked again on a later tick
            return
        self.methods = result["methods"]

    def _on_event(self, ev):
        pass

    def _update_ready_state(self):
        if self.job:
            j = self.job
            pct = "" if j.get("progress") is None else " at %d%%" % round(100 * j["progress"])
            self._set("busy", "job %s (%s)%s: %s %s" % (j["id"], j["kind"], pct, j.get("stage", ""),
                                                         j.get("message", "")))
        else:
            info = self.conn.server_info or {}
            self._set("ready", "worker pid %s%s" % (info.get("pid", "?"), "" if self.last_ping_ms is None else
                                                     ", ping %.2f ms" % self.last_ping_ms))

    # ----------------------------------------------------------------------------------- helpers
    def _set(self, state, message):
        self.state = state
        self.message = message

    def _cleanup(self):
        if self.conn is not None:
            self.conn.close()
        self.conn = None
        self.proc = None
        self.job = None
        self.jobs = []
        self._methods_asked = False  # a new worker is asked again
        self._stopping_since = None

    def wait_until(self, predicate, timeout=30.0, step_s=0.005):
        """Tick until ``predicate()`` holds (scripts and tests only: this blocks). Returns the predicate's value."""
        deadline = time.monotonic() + timeout
        while True:
            self.tick()
            ok = predicate()
            if ok or time.monotonic() > deadline:
                return ok
            time.sleep(step_s)

    def shutdown_now(self):
        """For unregister / quit: stop the worker without waiting for anything."""
        if self.proc is not None and self.proc.alive():
            if self.conn is not None and self.conn.ready:
                self.conn.request("shutdown", timeout=1)
                self.conn.service()
            self.proc.terminate(1.0)
        self._cleanup()
        self._set("stopped", "")
