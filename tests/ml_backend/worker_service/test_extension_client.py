"""The extension's worker client (``pose_addon.worker``: stdlib only, no bpy) against a real worker."""
from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from pose_addon.worker.connection import Connection
from pose_addon.worker.process import WorkerSetupError
from pose_addon.worker.supervisor import Supervisor


def _start(sup, tmp_path, args="-m ml_backend serve"):
    sup.start(python=sys.executable, args=args, log_path=tmp_path / "logs" / "worker.log", data_dir=str(tmp_path))


def test_supervisor_lifecycle(tmp_path):
    sup = Supervisor()
    _start(sup, tmp_path)
    assert sup.state == "starting"
    assert sup.wait_until(lambda: sup.state == "ready", 60), sup.message
    assert not sup.start(python=sys.executable)  # alive: no second worker
    box = {}
    sup.ping(lambda r, e: box.update(r=r, e=e))
    assert sup.wait_until(lambda: box, 10) and box["r"]["pong"]
    box.clear()
    sup.request("no.such", {}, lambda r, e: box.update(r=r, e=e))
    assert sup.wait_until(lambda: box, 10) and box["e"]["code"] == "unknown_method"
    # a job shows as busy with its progress
    box.clear()
    sup.request("job.start", {"kind": "sleep", "params": {"seconds": 2}}, lambda r, e: box.update(r=r, e=e))
    assert sup.wait_until(lambda: sup.state == "busy" and (sup.job or {}).get("progress"), 20)
    assert "sleep" in sup.message and "%" in sup.message
    pid = sup.proc.pid
    os.kill(pid, signal.SIGKILL)
    assert sup.wait_until(lambda: sup.state == "error", 10)
    assert "killed (SIGKILL)" in sup.message and "Restart" in sup.message
    sup.restart(python=sys.executable, log_path=tmp_path / "logs" / "worker.log", data_dir=str(tmp_path))
    assert sup.wait_until(lambda: sup.state == "ready", 60), sup.message
    assert sup.proc.pid != pid
    assert (tmp_path / "logs" / "worker.log.1").is_file()  # the killed run's log is kept
    t0 = time.perf_counter()
    sup.stop()
    assert sup.wait_until(lambda: sup.state == "stopped", 15)
    assert time.perf_counter() - t0 < 5


def test_restart_of_a_live_worker_waits_for_it_to_end(tmp_path):
    sup = Supervisor()
    _start(sup, tmp_path)
    assert sup.wait_until(lambda: sup.state == "ready", 60)
    old = sup.proc.proc
    sup.restart(python=sys.executable, log_path=tmp_path / "w.log", data_dir=str(tmp_path))
    assert sup.state == "stopping"
    assert sup.wait_until(lambda: sup.state == "ready", 60), sup.message
    assert old.poll() is not None and sup.proc.proc is not old
    sup.shutdown_now()


def test_exit_codes_become_messages(tmp_path):
    sup = Supervisor()
    _start(sup, tmp_path, args="-m ml_backend serve --host 8.8.8.8")
    assert sup.wait_until(lambda: sup.state == "error", 30)
    assert "refused its arguments" in sup.message and "loopback" in sup.message
    sup2 = Supervisor()
    _start(sup2, tmp_path, args="-m no_such_module_here")
    assert sup2.wait_until(lambda: sup2.state == "error", 30)
    assert "crashed" in sup2.message and "No module named" in sup2.message


def test_setup_errors():
    with pytest.raises(WorkerSetupError, match="does not exist"):
        Supervisor().start(python="/no/such/python")
    with pytest.raises(WorkerSetupError, match="token"):
        Supervisor().start(python=sys.executable, args="-m ml_backend serve --token-file x")


def test_wrong_token_connection_closes_with_reason(worker):
    c = Connection((worker.ready["address"], worker.ready["port"]), "wrong-token")
    deadline = time.monotonic() + 10
    while c.state != "closed" and time.monotonic() < deadline:
        t0 = time.perf_counter()
        c.service()
        assert time.perf_counter() - t0 < 0.05  # never blocks
        time.sleep(0.005)
    assert c.state == "closed" and "refused" in c.close_reason


def test_connection_to_nothing_fails_cleanly():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nobody listens there now
    c = Connection(("127.0.0.1", port), "t")
    got = {}
    c.request("ping", {}, lambda r, e: got.update(e=e))
    deadline = time.monotonic() + 5
    while c.state != "closed" and time.monotonic() < deadline:
        c.service()
        time.sleep(0.005)
    assert c.state == "closed" and "connect" in c.close_reason
    assert got["e"]["code"] == "disconnected"
