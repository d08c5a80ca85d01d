"""The worker's Python environment, made or checked from Blender without blocking it (no ``bpy`` here).

:class:`EnvTask` runs a list of commands in a background thread, appends their output to a log file and keeps a
progress estimate and the last line; :func:`create_commands` makes a virtual environment and installs the worker
package from its source folder into it; :func:`check_command` asks an interpreter which of the worker's modules it
imports. The caller polls :meth:`EnvTask.poll` from a timer.
"""
from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Optional

#: what the worker needs, and what each is for
REQUIRED_MODULES = (("numpy", "arrays"), ("cv2", "OpenCV"), ("torch", "PyTorch"), ("h5py", "feature databases"),
                    ("poselib", "robust PnP"), ("pycolmap", "COLMAP tools"), ("kornia", "learned features"),
                    ("ml_backend", "the worker itself"))

CHECK_SCRIPT = r"""
import importlib, json, sys
out = {"python": sys.version.split()[0], "modules": {}}
for name in sys.argv[1:]:
    try:
        m = importlib.import_module(name)
        out["modules"][name] = {"ok": True, "version": str(getattr(m, "__version__", ""))}
    except BaseException as e:
        out["modules"][name] = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
print("BUILDING_POSE_CHECK " + json.dumps(out))
"""


def _clean_env() -> dict:
    env = dict(os.environ)
    for k in ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONNOUSERSITE"):
        env.pop(k, None)  # Blender's Python settings must not leak into another interpreter
    env["PYTHONUNBUFFERED"] = "1"
    return env


def env_python(env_dir: Path) -> Path:
    """The interpreter of a virtual environment folder."""
    env_dir = Path(env_dir)
    win = env_dir / "Scripts" / "python.exe"
    return win if win.is_file() else env_dir / "bin" / "python"


def create_commands(base_python: str, env_dir: Path, source: Path, pip_options: str = "") -> list[tuple[str, list]]:
    """(stage, command) pairs that make ``env_dir`` and install the worker from ``source`` (a folder holding the
    worker's ``pyproject.toml``). Raises ValueError naming what is wrong with the inputs."""
    import shlex

    source = Path(source)
    if not (source / "pyproject.toml").is_file():
        raise ValueError(f"{source} holds no pyproject.toml: choose the Building Pose source folder (the one with "
                         "ml_backend/ and pyproject.toml)")
    if not Path(base_python).is_file():
        raise ValueError(f"Base Python {base_python} does not exist")
    py = str(env_python(env_dir))
    return [("Creating the virtual environment", [str(base_python), "-m", "venv", str(env_dir)]),
            ("Installing the worker and its packages", [py, "-m", "pip", "install", "--progress-bar", "off",
                                                         *shlex.split(pip_options), str(source)])]


def check_command(python: str) -> list:
    return [str(python), "-c", CHECK_SCRIPT, *[m for m, _ in REQUIRED_MODULES]]


def parse_check(output: str) -> Optional[dict]:
    """The check result printed by :data:`CHECK_SCRIPT`, or None."""
    for line in output.splitlines():
        if line.startswith("BUILDING_POSE_CHECK "):
            return json.loads(line[len("BUILDING_POSE_CHECK "):])
    return None


def missing_modules(check: dict) -> list[str]:
    """``"cv2 (OpenCV): ModuleNotFoundError: ..."`` for every module the check could not import."""
    purpose = dict(REQUIRED_MODULES)
    return [f"{m} ({purpose.get(m, '')}): {r.get('error', '')}" for m, r in check.get("modules", {}).items()
            if not r.get("ok")]


class EnvTask:
    """Commands run one after the other in a thread; output appended to ``log_path``.

    ``progress`` (0..1) advances per command and, inside a pip install, with every package pip reports;
    ``state`` is ``running``, ``done``, ``failed`` or ``cancelled``; ``message`` the last line or the failure."""

    def __init__(self, commands: list[tuple[str, list]], log_path: Path, expected_lines: int = 60,
                 extra_env: Optional[dict] = None):
        self.commands, self.log_path, self.expected = commands, Path(log_path), max(expected_lines, 1)
        self.extra_env = dict(extra_env or {})
        self.state, self.message, self.progress, self.stage = "running", "", 0.0, ""
        self.output: list[str] = []
        self._proc: Optional[subprocess.Popen] = None
        self._cancel = False
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="building-pose-env", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        n = len(self.commands)
        with open(self.log_path, "a", encoding="utf-8") as log:
            for i, (stage, cmd) in enumerate(self.commands):
                self.stage, self.progress = stage, i / n
                log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {stage}: {' '.join(cmd[:6])}"
                          f"{' ...' if len(cmd) > 6 else ''}\n")
                log.flush()
                try:
                    # run from the log's folder: the current directory must not add modules to the interpreter
                    self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                  stdin=subprocess.DEVNULL, env={**_clean_env(), **self.extra_env},
                                                  cwd=str(self.log_path.parent))
                except OSError as e:
                    self.state, self.message = "failed", f"{stage} failed: {e}"
                    log.write(self.message + "\n")
                    return
                seen = 0
                for raw in self._proc.stdout:
                    line = raw.decode("utf-8", "replace").rstrip()
                    log.write(line + "\n")
                    log.flush()
                    self.output.append(line)
                    if line.strip():
                        self.message = line.strip()[:200]
                    if line.startswith(("Collecting", "Processing", "Building", "Installing", "Successfully")):
                        seen += 1
                        self.progress = (i + min(seen / self.expected, 0.95)) / n
                code = self._proc.wait()
                if self._cancel:
                    self.state, self.message = "cancelled", f"Cancelled during: {stage}"
                    log.write(self.message + "\n")
                    return
                if code != 0:
                    self.state = "failed"
                    self.message = f"{stage} failed (exit {code}): {self.message}; see {self.log_path}"
                    log.write(self.message + "\n")
                    return
            self.state, self.progress, self.stage = "done", 1.0, "Done"
            log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} done\n")

    def cancel(self) -> None:
        self._cancel = True
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()

    def wait(self, timeout: Optional[float] = None) -> str:
        self._thread.join(timeout)
        return self.state

    @property
    def finished(self) -> bool:
        return self.state != "running"
