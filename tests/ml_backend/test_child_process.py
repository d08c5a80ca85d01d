"""The one child-process runner (environment, events, logs, cancellation) and the one progress channel."""
from __future__ import annotations

import ast
import os
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from ml_backend import progress
from ml_backend.child_process import (
    ChildError,
    child_env,
    describe_exit,
    json_events,
    parse_event,
    python_command,
    run_events,
)
from ml_backend.paths import REPO_ROOT


def _script(tmp_path: Path, body: str) -> list[str]:
    p = tmp_path / "child.py"
    p.write_text(textwrap.dedent(body))
    return [sys.executable, str(p)]


@pytest.fixture
def sink():
    got = []
    progress.set_sink(lambda fraction, stage, message="", force=False: got.append((fraction, stage, message)))
    yield got
    progress.set_sink(None)


def test_child_env(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    monkeypatch.setenv("POSE_WORKER_TOKEN", "secret")
    env = child_env({"X": "1"})
    assert env["PYTHONPATH"].split(os.pathsep) == [str(REPO_ROOT), "/elsewhere"]
    assert "POSE_WORKER_TOKEN" not in env and env["PYTHONUNBUFFERED"] == "1" and env["X"] == "1"
    assert "PYTHONPATH" not in child_env(pythonpath=False)
    assert python_command("ml_backend", "serve", 3) == [sys.executable, "-m", "ml_backend", "serve", "3"]


def test_events_among_chatter():
    lines = ["Blender 5.0 (hash)", '{"event": "progress", "done": 1}', "{not json", '{"no_event": 1}', "[1, 2]",
             '  {"event": "done", "x": 2}  ']
    assert [e["event"] for e in json_events(lines)] == ["progress", "done"]
    assert parse_event(b'{"event": "error", "message": "m"}')["message"] == "m"
    assert describe_exit(3) == "exit code 3" and describe_exit(-11).startswith("killed by SIGSEGV (exit code 139")


def test_run_events_follows_a_child_and_logs_stderr(tmp_path, sink):
    cmd = _script(tmp_path, """
        import json, sys, os
        print("chatter")
        for i in range(3):
            print(json.dumps({"event": "progress", "done": i + 1, "total": 3, "message": f"frame {i}"}))
        sys.stderr.write("a warning\\n")
        print(json.dumps({"event": "done", "path": os.environ["PYTHONPATH"].split(os.pathsep)[0]}))
    """)
    events = []
    res = run_events(cmd, on_event=events.append, progress="render", show_progress=False,
                     log_path=tmp_path / "log.txt")
    assert res.ok and res.final == {"event": "done", "path": str(REPO_ROOT)}
    assert [e["event"] for e in events] == ["progress"] * 3 + ["done"]
    assert (tmp_path / "log.txt").read_text() == "a warning\n" and res.stderr_tail == ["a warning"]
    fractions = [f for f, stage, _ in sink if stage == "render" and f is not None]
    assert fractions[-1] == 1.0 and fractions == sorted(fractions)


def test_run_events_failure_names_reason_and_stderr(tmp_path):
    cmd = _script(tmp_path, """
        import json, sys
        sys.stderr.write("Traceback: GPU on fire\\n")
        print(json.dumps({"event": "error", "message": "no GPU"}))
        sys.exit(3)
    """)
    res = run_events(cmd)
    assert not res.ok and res.error == "no GPU" and res.returncode == 3
    msg = str(res.failure("render"))
    assert msg.startswith("render failed: no GPU (exit code 3)") and "GPU on fire" in msg
    assert "no result event" in str(run_events(_script(tmp_path, "pass")).failure("x"))
    with pytest.raises(ChildError, match="cannot start"):
        run_events([str(tmp_path / "missing-exe")])


def test_run_events_kills_the_child_on_timeout_and_on_caller_error(tmp_path):
    pid_file = tmp_path / "pid"
    cmd = _script(tmp_path, f"""
        import json, os, time
        open({str(pid_file)!r}, "w").write(str(os.getpid()))
        print(json.dumps({{"event": "progress", "done": 0}}), flush=True)
        time.sleep(60)
    """)
    t0 = time.monotonic()
    with pytest.raises(ChildError, match="did not finish within 1 s"):
        run_events(cmd, timeout_s=1.0)
    assert time.monotonic() - t0 < 30

    def cancel(ev):
        raise KeyboardInterrupt  # what a cancelled step raises

    with pytest.raises(KeyboardInterrupt):
        run_events(cmd, on_event=cancel)
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_progress_bar_reports_to_the_sink(sink):
    assert [x for x in progress.progress_bar(range(4), desc="database", disable=True)] == [0, 1, 2, 3]
    assert sink[0] == (0.0, "database", "0/4") and sink[-1][:2] == (1.0, "database")
    bar = progress.progress_bar(total=10, desc="features", initial=5)
    bar.update(5)
    bar.set_postfix(loss="0.1")
    bar.close()
    assert sink[-1] == (1.0, "features", "10/10 loss=0.1")
    progress.stage_reporter("localize")(0.5, "3/6")
    assert sink[-1] == (0.5, "localize", "3/6")


def test_regression_training_reports_progress(tmp_path, sink):
    """The ``train_regression`` job's epochs reach the worker through the channel (not a patched tqdm)."""
    from ml_backend.regression.features import _write_h5
    from ml_backend.regression.train import merge_config, train

    rng = np.random.default_rng(0)
    n = 24
    T = np.tile(np.eye(4), (n, 1, 1))
    T[:, :3, 3] = rng.normal(size=(n, 3))
    _write_h5(tmp_path / "f.h5", {"features": rng.normal(size=(n, 8)).astype(np.float32),
                                  "image_ids": np.array([f"i{i}" for i in range(n)], dtype=object),
                                  "view": np.zeros(n, np.int32), "cam_from_world": T},
              {"extractor": "efficientnet-lite0", "extractor_version": "random", "preprocessing": "{}", "conf": "{}"})
    train(merge_config({"features": str(tmp_path / "f.h5"), "out": str(tmp_path / "run"), "epochs": 3,
                        "batch_size": 8, "hidden": [16], "progress": False, "threads": 1, "patience": 100}))
    epochs = [(f, m) for f, stage, m in sink if stage == "train"]
    assert epochs and epochs[-1][0] == 1.0 and epochs[-1][1].startswith("3/3")


def test_every_progress_bar_goes_through_the_channel():
    """No worker module draws a tqdm bar of its own: a job would not see it."""
    offenders = []
    for path in (REPO_ROOT / "ml_backend").rglob("*.py"):
        if path.name == "progress.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                if any(n and n.split(".")[0] == "tqdm" for n in names):
                    offenders.append(str(path.relative_to(REPO_ROOT)))
    assert not offenders, f"import ml_backend.progress.progress_bar instead of tqdm in {offenders}"


STARTS = {("subprocess", "Popen"), ("subprocess", "run"), ("asyncio", "create_subprocess_exec")}


def test_children_get_the_runners_environment():
    """Every child the worker starts gets its environment from child_env: ``PYTHONPATH`` is set in one place."""
    setters, bare = [], []
    for path in (REPO_ROOT / "ml_backend").rglob("*.py"):
        if path.name == "child_process.py":
            continue
        text = path.read_text()
        where = str(path.relative_to(REPO_ROOT))
        if '["PYTHONPATH"] =' in text:
            setters.append(where)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    isinstance(node.func.value, ast.Name) and (node.func.value.id, node.func.attr) in STARTS:
                env = next((k.value for k in node.keywords if k.arg == "env"), None)
                if not (isinstance(env, ast.Call) and getattr(env.func, "id", "") in ("child_env", "_isolated_env")):
                    bare.append(f"{where}:{node.lineno}")
    assert not setters, setters
    assert not bare, f"start children with env=child_env(...): {bare}"
