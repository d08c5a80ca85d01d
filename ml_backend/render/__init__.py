"""Worker-side rendering of a dataset's ``scene.glb`` (no Blender): RGB from the baked textures and planar depth.

:class:`SceneRenderer` draws in a child process (:mod:`ml_backend.render.process`) so the OpenGL driver's LLVM
never meets torch's; :mod:`ml_backend.render.gl` is the moderngl renderer itself (Mesa's EGL, software llvmpipe on
CPU-only machines).
"""
from .gl import RendererUnavailable, load_scene_meshes
from .process import RenderError, SceneRenderer

__all__ = ["SceneRenderer", "RendererUnavailable", "RenderError", "load_scene_meshes"]
