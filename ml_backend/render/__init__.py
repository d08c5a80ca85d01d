"""Worker-side rendering of a dataset's ``scene.glb`` (no Blender): RGB from the baked textures and planar depth.

See :mod:`ml_backend.render.gl` (moderngl on Mesa's EGL, software llvmpipe on CPU-only machines).
"""
from .gl import RendererUnavailable, SceneRenderer, load_scene_meshes

__all__ = ["SceneRenderer", "RendererUnavailable", "load_scene_meshes"]
