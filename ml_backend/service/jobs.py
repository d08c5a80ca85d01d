"""Long work of the worker: jobs that run in their own processes, with progress, cancellation and a log each.

A job is ``queued`` -> ``running`` -> ``done`` | ``failed`` | ``cancelled``. Its status (``job.status``)::

    {"id": "j3", "kind": "build_database", "state": "running", "progress": 0.4 (or null), "stage": "database",
     "message": "4/10", "result": {...} or null, "error": {"code", "message", "detail"} or null,
     "created": t, "started": t, "finished": t, "log": "/path/to/log.txt", "params": {...}}

Each job runs ``python -m ml_backend.service.job_runner``, started as every child is (:mod:`ml_backend.child_process`),
so a crash or a cancel never takes the worker down and process-wide state never leaks between jobs; at most
``max_running`` run at once, the others wait in order. Cancel sends SIGTERM to the job's process group and
SIGKILL after a grace period.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

from pose_addon.core.dataset import atomic_write_json

from ..child_process import child_env, describe_exit, parse_event, python_command
from ..paths import REPO_ROOT
from . import job_runner

__all__ = ["Job", "JobManager", "TERMINAL"]

log = logging.getLogger("ml_backend.service.jobs")
TERMINAL = ("done", "failed", "cancelled")
MAX_ACTIVE_JOBS = 64  # queued + running; more job.start requests are answered "busy"
KEEP_FINISHED = 200  # finished jobs remembered for job.status / job.list (the oldest are forgotten)


class Job:
    def __init__(self, job_id: str, kind: str, params: dict, job_dir: Path):
        self.id = job_id
        self.kind = kind
        self.params = params
        self.dir = job_dir
        self.state = "queued"
        self.progress: Optional[float] = 0.0
        self.stage = "queued"
        self.message = ""
        self.result: Any = None
        self.error: Optional[dict] = None
        self.created = time.time()
        self.started: Optional[float] = None
        self.finished: Optional[float] = None
        self.proc: Optional[asyncio.subprocess.Process] = None
        self.cancel_requested = False
        self.task: Optional[asyncio.Task] = None
        self.last_event = time.time()  # last progress line from the job process
        self.stalled_s: Optional[float] = None  # set by the watchdog: seconds without progress

    @property
    def log_path(self) -> Path:
        return self.dir / "log.txt"

    def status(self) -> dict:
        return {"id": self.id, "kind": self.kind, "state": self.state, "progress": self.progress,
                "stage": self.stage, "message": self.message, "result": self.result, "error": self.error,
                "created": self.created, "started": self.started, "finished": self.finished,
                "log": str(self.log_path), "params": self.params, "stalled_s": self.stalled_s,
                "pid": self.proc.pid if self.proc is not None and self.proc.returncode is None else None}


class JobManager:
    """Starts, tracks and cancels jobs. All methods run on the worker's event loop."""

    def __init__(self, work_dir: Path, max_running: int = 1, on_change: Optional[Callable[[Job], None]] = None,
                 kill_grace_s: float = 3.0):
        self.work_dir = Path(work_dir)
        self.jobs: dict[str, Job] = {}
        self._sem = asyncio.Semaphore(max_running)
        self._next = 1
        self._on_change = on_change
        self.kill_grace_s = kill_grace_s
        self._session = f"{os.getpid()}-{int(time.time())}"

    def _changed(self, job: Job) -> None:
        if self._on_change:
            try:
                self._on_change(job)
            except Exception:  # a broken subscriber must not break the job
                log.exception("job change callback failed")

    def start(self, kind: str, params: Any) -> Job:
        """Validate and queue a job; raises :class:`job_runner.ParamError` for bad parameters."""
        norm = job_runner.validate(kind, params, self.work_dir)
        if len(self.running()) >= MAX_ACTIVE_JOBS:
            raise job_runner.ParamError("busy", f"{MAX_ACTIVE_JOBS} jobs are queued or running: wait for some to "
                                        "end or cancel them")
        finished = [j for j in self.jobs.values() if j.state in TERMINAL]
        for old in finished[: max(0, len(finished) - KEEP_FINISHED + 1)]:
            del self.jobs[old.id]
        job_id = f"j{self._next}"
        self._next += 1
        job = Job(job_id, kind, norm, self.work_dir / "jobs" / self._session / job_id)
        job.dir.mkdir(parents=True, exist_ok=True)
        self.jobs[job_id] = job
        job.task = asyncio.get_running_loop().create_task(self._run(job))
        self._changed(job)
        return job

    def get(self, job_id: Any) -> Job:
        if not isinstance(job_id, str) or job_id not in self.jobs:
            raise KeyError(f"no job {job_id!r}")
        return self.jobs[job_id]

    def list(self) -> list[dict]:
        return [j.status() for j in self.jobs.values()]

    def running(self) -> list[Job]:
        return [j for j in self.jobs.values() if j.state in ("queued", "running")]

    async def cancel(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job.state in TERMINAL:
            return job
        job.cancel_requested = True
        if job.proc is None:  # still queued
            self._finish(job, "cancelled", None, None, "cancelled before it started")
            return job
        self._signal(job, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(job.task), self.kill_grace_s + 2.0)
        except TimeoutError:
            pass
        return job

    def _signal(self, job: Job, sig: int) -> None:
        if job.proc is None or job.proc.returncode is not None:
            return
        try:
            os.killpg(job.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _finish(self, job: Job, state: str, result: Any, error: Optional[dict], message: str = "") -> None:
        job.state = state
        job.result = result
        job.error = error
        job.finished = time.time()
        if state == "done":
            job.progress = 1.0
        job.stage = state
        if message:
            job.message = message
        self._changed(job)

    async def _run(self, job: Job) -> None:
        async with self._sem:
            if job.state in TERMINAL:
                return
            params_path = job.dir / "params.json"
            result_path = job.dir / "result.json"
            atomic_write_json(params_path, job.params)
            cmd = python_command("ml_backend.service.job_runner", "--kind", job.kind, "--params", params_path,
                                 "--result", result_path, "--parent-pid", os.getpid())
            job.state, job.stage, job.started = "running", "starting", time.time()
            job.last_event = job.started
            self._changed(job)
            error_ev = None
            with open(job.log_path, "ab") as logf:
                try:
                    job.proc = await asyncio.create_subprocess_exec(
                        *cmd, stdout=asyncio.subprocess.PIPE, stderr=logf, stdin=asyncio.subprocess.DEVNULL,
                        env=child_env(), cwd=str(REPO_ROOT), start_new_session=True, limit=1 << 20)
                except OSError as e:
                    self._finish(job, "failed", None, {"code": "internal", "message": f"cannot start: {e}",
                                                       "detail": None})
                    return
                killer = None
                try:
                    while True:
                        try:
                            line = await job.proc.stdout.readline()
                        except ValueError:  # an over-long line: skip it
                            continue
                        if not line:
                            break
                        ev = parse_event(line)
                        if ev is None:
                            continue
                        job.last_event = time.time()
                        if job.stalled_s is not None:
                            job.stalled_s = None
                            self._changed(job)
                        if ev.get("event") == "progress" and not job.cancel_requested:
                            p = ev.get("progress")
                            job.progress = float(p) if isinstance(p, (int, float)) else None
                            job.stage = str(ev.get("stage", ""))[:200]
                            job.message = str(ev.get("message", ""))[:500]
                            self._changed(job)
                        elif ev.get("event") == "error":
                            error_ev = ev
                    if job.cancel_requested:
                        killer = asyncio.get_running_loop().call_later(self.kill_grace_s, self._signal, job,
                                                                      signal.SIGKILL)
                    rc = await job.proc.wait()
                except asyncio.CancelledError:  # worker shutting down
                    self._signal(job, signal.SIGKILL)
                    raise
                finally:
                    if killer:
                        killer.cancel()
            if job.cancel_requested:
                self._finish(job, "cancelled", None, None, "cancelled")
            elif rc == 0 and result_path.is_file():
                self._finish(job, "done", json.loads(result_path.read_text()), None)
            else:
                if error_ev:
                    err = {"code": str(error_ev.get("code", "failed")), "message": str(error_ev.get("message")),
                           "detail": {"exit_code": rc, "log": str(job.log_path)}}
                else:
                    err = {"code": "failed", "message": f"job process ended ({describe_exit(rc)}) without a result",
                           "detail": {"exit_code": rc, "log": str(job.log_path), "log_tail": _tail(job.log_path)}}
                self._finish(job, "failed", None, err, err["message"])

    def check_stalled(self, stall_s: float) -> None:
        """Watchdog: mark running jobs whose process sent nothing for ``stall_s`` seconds (``stalled_s``)."""
        now = time.time()
        for job in self.jobs.values():
            quiet = now - job.last_event
            if job.state == "running" and quiet > stall_s and job.stalled_s is None:
                job.stalled_s = quiet
                log.error("watchdog: job %s (%s, pid %s) has reported no progress for %.0f s: stuck?", job.id,
                          job.kind, job.proc.pid if job.proc else None, quiet)
                self._changed(job)

    async def shutdown(self) -> None:
        """Kill every running job (their outputs stay partial files, never final ones)."""
        for job in self.jobs.values():
            if job.state in ("queued", "running"):
                job.cancel_requested = True
                self._signal(job, signal.SIGKILL)
        tasks = [j.task for j in self.jobs.values() if j.task and not j.task.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=2)


def _tail(path: Path, n: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").strip().splitlines()[-n:])
    except OSError:
        return ""
