"""Run the Blender extension's headless entry point as a child process and follow its JSON-line events.

Protocol (stdout, one JSON object per line): ``{"event": "progress", "done", "total", "message"}``,
``{"event": "done", ...}``, ``{"event": "error", "message"}``; other stdout lines (Blender's own chatter) are
ignored (:mod:`.child_process`). Blender gets its own HOME / XDG_CACHE_HOME / MESA_SHADER_CACHE_DIR under a cache
folder so it never writes to the user's configuration, and no ``PYTHONPATH``: its Python must not see the worker's
packages.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Optional

from .child_process import ChildError, child_env, run_events
from .paths import REPO_ROOT

__all__ = ["BlenderError", "find_blender", "run_headless", "render_dataset", "REPO_ROOT"]

ENTRY = REPO_ROOT / "tools" / "blender_entry.py"


class BlenderError(ChildError):
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
    return child_env({"HOME": str(home / "home"), "XDG_CACHE_HOME": str(home / "xdg-cache"),
                      "MESA_SHADER_CACHE_DIR": str(home / "mesa")}, pythonpath=False)


def run_headless(command: Sequence[str], cache_dir: Path | str, progress: bool = True,
                 on_event: Optional[Callable[[dict], None]] = None, desc: str = "blender",
                 timeout_s: Optional[float] = None) -> dict:
    """Run ``blender -b --python tools/blender_entry.py --python-exit-code 1 -- COMMAND...``.

    Args:
        command: the headless command and its arguments (e.g. ``["render-dataset", "--scene", ...]``).
        cache_dir: folder for Blender's isolated HOME and caches.
        progress: show a terminal bar fed by the progress events (inside a job they are reported either way).
        on_event: called with every parsed event.
        desc: the step name of its progress.

    Returns:
        The final ``done`` (or other non-progress) event.

    Raises:
        BlenderError: Blender missing, a non-zero exit, an ``error`` event, or no final event; the message holds
            the error event's text and the last stderr lines.
    """
    exe = find_blender()
    cmd = [str(exe), "-b", "--python", str(ENTRY), "--python-exit-code", "1", "--", *map(str, command)]
    try:
        res = run_events(cmd, env=_isolated_env(Path(cache_dir)), on_event=on_event, progress=desc,
                         show_progress=progress, unit="frame", timeout_s=timeout_s, tail_lines=20)
    except ChildError as e:
        raise BlenderError(f"Blender {exe}: {e}") from e
    if not res.ok:
        raise BlenderError(str(res.failure(f"Blender command {command[0] if command else ''!s}")))
    assert res.final is not None
    return res.final


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
