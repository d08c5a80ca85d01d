"""The one way the worker starts child processes: environment, command line, logs, cancellation, progress events.

Children (Blender's headless entry, the ultralytics process, worker jobs, the benchmark's per-method runs, the
HDF5 verifier, the renderer, a spawned worker) are started with :func:`child_env` (this checkout first on
``PYTHONPATH``, unbuffered output, the worker's token left out) and, for Python children, :func:`python_command`.

Children that report progress print one JSON object per stdout line with an ``event`` key::

    {"event": "progress", "done": 3, "total": 10, "message": "..."}   (or "progress": 0..1, "stage": "...")
    {"event": "done", ...}  |  {"event": "error", "message": "..."}

anything else they print is ignored. :func:`run_events` follows such a child to its end: each event goes to
``on_event``, progress goes to the progress channel (:mod:`ml_backend.progress`: a terminal bar, or the job's
events inside a job), stderr is kept (its last lines for the error message, all of it in ``log_path``), and the
child is killed when the caller is interrupted (an exception, Ctrl-C, a cancelled job) or ``timeout_s`` passes.
"""
from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .paths import REPO_ROOT
from .progress import progress_bar

__all__ = ["REPO_ROOT", "ChildError", "ChildResult", "child_env", "python_command", "parse_event", "json_events",
           "run_events", "describe_exit", "probe_torch"]


class ChildError(RuntimeError):
    """A child failed: it could not start, exited non-zero, reported an ``error`` event or ended without a
    result. The message names the command, the reason and the child's last stderr lines."""


