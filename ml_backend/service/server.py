"""The worker's socket server: ``python -m ml_backend serve [--host 127.0.0.1] [--port 0] [--unix PATH]
[--parent-pid PID] [--token-file F] [--data-dir DIR]``.

* Loopback only: a host that is not a loopback address is refused (exit code 2). Port 0 = ephemeral.
* The token comes through an inherited pipe (``--token-fd N``: the launcher writes it and closes its end), a
  ``--token-file`` readable by its owner only (mode 0600), or ``$POSE_WORKER_TOKEN``; never from the command line.
  A token found in the environment makes the worker re-execute itself at once without it (same PID, the token
  then travels through a pipe), so ``/proc/PID/environ`` never shows it. Without any, a random token is written
  to a 0600 file whose path the ready line carries (``token_file``).
* Bounded: at most :data:`MAX_UNAUTHENTICATED` connections waiting for their hello (a new one closes the oldest
  once it has had :data:`HELLO_GRACE_S`),
  each buffering at most :data:`~.protocol.PREAUTH_MAX_FRAME` bytes; at most :data:`MAX_CONNECTIONS` in all.
* A watchdog logs requests whose thread outlives their timeout and jobs that report no progress
  (``info``'s ``busy`` and a job's ``stalled_s``); SIGTERM and ``shutdown`` end the process within 5 s even when a
  thread is stuck inside a library.
* When listening it prints ONE line on stdout, then never writes to stdout again (later output goes to stderr)::

      {"event": "ready", "address": "127.0.0.1", "port": 40123, "protocol": 1, "pid": 1234, "transport": "tcp"}

* asyncio: every connection is served on its own, fast methods inline, ``estimate_pose`` in a thread pool, jobs
  in subprocesses (:mod:`.jobs`), so a slow or silent client never stalls the others. Bad input is answered with a
  structured error (or the connection is closed when framing is lost); it never ends the process.
* With ``--parent-pid`` the worker exits when that process is gone.

Exit codes: see :data:`ml_backend.service.protocol`'s ``EXIT_*`` (mirrored by the extension to explain them).
"""
from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import ipaddress
import json
import logging
import os
import secrets
import signal
import socket
import stat
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Optional

from ..paths import WORKER_DATA_DIR
from . import protocol as P
from .handlers import Handlers, ServiceError

__all__ = ["WorkerServer", "main", "EXIT_OK", "EXIT_USAGE", "EXIT_BIND", "EXIT_TOKEN", "EXIT_ENV",
           "EXIT_PARENT_GONE", "EXIT_INTERNAL"]

log = logging.getLogger("ml_backend.service")

EXIT_OK = 0
EXIT_INTERNAL = 1  # an unexpected crash (traceback in the log)
EXIT_USAGE = 2  # bad arguments, a non-loopback host
EXIT_BIND = 3  # the address is taken or cannot be bound
EXIT_TOKEN = 4  # the token file is missing, empty or readable by others
EXIT_ENV = 5  # the worker environment lacks a package it needs
EXIT_PARENT_GONE = 6  # the parent process (--parent-pid) went away

MAX_INFLIGHT = 32  # requests in flight per connection; more are answered "busy"
MAX_CONNECTIONS = 96  # connections at once (authenticated or not); more are answered "busy" and closed
MAX_UNAUTHENTICATED = 32  # connections still waiting for their hello; a new one closes the oldest ...
HELLO_GRACE_S = 0.5  # ... once that one has had this long to say hello (else the new one is refused)
WRITE_HIGH = 2 * 1024 * 1024  # a connection whose unread replies exceed this stops being read from
STALL_TIMEOUT_S = 60.0  # ... and is closed when it stays so long


