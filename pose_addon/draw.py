"""Viewport drawing with the ``gpu`` module: frustums of the lightweight pose list.

Handlers are added on register and removed on unregister; nothing is drawn in background mode.
"""
import bpy
import numpy as np

from .core.cameras import Intrinsics

_handles: list = []


def frustum_lines(cam_from_world: np.ndarray, intr: Intrinsics, depth: float = 1.5) -> np.ndarray:
    """Line segments ``[16, 3]`` (world) of a camera frustum: 4 rays from the centre and the image rectangle."""
    R, t = cam_from_world[:3, :3], cam_from_world[:3, 3]
    c = -R.T @ t
    corners_px = np.array([[-0.5, -0.5], [intr.width - 0.5, -0.5], [intr.width - 0.5, intr.height - 0.5],
                           [-0.5, intr.height - 0.5]])
    rays = np.c_[(corners_px - [intr.cx, intr.cy]) / [intr.fx, intr.fy], np.ones(4)] * depth
    pts = rays @ R + c  # R^T applied to row vectors
    segs = []
    for i in range(4):
        segs += [c, pts[i], pts[i], pts[(i + 1) % 4]]
    return np.array(segs)


def _draw_pose_list():
    scene = bpy.context.scene
    settings = getattr(scene, "pose_tools", None)
    if settings is None or not settings.show_frustums or len(settings.poses) == 0:
        return
    import gpu
    from gpu_extras.batch import batch_for_shader

    intr = settings.render.to_config(settings.sampling).intrinsics()
    coords = np.concatenate([frustum_lines(np.array(p.cam_from_world).reshape(4, 4), intr)
                             for p in settings.poses])
    shader = gpu.shader.from_builtin("UNIFORM_COLOR")
    batch = batch_for_shader(shader, "LINES", {"pos": [tuple(map(float, p)) for p in coords]})
    shader.uniform_float("color", (1.0, 0.6, 0.1, 1.0))
    batch.draw(shader)


def register_handlers() -> None:
    if bpy.app.background:
        return
    _handles.append(bpy.types.SpaceView3D.draw_handler_add(_draw_pose_list, (), "WINDOW", "POST_VIEW"))


def unregister_handlers() -> None:
    while _handles:
        bpy.types.SpaceView3D.draw_handler_remove(_handles.pop(), "WINDOW")
