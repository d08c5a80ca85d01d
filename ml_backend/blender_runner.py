"""Run the Blender extension's headless entry point as a subprocess and follow its JSON-line events.

Protocol (stdout, one JSON object per line): ``{"event": "progress", "done", "total", "message"}``,
``{"event": "done", ...}``, ``{"event": "error", "message"}``. Other stdout lines (Blender's own chatter) are
ignored. Blender gets its own HOME / XDG_CACHE_HOME / MESA_SHADER_CACHE_DIR under a cache folder so it never
writes to the user's configuration.
"""
from __future__ import annotations

import collections
import os
import subprocess
import threading
from pathlib import Path
from typing import Callable, Optional, Sequence

from tqdm import tqdm

from .child_events import json_events

__all__ = ["BlenderError", "find_blender", "run_headless", "render_dataset", "REPO_ROOT"]

REPO_ROOT = Path(__file__).resolve().parent.parent
ENTRY = REPO_ROOT / "tools" / "blender_entry.py"


class BlenderError(RuntimeError):
    """Blender could not be found, or a headless command failed (message holds its last stderr lines)."""


def find_blender() -> Path:
    """The Blender executable: ``$POSE_BLENDER``, else the checkout's ``tools/blender`` stand-in."""
    env = os.environ.get("POSE_BLENDER")
    if env:
        p = Path(env).expanduser()
        if not (p.is_file() and os.access(p, os.X_OK)):
            raise BlenderError(f"POSE_BLENDER={env} is not an executable file")
        return p
    p = REPO_ROOT / "tools" / "blender"
    if p.is_file() and os.access(p, os.X_OK):
        return p
    raise BlenderError(f"no Blender found: set POSE_BLENDER to a Blender 4.2+ executable (looked for {p})")


def _isolated_env(cache_dir: Path) -> dict:
    home = cache_dir / "blender-home"
    for sub in ("home", "xdg-cache", "mesa"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update({"HOME": str(home / "home"), "XDG_CACHE_HOME": str(home / "xdg-cache"),
                "MESA_SHADER_CACHE_DIR": str(home / "mesa"), "PYTHONUNBUFFERED": "1"})
    env.pop("PYTHONPATH", None)  # Blender's Python must not see the worker's packages
    return env


def run_headless(command: Sequence[str], cache_dir: Path | str, progress: bool = True,
                 on_event: Optional[Callable[[dict], None]] = None, desc: str = "blender",
                 timeout_s: Optional[float] = None) -> dict:
    """Run ``blender -b --python tools/blender_entry.py --python-exit-code 1 -- COMMAND...``.

    Args:
        command: the headless command and its arguments (e.g. ``["render-dataset", "--scene", ...]``).
        cache_dir: folder for Blender's isolated HOME and caches.
        progress: show a tqdm bar fed by the progress events.
        on_event: called with every parsed event.

    Returns:
        The final ``done`` (or other non-progress) event.

    Raises:
        BlenderError: Blender missing, a non-zero exit, an ``error`` event, or no final event; the message holds
            the error event's text and the last stderr lines.
    """
    exe = find_blender()
    cmd = [str(exe), "-b", "--python", str(ENTRY), "--python-exit-code", "1", "--", *map(str, command)]
    env = _isolated_env(Path(cache_dir))
    tail: collections.deque = collections.deque(maxlen=20)
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                cwd=str(REPO_ROOT), bufsize=1)
    except OSError as e:
        raise BlenderError(f"cannot start Blender {exe}: {e}") from e

    def drain():
        for line in proc.stderr:
            tail.append(line.rstrip("\n"))

    t = threading.Thread(target=drain, daemon=True)
    t.start()
    bar = tqdm(desc=desc, unit="frame", disable=not progress)
    final, error = None, None
    try:
        for ev in json_events(proc.stdout):
            if on_event:
                on_event(ev)
            kind = ev["event"]
            if kind == "progress":
                total = int(ev.get("total") or 0)
                if total and bar.total != total:
                    bar.total = total
                bar.n = int(ev.get("done") or 0)
                if ev.get("message"):
                    bar.set_postfix_str(str(ev["message"])[:40], refresh=False)
                bar.refresh()
            elif kind == "error":
                error = str(ev.get("message", "unknown error"))
            else:
                final = ev
        rc = proc.wait(timeout=timeout_s)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        bar.close()
        t.join(timeout=5)
    if rc != 0 or error is not None or final is None:
        reason = error or (f"exit code {rc}" if rc != 0 else "no result event")
        last = "\n".join(f"  | {x}" for x in list(tail)[-12:])
        raise BlenderError(f"Blender command {command[0] if command else ''!s} failed: {reason}"
                           + (f" (exit code {rc})" if error and rc != 0 else "")
                           + (f"\nlast stderr lines:\n{last}" if last else ""))
    return final


def render_dataset(scene_spec: str, config_path: Path | str, out_dir: Path | str, cache_dir: Path | str,
                   scale: Optional[float] = None, progress: bool = True, ground: str = "textured",
                   up_axis: Optional[str] = None, extra: Sequence[str] = ()) -> Path:
    """Render a dataset through Blender's ``render-dataset`` command; returns the dataset folder.

    ``up_axis``: the mesh file's up axis (default per format); ``extra``: more ``render-dataset`` arguments."""
    cmd = ["render-dataset", "--scene", scene_spec, "--config", str(config_path), "--out", str(out_dir)]
    if scale is not None:
        cmd += ["--scale", repr(float(scale))]
    if ground != "textured":
        cmd += ["--ground", ground]
    if up_axis:
        cmd += ["--up-axis", up_axis]
    cmd += list(extra)
    ev = run_headless(cmd, cache_dir, progress=progress, desc="render")
    return Path(ev.get("dataset", out_dir))