class _Conn(asyncio.Protocol):
    """One client connection."""

    def __init__(self, server: WorkerServer):
        self.server = server
        self.transport: Optional[asyncio.Transport] = None
        self.decoder = P.Decoder(max_frame=P.PREAUTH_MAX_FRAME)  # raised to MAX_FRAME by a good hello
        self.authed = False
        self.opened = time.monotonic()
        self.closed = False
        self.inflight = 0
        self.tasks: set[asyncio.Task] = set()
        self.subscribed = False
        self._hello_timer = None
        self._stall_timer = None
        self.peer = "?"

    # ----------------------------------------------------------------------------------- transport events
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.peer = str(transport.get_extra_info("peername"))
        transport.set_write_buffer_limits(high=WRITE_HIGH)
        if not self.server.admit(self):
            return
        self.server.conns.add(self)
        self._hello_timer = asyncio.get_running_loop().call_later(self.server.hello_timeout, self._no_hello)

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.server.conns.discard(self)
        for t in (self._hello_timer, self._stall_timer):
            if t:
                t.cancel()
        for task in list(self.tasks):
            task.cancel()

    def pause_writing(self) -> None:  # the client does not read its replies
        self.transport.pause_reading()
        self._stall_timer = asyncio.get_running_loop().call_later(STALL_TIMEOUT_S, self._stalled)

    def resume_writing(self) -> None:
        if self._stall_timer:
            self._stall_timer.cancel()
            self._stall_timer = None
        if not self.closed:
            self.transport.resume_reading()

    def _stalled(self) -> None:
        log.warning("closing %s: it has not read its replies for %.0f s", self.peer, STALL_TIMEOUT_S)
        self.abort()

    def _no_hello(self) -> None:
        if not self.authed and not self.closed:
            log.info("closing %s: no hello within %.0f s", self.peer, self.server.hello_timeout)
            self.send(P.make_error(None, P.ErrorCode.UNAUTHORIZED, "no hello received in time"))
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        self.transport.abort()

    def send(self, msg: dict) -> None:
        if self.closed or self.transport.is_closing():
            return
        try:
            frame = P.encode(msg)
        except ValueError as e:  # a result over the frame limit
            frame = P.encode(P.make_error(msg.get("id"), P.ErrorCode.FAILED,
                                          f"the reply to request {msg.get('id')!r} is too large: {e}"))
        self.transport.write(frame)

    # ----------------------------------------------------------------------------------- requests
    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.decoder.feed(data)
        while not self.closed:
            try:
                msg = self.decoder.next_message()
            except P.ProtocolError as e:
                self.send(P.make_error(None, e.code, e.message))
                if e.fatal or not self.authed:
                    self.close()
                    return
                continue
            if msg is None:
                return
            self.server.handle(self, msg)


