"""Runs each Blender-side test module (``tests/blender/test_*.py``) in its own Blender process.

Uses the ``tools/blender`` stand-in (bpy in ``.venv-blender``) with HOME and caches in a temporary folder;
skipped when that environment is missing.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLENDER_PY = ROOT / ".venv-blender" / "bin" / "python"
MODULES = sorted(p.name for p in (ROOT / "tests" / "blender").glob("test_*.py"))


@pytest.mark.blender
@pytest.mark.parametrize("module", MODULES)
def test_blender_module(module, tmp_path):
    if not BLENDER_PY.is_file():
        pytest.skip(f"Blender environment missing: {BLENDER_PY} (create it with scripts/requirements-blender.txt)")
    env = dict(os.environ)
    for k in ("HOME", "XDG_CACHE_HOME", "MESA_SHADER_CACHE_DIR"):
        env[k] = str(tmp_path / k.lower())
        os.makedirs(env[k], exist_ok=True)
    env["TMPDIR"] = str(tmp_path)
    env.pop("PYTHONPATH", None)
    cmd = [str(ROOT / "tools" / "blender"), "-b", "--python", str(ROOT / "tools" / "run_blender_pytest.py"),
           "--python-exit-code", "1", "--", f"tests/blender/{module}", "-q",
           f"--basetemp={tmp_path / 'pytest'}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout[-20000:] + "\n--- stderr ---\n" + proc.stderr[-8000:]
    assert proc.returncode == 0, f"Blender-side {module} failed (exit {proc.returncode}):\n{out}"