def child_env(extra: Optional[Mapping[str, str]] = None, *, pythonpath: bool = True,
              base: Optional[Mapping[str, str]] = None) -> dict:
    """Environment of a child: ``base`` (default ``os.environ``) with this checkout first on ``PYTHONPATH`` (so
    ``ml_backend`` imports even when not installed; ``pythonpath=False`` removes ``PYTHONPATH`` instead, for a
    non-worker interpreter such as Blender's), ``PYTHONUNBUFFERED=1``, no ``POSE_WORKER_TOKEN``, then ``extra``."""
    env = dict(os.environ if base is None else base)
    env.pop("POSE_WORKER_TOKEN", None)  # only the worker itself may hold its token
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    else:
        env.pop("PYTHONPATH", None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def python_command(module: str, *args: object, python: Optional[str] = None) -> list[str]:
    """``[python, "-m", module, *args]`` with this interpreter by default."""
    return [str(python or sys.executable), "-m", module, *map(str, args)]


def parse_event(line: str | bytes) -> Optional[dict]:
    """The ``{"event": ...}`` object on one stdout line, or None (library chatter, malformed or other JSON)."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", "replace")
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        ev = json.loads(line)
    except ValueError:
        return None
    return ev if isinstance(ev, dict) and "event" in ev else None


def json_events(lines: Iterable[str]) -> Iterator[dict]:
    """The ``{"event": ...}`` objects among ``lines``."""
    for line in lines:
        ev = parse_event(line)
        if ev is not None:
            yield ev


def describe_exit(rc: Optional[int]) -> str:
    """``exit code 2``, or ``killed by SIGSEGV (exit code 139 in a shell)`` for a negative ``rc``."""
    if rc is None:
        return "still running"
    if rc >= 0:
        return f"exit code {rc}"
    try:
        return f"killed by {signal.Signals(-rc).name} (exit code {128 - rc} in a shell)"
    except ValueError:
        return f"killed by signal {-rc}"


@dataclass
class ChildResult:
    """How a child followed by :func:`run_events` ended: exit code, its last non-progress event (``done`` or
    other), its ``error`` event's message if any, and its last stderr lines."""

    returncode: int
    final: Optional[dict] = None
    error: Optional[str] = None
    stderr_tail: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.error is None and self.final is not None

    def failure(self, what: str) -> ChildError:
        """A :class:`ChildError` saying why ``what`` failed, with the last stderr lines."""
        reason = self.error or (describe_exit(self.returncode) if self.returncode != 0 else "no result event")
        if self.error and self.returncode != 0:
            reason += f" ({describe_exit(self.returncode)})"
        last = "\n".join(f"  | {x}" for x in self.stderr_tail[-12:])
        return ChildError(f"{what} failed: {reason}" + (f"\nlast stderr lines:\n{last}" if last else ""))


def _fraction(ev: dict) -> Optional[float]:
    if isinstance(ev.get("progress"), (int, float)):
        return float(ev["progress"])
    total = ev.get("total")
    return int(ev.get("done") or 0) / int(total) if isinstance(total, (int, float)) and total else None


def run_events(cmd: Sequence[str], *, env: Optional[Mapping[str, str]] = None, cwd: Optional[Path | str] = None,
               on_event: Optional[Callable[[dict], None]] = None, progress: Optional[str] = None,
               show_progress: bool = True, unit: str = "it", timeout_s: Optional[float] = None,
               log_path: Optional[Path | str] = None, tail_lines: int = 30) -> ChildResult:
    """Run ``cmd`` to its end, following its JSON-line events (see the module docstring).

    Args:
        cmd: the command line (:func:`python_command` for a Python module).
        env: its environment (default :func:`child_env`); ``cwd`` its folder (default this checkout).
        on_event: called with every event, in order.
        progress: the step name its ``progress`` events are reported under on the progress channel (None: not
            reported); ``show_progress=False`` hides the terminal bar (a job still gets the events).
        timeout_s: kill the child after this many seconds (then :class:`ChildError`).
        log_path: file the child's whole stderr is appended to.

    Raises:
        ChildError: the child could not start or ran past ``timeout_s``. Whatever the caller raises (including
        from ``on_event``) kills the child first.
    """
    try:
        proc = subprocess.Popen(list(map(str, cmd)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True, bufsize=1,
                                env=dict(env) if env is not None else child_env(), cwd=str(cwd or REPO_ROOT))
    except OSError as e:
        raise ChildError(f"cannot start {cmd[0]}: {e}") from e
    tail: collections.deque = collections.deque(maxlen=tail_lines)
    log = open(log_path, "a", encoding="utf-8") if log_path else None

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            tail.append(line.rstrip("\n"))
            if log is not None:
                log.write(line)
                log.flush()

    reader = threading.Thread(target=drain, daemon=True, name="child-stderr")
    reader.start()
    timed_out = threading.Event()

    def kill_late() -> None:
        timed_out.set()
        proc.kill()

    killer = threading.Timer(timeout_s, kill_late) if timeout_s else None
    if killer is not None:
        killer.daemon = True
        killer.start()
    bar = progress_bar(desc=progress, unit=unit, disable=not show_progress) if progress else None
    final: Optional[dict] = None
    error: Optional[str] = None
    try:
        assert proc.stdout is not None
        for ev in json_events(proc.stdout):
            if on_event is not None:
                on_event(ev)
            kind = ev["event"]
            if kind == "progress":
                if bar is not None:
                    _advance(bar, ev)
            elif kind == "error":
                error = str(ev.get("message", "unknown error"))
            else:
                final = ev
        rc = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        if killer is not None:
            killer.cancel()
        if bar is not None:
            bar.close()
        reader.join(timeout=5)
        if log is not None:
            log.close()
    if timed_out.is_set():
        raise ChildError(f"{Path(str(cmd[0])).name} did not finish within {timeout_s:g} s (killed)")
    return ChildResult(rc, final, error, list(tail))


def _advance(bar, ev: dict) -> None:
    total = ev.get("total")
    if isinstance(total, (int, float)) and total and bar.total != total:
        bar.total = total
    frac = _fraction(ev)
    if "done" in ev:
        bar.n = int(ev.get("done") or 0)
    elif frac is not None and bar.total:
        bar.n = frac * bar.total
    elif frac is not None:
        bar.total, bar.n = 100, round(100 * frac)
    if ev.get("message") or ev.get("stage"):
        bar.set_postfix_str(str(ev.get("message") or ev.get("stage"))[:40], refresh=False)
    bar.refresh()


_TORCH_PROBE = ("import json, torch; c = torch.cuda.is_available(); print(json.dumps({'device': 'cuda' if c else "
                "'cpu', 'cuda_devices': [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] "
                "if c else []}))")


def probe_torch(timeout_s: float = 120.0) -> dict:
    """torch's device asked in a child process: ``{"probed": True, "device": "cuda" | "cpu", "cuda_devices": [...]}``
    or ``{"probed": False, "device": "cpu", "error": ...}``. Importing torch in the worker would add ~450 MB to it
    for good, and CUDA's initialisation is sticky."""
    try:
        proc = subprocess.run([sys.executable, "-c", _TORCH_PROBE], capture_output=True, text=True, timeout=timeout_s,
                              stdin=subprocess.DEVNULL, env=child_env(), cwd=str(REPO_ROOT))
        return {"probed": True, **json.loads(proc.stdout.strip().splitlines()[-1])}
    except (subprocess.TimeoutExpired, ValueError, IndexError, OSError) as e:
        return {"probed": False, "device": "cpu", "error": f"torch probe failed: {type(e).__name__}: {e}"[:300]}