class WorkerServer:
    """Dispatches requests. Methods: ``_m_<name>`` (inline, fast) or ``_t_<name>`` (in a thread)."""

    def __init__(self, token: str, work_dir: Path, parent_pid: Optional[int] = None, threads: int = 2,
                 max_jobs: int = 1, hello_timeout: float = P.HELLO_TIMEOUT_S):
        from .jobs import JobManager

        self.token = token
        self.work_dir = Path(work_dir)
        self.parent_pid = parent_pid
        self.hello_timeout = hello_timeout
        self.conns: set[_Conn] = set()
        self.handlers = Handlers(self.work_dir)
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="estimate")
        self.jobs = JobManager(self.work_dir, max_running=max_jobs, on_change=self._job_changed)
        self.started = time.time()
        self.stopping: Optional[asyncio.Event] = None
        self.exit_code = EXIT_OK
        self.n_requests = 0
        self.n_refused = 0  # connections refused or evicted by the limits
        self.busy: dict[int, dict] = {}  # thread requests running now: key -> method, id, started, timeout
        self._busy_key = 0
        self.job_stall_s = 300.0
        self._servers: list = []
        self.methods = {
            "ping": ("inline", self._m_ping), "info": ("thread", self._t_info),
            "estimate_pose": ("thread", self.handlers.estimate_pose),
            "models.list": ("thread", self.handlers.models_list),
            "methods.list": ("thread", self.handlers.methods_list),
            "solve_pnp": ("thread", self.handlers.solve_pnp),
            "job.start": ("inline", self._m_job_start), "job.status": ("inline", self._m_job_status),
            "job.cancel": ("async", self._m_job_cancel), "job.list": ("inline", self._m_job_list),
            "job.subscribe": ("inline", None), "shutdown": ("inline", self._m_shutdown),
        }

    # ----------------------------------------------------------------------------------- admission
    def admit(self, conn: _Conn) -> bool:
        """Apply the connection limits to a new connection; False when it was refused (and closed)."""
        waiting = sorted((c for c in self.conns if not c.authed and not c.closed), key=lambda c: c.opened)
        now = time.monotonic()
        while len(waiting) >= MAX_UNAUTHENTICATED:  # a flood of silent connections: drop the oldest
            if now - waiting[0].opened < HELLO_GRACE_S:  # a burst of real clients: refuse the newcomer instead
                self.n_refused += 1
                conn.send(P.make_error(None, P.ErrorCode.BUSY, f"{MAX_UNAUTHENTICATED} connections are waiting "
                                       "for their hello: retry"))
                conn.close()
                return False
            old = waiting.pop(0)
            log.warning("closing %s: too many connections without a hello", old.peer)
            self.n_refused += 1
            old.abort()
        n_open = sum(1 for c in self.conns if not c.closed)  # evicted ones leave the set a moment later
        if n_open >= MAX_CONNECTIONS:
            self.n_refused += 1
            log.warning("refusing %s: %d connections open", conn.peer, n_open)
            conn.send(P.make_error(None, P.ErrorCode.BUSY, f"the worker serves at most {MAX_CONNECTIONS} connections"))
            conn.close()
            return False
        return True

    # ----------------------------------------------------------------------------------- dispatch
    def handle(self, conn: _Conn, msg: dict) -> None:
        self.n_requests += 1
        req_id = msg.get("id")
        if not (req_id is None or isinstance(req_id, str) or (isinstance(req_id, int)
                                                                and not isinstance(req_id, bool))):
            conn.send(P.make_error(None, P.ErrorCode.BAD_REQUEST, "'id' must be an integer or a string"))
            return
        method = msg.get("method")
        params = msg.get("params", {})
        if params is None:
            params = {}
        if not isinstance(method, str) or not isinstance(params, dict):
            conn.send(P.make_error(req_id, P.ErrorCode.BAD_REQUEST,
                                   "a request needs 'method' (string) and 'params' (object)"))
            if not conn.authed:
                conn.close()
            return
        if not conn.authed:
            self._hello(conn, req_id, method, params)
            return
        if method == "hello":
            conn.send(P.make_error(req_id, P.ErrorCode.BAD_REQUEST, "already said hello"))
            return
        entry = self.methods.get(method)
        if entry is None:
            conn.send(P.make_error(req_id, P.ErrorCode.UNKNOWN_METHOD, f"unknown method {method!r}",
                                   {"methods": sorted(self.methods)}))
            return
        try:
            timeout = P.check_timeout(msg.get("timeout"))
        except ValueError as e:
            conn.send(P.make_error(req_id, P.ErrorCode.BAD_REQUEST, str(e), {"field": "timeout"}))
            return
        if self.stopping is not None and self.stopping.is_set():
            conn.send(P.make_error(req_id, P.ErrorCode.SHUTTING_DOWN, "the worker is shutting down"))
            return
        kind, fn = entry
        if method == "job.subscribe":
            conn.subscribed = bool(params.get("on", True))
            conn.send({"id": req_id, "result": {"subscribed": conn.subscribed}})
            return
        if kind == "inline":
            conn.send(self._call(req_id, fn, conn, params))
            return
        if conn.inflight >= MAX_INFLIGHT:
            conn.send(P.make_error(req_id, P.ErrorCode.BUSY, f"more than {MAX_INFLIGHT} requests in flight"))
            return
        conn.inflight += 1
        task = asyncio.get_running_loop().create_task(self._slow(conn, req_id, kind, fn, params, float(timeout)))
        conn.tasks.add(task)
        task.add_done_callback(conn.tasks.discard)

    def _call(self, req_id, fn, conn, params) -> dict:
        try:
            return {"id": req_id, "result": fn(conn, params)}
        except Exception as e:
            return self._error(req_id, e)

    async def _slow(self, conn: _Conn, req_id, kind: str, fn, params: dict, timeout: float) -> None:
        t0 = time.perf_counter()
        try:
            if kind == "thread":
                self._busy_key += 1
                key = self._busy_key
                self.busy[key] = {"method": method_name(fn), "id": req_id, "started": time.time(),
                                  "timeout_s": timeout, "peer": conn.peer, "stuck": False}

                def run():
                    try:
                        return fn(params)
                    finally:
                        self.busy.pop(key, None)

                fut = asyncio.get_running_loop().run_in_executor(self.pool, run)
            else:
                fut = fn(conn, params)
            result = await asyncio.wait_for(fut, timeout)
            if isinstance(result, dict) and isinstance(result.get("timings"), dict):
                result["timings"]["server"] = time.perf_counter() - t0
            reply = {"id": req_id, "result": result}
        except TimeoutError:
            reply = P.make_error(req_id, P.ErrorCode.TIMEOUT, f"no result within {timeout:g} s",
                                 {"timeout_s": timeout})
        except asyncio.CancelledError:
            return
        except Exception as e:
            reply = self._error(req_id, e)
        finally:
            conn.inflight -= 1
        conn.send(reply)

    def _error(self, req_id, e: Exception) -> dict:
        from pose_addon.core.dataset import DatasetError

        from ..matching.extractors import ImageReadError
        from ..methods import MethodUnavailable
        from .job_runner import ParamError

        if isinstance(e, ServiceError):
            return P.make_error(req_id, e.code, e.message, e.detail)
        if isinstance(e, ParamError):
            return P.make_error(req_id, e.code, str(e))
        if isinstance(e, FileNotFoundError):
            return P.make_error(req_id, P.ErrorCode.NOT_FOUND, str(e))
        from ..integrity import CorruptFile, ImageRejected

        if isinstance(e, (CorruptFile, ImageRejected)):
            return P.make_error(req_id, P.ErrorCode.FAILED, str(e), {"path": e.path})
        if isinstance(e, MethodUnavailable):
            return P.make_error(req_id, P.ErrorCode.UNAVAILABLE, str(e))
        if isinstance(e, (ImageReadError, DatasetError, OSError)):
            return P.make_error(req_id, P.ErrorCode.FAILED, f"{type(e).__name__}: {e}")
        if isinstance(e, (ValueError, KeyError, TypeError)):
            return P.make_error(req_id, P.ErrorCode.INVALID_PARAMS, f"{type(e).__name__}: {e}",
                                {"traceback": traceback.format_exc(limit=-3)})
        log.exception("internal error")
        return P.make_error(req_id, P.ErrorCode.INTERNAL, f"{type(e).__name__}: {e}",
                            {"traceback": traceback.format_exc(limit=-6)})

    def _hello(self, conn: _Conn, req_id, method: str, params: dict) -> None:
        token = params.get("token")
        if method != "hello" or not isinstance(token, str) or not secrets.compare_digest(
                token.encode("utf-8", "replace"), self.token.encode()):
            conn.send(P.make_error(req_id, P.ErrorCode.UNAUTHORIZED,
                                   "the first message must be a hello with the worker's token"))
            log.warning("refused %s: %s", conn.peer, "wrong token" if method == "hello" else f"{method!r} first")
            conn.close()
            return
        version = params.get("protocol")
        if version != P.PROTOCOL_VERSION:
            conn.send(P.make_error(req_id, P.ErrorCode.PROTOCOL_MISMATCH,
                                   f"the worker speaks protocol {P.PROTOCOL_VERSION}, the client asked for "
                                   f"{version!r}: update the client or the worker", {"protocol": P.PROTOCOL_VERSION}))
            conn.close()
            return
        conn.authed = True
        conn.decoder.max_frame = P.MAX_FRAME
        conn.decoder.skip_above = P.MAX_REQUEST
        if conn._hello_timer:
            conn._hello_timer.cancel()
        conn.send({"id": req_id, "result": {"protocol": P.PROTOCOL_VERSION, "server": "ml_backend",
                                            "pid": os.getpid(), "methods": sorted(self.methods) + ["hello"]}})

    # ----------------------------------------------------------------------------------- methods
    def _m_ping(self, conn, params) -> dict:
        echo = params.get("echo")
        if echo is not None:
            n = len(P.encode_payload({"echo": echo}))
            if n > P.MAX_ECHO:
                raise ServiceError(P.ErrorCode.INVALID_PARAMS, f"parameter 'echo' is {n} bytes of JSON; ping echoes "
                                   f"at most {P.MAX_ECHO}")
        return {"pong": True, "time": time.time(), "echo": echo}

    def _t_info(self, params) -> dict:
        return {**self.handlers.info(params), "health": self.health()}

    def health(self) -> dict:
        """Connections, refusals, busy request threads (``stuck``: past their timeout) and stalled jobs."""
        now = time.time()
        return {"connections": len(self.conns), "unauthenticated": sum(1 for c in self.conns if not c.authed),
                "refused": self.n_refused, "busy": [dict(b, running_s=now - b["started"]) for b in self.busy.values()],
                "stalled_jobs": [j.id for j in self.jobs.jobs.values() if j.stalled_s]}

    def _m_job_start(self, conn, params) -> dict:
        from .handlers import param

        kind = param(params, "kind", str)
        job = self.jobs.start(kind, param(params, "params", dict, {}))
        if params.get("subscribe", False) is True:
            conn.subscribed = True
        return job.status()

    def _job(self, params):
        from .handlers import param

        job_id = param(params, "job", str)
        try:
            return self.jobs.get(job_id)
        except KeyError:
            raise ServiceError(P.ErrorCode.NOT_FOUND, f"no job {job_id!r}") from None

    def _m_job_status(self, conn, params) -> dict:
        return self._job(params).status()

    async def _m_job_cancel(self, conn, params) -> dict:
        job = self._job(params)
        await self.jobs.cancel(job.id)
        return job.status()

    def _m_job_list(self, conn, params) -> dict:
        return {"jobs": self.jobs.list()}

    def _m_shutdown(self, conn, params) -> dict:
        log.info("shutdown requested by %s", conn.peer)
        asyncio.get_running_loop().call_later(0.05, self.stopping.set)
        return {"stopping": True}

    def _job_changed(self, job) -> None:
        ev = {"event": "job", "job": job.status()}
        for c in list(self.conns):
            if c.subscribed and c.authed:
                c.send(ev)

    # ----------------------------------------------------------------------------------- lifecycle
    async def _watchdog(self) -> None:
        """Once a second: report request threads running past their timeout and jobs without progress."""
        while True:
            await asyncio.sleep(1.0)
            now = time.time()
            for b in list(self.busy.values()):
                if not b["stuck"] and now - b["started"] > b["timeout_s"] + 5.0:
                    b["stuck"] = True
                    log.error("watchdog: %s (request %r from %s) has run %.0f s, past its %g s timeout: its thread "
                              "is stuck", b["method"], b["id"], b["peer"], now - b["started"], b["timeout_s"])
            self.jobs.check_stalled(self.job_stall_s)

    async def _watch_parent(self) -> None:
        while not self.stopping.is_set():
            await asyncio.sleep(0.5)
            gone = os.getppid() != self.parent_pid
            if not gone:
                continue
            log.warning("parent process %s is gone: exiting", self.parent_pid)
            self.exit_code = EXIT_PARENT_GONE
            self.stopping.set()

    async def run(self, host: str, port: int, unix: Optional[str], ready_out) -> int:
        loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.stopping.set)
            except (NotImplementedError, RuntimeError):
                pass
        try:
            if unix:
                _clear_stale_socket(unix)
                srv = await loop.create_unix_server(lambda: _Conn(self), path=unix, backlog=128)
                os.chmod(unix, 0o600)
                ready = {"event": "ready", "transport": "unix", "address": unix, "port": None}
            else:
                srv = await loop.create_server(lambda: _Conn(self), host=host, port=port, backlog=128,
                                               reuse_address=True)
                sockname = srv.sockets[0].getsockname()
                for s in srv.sockets:
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                ready = {"event": "ready", "transport": "tcp", "address": sockname[0], "port": sockname[1]}
        except OSError as e:
            log.error("cannot listen on %s: %s", unix or f"{host}:{port}", e)
            return EXIT_BIND
        self._servers.append(srv)
        ready.update({"protocol": P.PROTOCOL_VERSION, "pid": os.getpid()})
        if getattr(self, "token_file", None):
            ready["token_file"] = self.token_file
        ready_out(ready)
        log.info("listening: %s", json.dumps(ready))
        watcher = loop.create_task(self._watch_parent()) if self.parent_pid else None
        dog = loop.create_task(self._watchdog())
        await self.stopping.wait()
        log.info("stopping")
        srv.close()
        for c in list(self.conns):
            c.abort()
        try:
            await asyncio.wait_for(self.jobs.shutdown(), 2.5)
        except TimeoutError:
            log.warning("jobs did not end within 2.5 s of SIGKILL")
        for t in (watcher, dog):
            if t:
                t.cancel()
        self.pool.shutdown(wait=False, cancel_futures=True)
        closer = threading.Thread(target=self.handlers.close, daemon=True, name="close-databases")
        closer.start()
        closer.join(1.0)  # a thread stuck inside h5py holds its lock: do not wait for it
        if closer.is_alive():
            log.warning("open databases not closed: a request thread is still inside a library call")
        if unix:
            try:
                os.unlink(unix)
            except OSError:
                pass
        return self.exit_code


