"""Python client of the pose worker, for scripts and notebooks (wire format: :mod:`ml_backend.service.protocol`).

    from ml_backend.client import WorkerClient

    with WorkerClient.spawn() as w:                       # starts `python -m ml_backend serve`, stops it on exit
        print(w.ping(), w.info()["methods"])
        r = w.estimate_pose("query.png", database="db.h5", intrinsics={...})
        job = w.start_job("build_database", dataset="ds/")
        w.wait_job(job["id"])

    w = WorkerClient.connect(("127.0.0.1", 40123), token=...)  # a worker started elsewhere (e.g. by Blender)

A client is thread-safe: requests from several threads share the connection, replies are matched by id.
"""
from __future__ import annotations

import itertools
import json
import os
import secrets
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional, Union

from pose_addon.worker.protocol import WORKER_ARGS

from .child_process import child_env
from .service import protocol as P
from .service.protocol import RemoteError

__all__ = ["WorkerClient", "RemoteError", "WorkerError"]

Address = Union[str, tuple]


class WorkerError(RuntimeError):
    """The worker could not be started or the connection broke."""


class WorkerClient:
    def __init__(self, sock: socket.socket, token: str, proc: Optional[subprocess.Popen] = None,
                 client_name: str = "python"):
        self._sock = sock
        self._proc = proc
        self._ids = itertools.count(1)
        self._send_lock = threading.Lock()
        self._recv_lock = threading.Lock()
        self._pending: dict[Any, Any] = {}  # id -> reply, for replies read by another thread
        self._cond = threading.Condition()
        self._decoder = P.Decoder()
        self.events: list[dict] = []  # pushed events (job progress) in arrival order
        self.closed = False
        self.token = token
        self.ready: Optional[dict] = None
        self.server_info = self.request("hello", {"protocol": P.PROTOCOL_VERSION, "token": token,
                                                  "client": client_name}, timeout=10)

    # ----------------------------------------------------------------------------------- construction
    @classmethod
    def connect(cls, address: Address, token: Optional[str] = None, token_file: Optional[str] = None,
                timeout: float = 10.0, **kw) -> WorkerClient:
        """Connect to a running worker: ``(host, port)`` or a Unix socket path."""
        if token is None:
            if token_file is None:
                token = os.environ.get("POSE_WORKER_TOKEN")
            else:
                token = Path(token_file).read_text().strip()
        if not token:
            raise WorkerError("no token: pass token=, token_file= or set POSE_WORKER_TOKEN")
        if isinstance(address, (tuple, list)):
            sock = socket.create_connection((address[0], int(address[1])), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        else:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(str(address))
        sock.settimeout(None)
        return cls(sock, token, **kw)

    @classmethod
    def spawn(cls, python: Optional[str] = None, data_dir: Optional[str] = None, unix: Optional[str] = None,
              log_file: Optional[str] = None, extra_args: tuple = (), ready_timeout: float = 60.0,
              **kw) -> WorkerClient:
        """Start a worker (``python -m ml_backend serve``) owned by this process and connect to it."""
        token = secrets.token_urlsafe(32)
        cmd = [str(python or sys.executable), *shlex.split(WORKER_ARGS), "--parent-pid", str(os.getpid())]
        if data_dir:
            cmd += ["--data-dir", str(data_dir)]
        if unix:
            cmd += ["--unix", str(unix)]
        cmd += list(extra_args)
        err = open(log_file, "ab") if log_file else subprocess.DEVNULL
        r, w = os.pipe()  # the token travels through an inherited pipe: not in argv, not in /proc/PID/environ
        try:
            proc = subprocess.Popen(cmd + ["--token-fd", str(r)], stdout=subprocess.PIPE, stderr=err,
                                    stdin=subprocess.DEVNULL, env=child_env(), pass_fds=(r,))
            os.write(w, token.encode())
        finally:
            os.close(r)
            os.close(w)
            if log_file:
                err.close()
        ready = _read_ready(proc, ready_timeout)
        if ready is None:
            proc.kill()
            proc.wait()
            raise WorkerError(f"the worker exited (code {proc.returncode}) or did not get ready in "
                              f"{ready_timeout:g} s" + (f"; see {log_file}" if log_file else ""))
        addr = ready["address"] if ready.get("transport") == "unix" else (ready["address"], ready["port"])
        try:
            c = cls.connect(addr, token=token, proc=proc, **kw)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        c.ready = ready
        return c

    # ----------------------------------------------------------------------------------- transport
    def request(self, method: str, params: Optional[dict] = None, timeout: Optional[float] = None) -> Any:
        """Send one request and wait for its reply; raises :class:`RemoteError` for error replies."""
        if self.closed:
            raise WorkerError("the connection is closed")
        req_id = next(self._ids)
        msg = {"id": req_id, "method": method, "params": params or {}}
        if timeout is not None:
            msg["timeout"] = timeout
        frame = P.encode(msg)
        with self._send_lock:
            try:
                self._sock.sendall(frame)
            except OSError as e:
                self.closed = True
                raise WorkerError(f"connection lost: {e}") from e
        reply = self._wait(req_id, None if timeout is None else timeout + 5.0)
        if "error" in reply:
            err = reply["error"] or {}
            raise RemoteError(err.get("code", "internal"), err.get("message", ""), err.get("detail"))
        return reply.get("result")

    def _wait(self, req_id, timeout: Optional[float]) -> dict:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._cond:
                if req_id in self._pending:
                    return self._pending.pop(req_id)
            if self._recv_lock.acquire(timeout=0.05):
                try:
                    with self._cond:
                        if req_id in self._pending:
                            return self._pending.pop(req_id)
                    self._read_some(deadline)
                finally:
                    self._recv_lock.release()
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"no reply to request {req_id}")

    def _read_some(self, deadline: Optional[float]) -> None:
        self._sock.settimeout(None if deadline is None else max(0.01, min(1.0, deadline - time.monotonic())))
        try:
            data = self._sock.recv(1 << 16)
        except TimeoutError:
            return
        except OSError as e:
            self.closed = True
            raise WorkerError(f"connection lost: {e}") from e
        if not data:
            self.closed = True
            raise WorkerError("the worker closed the connection")
        self._decoder.feed(data)
        with self._cond:
            for msg in self._decoder:
                if "event" in msg and "id" not in msg:
                    self.events.append(msg)
                elif msg.get("id") is None and "error" in msg:
                    self.closed = True
                    e = msg["error"]
                    raise RemoteError(e.get("code"), e.get("message"), e.get("detail"))
                else:
                    self._pending[msg.get("id")] = msg
            self._cond.notify_all()

    # ----------------------------------------------------------------------------------- methods
    def ping(self, **kw) -> dict:
        return self.request("ping", kw or None, timeout=10)

    def info(self, probe_torch: bool = False) -> dict:
        return self.request("info", {"probe_torch": probe_torch}, timeout=120)

    def estimate_pose(self, image: str, method: str = "sift", database: Optional[str] = None,
                      dataset: Optional[str] = None, intrinsics: Optional[dict] = None, frame: Optional[str] = None,
                      options: Optional[dict] = None, timeout: float = 120.0) -> dict:
        """Pose of ``image`` with ``method`` (any method for photos): the ``estimate`` job's row, with
        ``cam_from_world`` (OpenCV axes) and ``matrix_world`` (Blender camera) as 4x4 lists, ``n_inliers`` and, when
        it failed, ``reason``. ``intrinsics``: OpenCV pixels or a spec (``{"source": "estimate"}`` solves the focal
        length); ``options``: the method's (see ``methods.list``)."""
        params = {"image": str(image), "method": method, "options": options or {}}
        for k, v in (("database", database), ("dataset", dataset), ("intrinsics", intrinsics), ("frame", frame)):
            if v is not None:
                params[k] = str(v) if k in ("database", "dataset") else v
        return self.request("estimate_pose", params, timeout=timeout)

    def list_models(self, roots: Optional[list] = None) -> list:
        """Datasets, databases, checkpoints and keypoint models the worker can see (see ``models.list``)."""
        return self.request("models.list", {"roots": [str(r) for r in roots or []]})["models"]

    def start_job(self, kind: str, **params) -> dict:
        return self.request("job.start", {"kind": kind, "params": params}, timeout=30)

    def job_status(self, job_id: str) -> dict:
        return self.request("job.status", {"job": job_id}, timeout=30)

    def cancel(self, job_id: str) -> dict:
        return self.request("job.cancel", {"job": job_id}, timeout=30)

    def list_jobs(self) -> list:
        return self.request("job.list", timeout=30)["jobs"]

    def wait_job(self, job_id: str, timeout: float = 600.0, poll_s: float = 0.2) -> dict:
        """Poll until the job ends; returns its final status (raises TimeoutError)."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.job_status(job_id)
            if st["state"] in ("done", "failed", "cancelled"):
                return st
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {st['state']} after {timeout:g} s")
            time.sleep(poll_s)

    def shutdown(self) -> None:
        try:
            self.request("shutdown", timeout=10)
        except (WorkerError, RemoteError, TimeoutError):
            pass

    # ----------------------------------------------------------------------------------- lifetime
    @property
    def process(self) -> Optional[subprocess.Popen]:
        return self._proc

    def close(self) -> None:
        """Close the connection; a worker started by :meth:`spawn` is shut down (killed if it does not stop)."""
        if self._proc is not None and self._proc.poll() is None and not self.closed:
            self.shutdown()
        self.closed = True
        try:
            self._sock.close()
        except OSError:
            pass
        if self._proc is not None:
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            if self._proc.stdout:
                self._proc.stdout.close()

    def __enter__(self) -> WorkerClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _read_ready(proc: subprocess.Popen, timeout: float) -> Optional[dict]:
    """The ready line of a starting worker (None if it exits first or times out)."""
    box: dict = {}

    def reader():
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").strip()
            if line.startswith("{"):
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                if isinstance(ev, dict) and ev.get("event") == "ready":
                    box["ready"] = ev
                    return

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(timeout)
    return box.get("ready")
