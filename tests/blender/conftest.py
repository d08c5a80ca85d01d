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