def method_name(fn) -> str:
    return getattr(fn, "__name__", str(fn))


def _clear_stale_socket(path: str) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(f"{path} exists and is not a socket")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError:
        os.unlink(path)  # nobody listens: a leftover of a killed worker
        return
    finally:
        s.close()
    raise OSError(f"another worker listens on {path}")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def reexec_without_token_env() -> None:
    """If ``$POSE_WORKER_TOKEN`` is set, re-execute this worker (same PID) without it, the token in a pipe.

    The kernel keeps a process's initial environment readable in ``/proc/PID/environ`` however Python edits
    ``os.environ``; only a new ``execve`` replaces it. Does nothing where ``sys.orig_argv`` or pipes are lacking.
    """
    token = os.environ.get("POSE_WORKER_TOKEN")
    argv = list(getattr(sys, "orig_argv", []) or [])
    if not token or os.name != "posix" or len(argv) < 2 or any(a.startswith("--token-fd") for a in argv):
        return
    r, w = os.pipe()
    os.write(w, token.strip().encode())
    os.close(w)
    os.set_inheritable(r, True)
    env = {k: v for k, v in os.environ.items() if k != "POSE_WORKER_TOKEN"}
    try:
        os.execve(sys.executable, [sys.executable, *argv[1:], "--token-fd", str(r)], env)
    except OSError as e:  # keep serving with the token from the environment
        os.close(r)
        sys.stderr.write(f"warning: cannot re-execute without POSE_WORKER_TOKEN ({e}); it stays visible in "
                         f"/proc/{os.getpid()}/environ\n")


