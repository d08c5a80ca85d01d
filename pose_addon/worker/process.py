"""Start the worker process and watch it: interpreter lookup, environment, log file, ready line, exit codes.

Never blocks: the ready line is read by a thread that touches nothing but its own fields (no ``bpy``).
"""
import json
import os
import secrets
import shlex
import signal
import subprocess
import threading
import time
from pathlib import Path

from .protocol import EXIT_MESSAGES, WORKER_ARGS

#: The checkout this module lives in when the extension runs from a source tree (``<root>/pose_addon/worker``).
CHECKOUT = Path(__file__).resolve().parents[2]


class WorkerSetupError(Exception):
    """The worker cannot be started; the message says what the user should change."""


def venv_python(root):
    root = Path(root)
    for rel in (".venv/bin/python", ".venv/Scripts/python.exe"):
        p = root / rel
        if p.is_file():
            return p
    return None


def find_python(configured=""):
    """The worker interpreter: the preference, else ``$POSE_WORKER_PYTHON``, else the checkout's ``.venv``."""
    if configured:
        p = Path(configured).expanduser()
        if not p.is_file():
            raise WorkerSetupError("Worker Python %s does not exist: fix it in the extension's preferences" % p)
        if not os.access(str(p), os.X_OK):
            raise WorkerSetupError("Worker Python %s is not executable" % p)
        return p
    env = os.environ.get("POSE_WORKER_PYTHON")
    if env and Path(env).is_file():
        return Path(env)
    p = venv_python(CHECKOUT)
    if p is not None:
        return p
    raise WorkerSetupError("No worker environment configured: set Worker Python in the preferences to the "
                           "python of the worker environment (e.g. <checkout>/.venv/bin/python)")


def _project_root(python):
    """The checkout holding ``ml_backend`` next to the interpreter's venv, if any."""
    p = Path(python)
    for parent in list(p.parents)[:4]:
        if (parent / "ml_backend" / "__init__.py").is_file():
            return parent
    return None


class WorkerProcess:
    """One worker process. ``ready`` is filled (by a reader thread) once the worker printed its ready line."""

    def __init__(self, python, args=WORKER_ARGS, log_path=None, data_dir=None, extra_env=None):
        self.python = Path(python)
        self.args = shlex.split(args) if isinstance(args, str) else list(args)
        if not self.args:
            raise WorkerSetupError("Worker Arguments are empty (default: %s)" % WORKER_ARGS)
        if any(a.startswith("--token") for a in self.args):
            raise WorkerSetupError("Do not put the token in Worker Arguments: the extension passes it itself")
        self.log_path = Path(log_path) if log_path else None
        self.data_dir = data_dir
        self.extra_env = dict(extra_env or {})
        self.token = secrets.token_urlsafe(32)
        self.proc = None
        self.ready = None
        self.started_at = None
        self._reader = None
        self._kill_at = None

    def command(self, token_fd=None):
        cmd = [str(self.python)] + self.args + ["--parent-pid", str(os.getpid())]
        if self.data_dir:
            cmd += ["--data-dir", str(self.data_dir)]
        if token_fd is not None:
            cmd += ["--token-fd", str(token_fd)]
        return cmd

    def start(self):
        env = dict(os.environ)
        for k in ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONNOUSERSITE"):
            env.pop(k, None)  # Blender's Python settings must not leak into the worker's interpreter
        root = _project_root(self.python)
        if root is not None:
            env["PYTHONPATH"] = str(root)
        env.update(self.extra_env)
        env.pop("POSE_WORKER_TOKEN", None)
        env["PYTHONUNBUFFERED"] = "1"
        # The token goes through an inherited pipe (not the command line, not the environment, which other
        # processes of the user can read in /proc/PID/environ); Windows lacks pass_fds: environment there.
        use_pipe = os.name == "posix"
        if not use_pipe:
            env["POSE_WORKER_TOKEN"] = self.token
        cwd = str(root) if root is not None else (str(self.log_path.parent) if self.log_path else None)
        log = subprocess.DEVNULL
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            if self.log_path.exists() and self.log_path.stat().st_size > 0:
                os.replace(str(self.log_path), str(self.log_path) + ".1")  # keep the previous run's log
            log = open(str(self.log_path), "ab")
            log.write(("%s starting: %s\n" % (time.strftime("%Y-%m-%d %H:%M:%S"),
                                              " ".join(shlex.quote(c) for c in self.command()))).encode())
            log.flush()
        r = w = None
        if use_pipe:
            r, w = os.pipe()
        try:
            self.proc = subprocess.Popen(self.command(r), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=log, env=env, cwd=cwd, pass_fds=(r,) if use_pipe else ())
            if use_pipe:
                os.write(w, self.token.encode())  # 43 bytes: fits the pipe's buffer, never blocks
        except OSError as e:
            raise WorkerSetupError("Cannot start %s: %s" % (self.python, e)) from e
        finally:
            for fd in (r, w):
                if fd is not None:
                    os.close(fd)
            if log is not subprocess.DEVNULL:
                log.close()
        self.started_at = time.monotonic()
        self._reader = threading.Thread(target=self._read_stdout, name="pose-worker-stdout", daemon=True)
        self._reader.start()

    def _read_stdout(self):
        stdout = self.proc.stdout
        try:
            for raw in stdout:  # the worker prints only its ready line; drain anything else
                line = raw.decode("utf-8", "replace").strip()
                if self.ready is None and line.startswith("{"):
                    try:
                        ev = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(ev, dict) and ev.get("event") == "ready":
                        self.ready = ev
        except (OSError, ValueError):
            pass

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def returncode(self):
        """None while the process runs (or was never started), else its exit status (negative: signal)."""
        return None if self.proc is None else self.proc.poll()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def address(self):
        if not self.ready:
            return None
        if self.ready.get("transport") == "unix":
            return self.ready["address"]
        return (self.ready["address"], int(self.ready["port"]))

    def terminate(self, grace_s=3.0):
        """SIGTERM now, SIGKILL after ``grace_s`` (done by :meth:`reap`); never waits."""
        if self.alive():
            try:
                self.proc.terminate()
            except OSError:
                pass
            self._kill_at = time.monotonic() + grace_s

    def kill(self):
        if self.alive():
            try:
                self.proc.kill()
            except OSError:
                pass

    def reap(self):
        """Escalate a pending terminate; returns True once the process is gone."""
        if self.proc is None:
            return True
        if self.proc.poll() is not None:
            if self.proc.stdout:
                try:
                    self.proc.stdout.close()
                except OSError:
                    pass
            return True
        if self._kill_at is not None and time.monotonic() > self._kill_at:
            self.kill()
        return False

    def describe_exit(self):
        """A message for the user about how the process ended, with the log's last meaningful line."""
        rc = self.returncode()
        if rc is None:
            return ""
        if rc < 0:
            try:
                name = signal.Signals(-rc).name
            except ValueError:
                name = "signal %d" % -rc
            msg = "The worker was killed (%s)%s" % (name, ": out of memory?" if -rc == 9 else "")
        else:
            msg = EXIT_MESSAGES.get(rc, "The worker exited with code %d" % rc)
        last = self.log_tail(1)
        if last and rc != 0:
            msg += " - " + last[-1][-160:]
        return msg

    def log_tail(self, n=20):
        if not self.log_path or not self.log_path.is_file():
            return []
        try:
            with open(str(self.log_path), "rb") as f:
                f.seek(max(0, f.seek(0, 2) - 16384))
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return []
        return [ln for ln in lines if ln.strip()][-n:]
