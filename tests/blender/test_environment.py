"""The worker's environment from the preferences: check an interpreter (which of torch, cv2, ml_backend... it
imports, shown in the panels), create one in the extension's user folder from a source folder (with progress and
a log), and clear errors for bad inputs. Installed from the built zip."""
import json
import sys
from pathlib import Path

import bpy
import pytest

ROOT = Path(__file__).resolve().parents[2]
PKG = "bl_ext.user_default.building_pose"
WORKER_PY = ROOT / ".venv" / "bin" / "python"


@pytest.fixture(scope="module")
def prefs(installed_extension):
    return bpy.context.preferences.addons[PKG].preferences


def _summary(prefs):
    import importlib

    return importlib.import_module(PKG + ".prefs").environment_summary(prefs)


def test_check_names_what_is_missing(prefs):
    prefs.worker_python = sys.executable  # Blender's Python: numpy, but no torch or cv2
    assert "FINISHED" in bpy.ops.building_pose.check_environment()
    check = json.loads(prefs.env_check)
    assert check["modules"]["numpy"]["ok"]
    for name in ("torch", "cv2"):
        assert not check["modules"][name]["ok"] and "ModuleNotFoundError" in check["modules"][name]["error"]
    lines = _summary(prefs)
    assert any(line.startswith("Missing torch (PyTorch)") for line in lines)
    assert not any(line.startswith("OK") for line in lines)


@pytest.mark.skipif(not WORKER_PY.is_file(), reason=f"worker environment missing: {WORKER_PY}")
def test_check_accepts_the_worker_environment(prefs):
    prefs.worker_python = str(WORKER_PY)
    assert "FINISHED" in bpy.ops.building_pose.check_environment()
    lines = _summary(prefs)
    assert len(lines) == 1 and lines[0].startswith("OK") and "ml_backend" in lines[0] and "torch" in lines[0]


def test_check_of_a_missing_interpreter_is_refused(prefs):
    prefs.worker_python = "/no/such/python"
    with pytest.raises(RuntimeError, match="does not exist"):
        bpy.ops.building_pose.check_environment()


#: a PEP 517 backend that needs nothing installed (offline, no setuptools/wheel): one pure-Python wheel
BACKEND = """
import base64, hashlib, zipfile
from pathlib import Path

NAME, VERSION = "ml_backend_standin", "0.0.1"


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = f"{NAME}-{VERSION}-py3-none-any.whl"
    info = f"{NAME}-{VERSION}.dist-info"
    files = {"ml_backend/__init__.py": Path("ml_backend/__init__.py").read_bytes(),
             f"{info}/METADATA": f"Metadata-Version: 2.1\\nName: ml-backend-standin\\nVersion: {VERSION}\\n".encode(),
             f"{info}/WHEEL": b"Wheel-Version: 1.0\\nGenerator: standin\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"}
    record = []
    with zipfile.ZipFile(Path(wheel_directory) / name, "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{path},sha256={digest},{len(data)}")
        z.writestr(f"{info}/RECORD", "\\n".join(record + [f"{info}/RECORD,,"]) + "\\n")
    return name
"""


def test_create_environment_from_a_source_folder(prefs, tmp_path):
    """A tiny stand-in for the worker's source (installing the real one needs torch & co. from an index): the
    venv is made in the extension's user folder, the package installed, the log written, the interpreter set."""
    src = tmp_path / "src"
    (src / "ml_backend").mkdir(parents=True)
    (src / "ml_backend" / "__init__.py").write_text("__version__ = '0.0-test'\n")
    (src / "pyproject.toml").write_text('[build-system]\nrequires = []\nbuild-backend = "standin_backend"\n'
                                        'backend-path = ["."]\n')
    (src / "standin_backend.py").write_text(BACKEND)
    prefs.worker_source = str(src)
    prefs.base_python = sys.executable
    prefs.pip_options = "--no-index --no-build-isolation"
    assert "FINISHED" in bpy.ops.building_pose.create_environment()
    new_python = Path(prefs.worker_python)
    assert new_python.is_file() and "worker-env" in str(new_python)
    import importlib

    p = importlib.import_module(PKG + ".prefs")
    log = p.log_path().read_text()
    assert "Creating the virtual environment" in log and "Successfully installed ml-backend-standin" in log
    assert p._TASK["task"].progress == 1.0
    assert "FINISHED" in bpy.ops.building_pose.check_environment()
    check = json.loads(prefs.env_check)
    assert check["modules"]["ml_backend"] == {"ok": True, "version": "0.0-test"}
    prefs.worker_source = str(tmp_path / "nowhere")
    with pytest.raises(RuntimeError, match="holds no pyproject.toml"):
        bpy.ops.building_pose.create_environment()