def read_token(token_file: Optional[str], token_fd: Optional[int] = None) -> tuple[Optional[str], str]:
    """(token, error message): from the pipe ``token_fd``, else ``$POSE_WORKER_TOKEN``, else the file."""
    if token_fd is not None:
        try:
            chunks = []
            while True:
                b = os.read(token_fd, 4096)
                if not b:
                    break
                chunks.append(b)
                if sum(map(len, chunks)) > 4096:
                    return None, f"token pipe (fd {token_fd}) holds more than 4096 bytes"
            os.close(token_fd)
        except OSError as e:
            return None, f"token pipe (fd {token_fd}): {e}"
        tok = b"".join(chunks).decode("utf-8", "replace").strip()
        return (tok, "") if tok else (None, f"token pipe (fd {token_fd}) is empty")
    env = os.environ.pop("POSE_WORKER_TOKEN", None)  # jobs and their children do not need it
    if env:
        return env.strip(), ""
    if not token_file:
        return None, ""
    p = Path(token_file)
    try:
        st = p.stat()
    except OSError as e:
        return None, f"token file {p}: {e}"
    if os.name == "posix" and st.st_mode & 0o077:
        return None, f"token file {p} must be readable by its owner only (chmod 600), mode is {oct(st.st_mode & 0o777)}"
    tok = p.read_text().strip()
    if not tok:
        return None, f"token file {p} is empty"
    return tok, ""


