"""Blender-side tests: they run inside Blender (or the bpy stand-in), one module per process, through
``tests/test_blender_suite.py``. Where ``bpy`` is not importable (the worker environment) they are not collected."""
import importlib.util

import pytest

HAVE_BPY = importlib.util.find_spec("bpy") is not None
collect_ignore_glob = [] if HAVE_BPY else ["test_*.py"]

if HAVE_BPY:

    @pytest.fixture
    def empty_scene():
        """A cleared current file (objects, meshes, materials, collections removed)."""
        from pose_addon.blender import scene_io

        scene_io.reset_scene()
        import bpy

        return bpy.context.scene


#: the module name Blender gives the installed extension
INSTALLED = "bl_ext.user_default.building_pose"


@pytest.fixture(scope="module")
def installed_extension(tmp_path_factory):
    """Build the zip with build.py, install and enable it like a user; returns the extension's module."""
    out_dir = tmp_path_factory.mktemp("dist")
    import importlib
    import subprocess
    import sys
    from pathlib import Path

    import bpy

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, str(root / "build.py"), "--out", str(out_dir)], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    zip_path = next(Path(out_dir).glob("building_pose-*.zip"))
    bpy.ops.wm.read_userpref()
    assert "FINISHED" in bpy.ops.extensions.package_install_files(filepath=str(zip_path), repo="user_default",
                                                                  enable_on_install=True)
    return importlib.import_module(INSTALLED)