def write_token_file(work_dir: Path) -> tuple[str, str]:
    tok = secrets.token_urlsafe(32)
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / f"worker-{os.getpid()}.token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(tok)
    os.chmod(path, 0o600)
    return tok, str(path)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="TCP port (default 0: an ephemeral port)")
    p.add_argument("--unix", default=None, help="listen on this Unix socket path instead of TCP")
    p.add_argument("--parent-pid", type=int, default=None, help="exit when this process is gone")
    p.add_argument("--token-file", default=None, help="file (mode 0600) holding the token; else $POSE_WORKER_TOKEN")
    p.add_argument("--token-fd", type=int, default=None,
                   help="inherited pipe to read the token from (the launcher writes it and closes its end)")
    p.add_argument("--job-stall-timeout", type=float, default=300.0,
                   help="report a running job that sends no progress for this many seconds (watchdog)")
    p.add_argument("--data-dir", default=None,
                   help="jobs, logs and derived files (default $POSE_WORKER_DATA or <checkout>/.cache/worker)")
    p.add_argument("--threads", type=int, default=2, help="threads for estimate_pose (default 2)")
    p.add_argument("--max-jobs", type=int, default=1, help="jobs running at once (default 1)")
    p.add_argument("--hello-timeout", type=float, default=P.HELLO_TIMEOUT_S,
                   help="close connections that send no hello within this many seconds")
    p.add_argument("--log-level", default="INFO")


def serve(args) -> int:
    reexec_without_token_env()
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.unix is None and not is_loopback(args.host):
        log.error("refusing to listen on %s: the worker binds loopback addresses only", args.host)
        return EXIT_USAGE
    if args.unix is not None and not hasattr(socket, "AF_UNIX"):
        log.error("Unix sockets are not available on this platform")
        return EXIT_USAGE
    if args.parent_pid is not None and os.getppid() != args.parent_pid:
        log.error("parent process %s is already gone", args.parent_pid)
        return EXIT_PARENT_GONE
    work_dir = Path(args.data_dir or os.environ.get("POSE_WORKER_DATA") or WORKER_DATA_DIR)
    token, err = read_token(args.token_file, getattr(args, "token_fd", None))
    if err:
        log.error("%s", err)
        return EXIT_TOKEN
    token_file = None
    if token is None:
        token, token_file = write_token_file(work_dir)
    try:  # fail early and clearly when the environment is incomplete
        import cv2  # noqa: F401
        import h5py  # noqa: F401
        import numpy  # noqa: F401

        import pose_addon.core.cameras  # noqa: F401
    except ImportError as e:
        log.error("the worker environment is incomplete: %s (python: %s)", e, sys.executable)
        return EXIT_ENV
    work_dir.mkdir(parents=True, exist_ok=True)
    server = WorkerServer(token, work_dir, args.parent_pid, threads=max(1, args.threads),
                          max_jobs=max(1, args.max_jobs), hello_timeout=max(0.1, args.hello_timeout))
    server.token_file = token_file
    server.job_stall_s = max(1.0, float(getattr(args, "job_stall_timeout", 300.0)))
    real_stdout = sys.stdout

    def ready_out(ev: dict) -> None:
        real_stdout.write(json.dumps(ev) + "\n")
        real_stdout.flush()
        try:  # from now on stdout is the log: the launcher reads only the ready line
            os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
        except OSError:
            pass
        sys.stdout = sys.stderr

    try:
        code = asyncio.run(server.run(args.host, args.port, args.unix, ready_out))
    finally:
        if token_file:
            try:
                os.unlink(token_file)
            except OSError:
                pass
    log.info("exit code %d", code)
    stuck = [t.name for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive()
             and not t.daemon]
    if stuck:  # threads inside a library call would block the interpreter's exit forever
        log.warning("exiting without waiting for %d busy threads (%s)", len(stuck), ", ".join(stuck[:4]))
        logging.shutdown()
        sys.stderr.flush()
        os._exit(code)
    return code


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ml_backend serve")
    add_arguments(p)
    return serve(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
