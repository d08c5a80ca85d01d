"""Viewport drawing with the ``gpu`` module: frustums of the lightweight pose list and of estimated cameras
(colour per method, white ground truth, a line from each estimate to its truth, error labels) and, looking
through an estimated camera, its reprojected keypoints and inlier correspondences over the photo.

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


def estimate_segments() -> list[tuple[tuple, np.ndarray]]:
    """(colour, line segments [2K, 3]) for every estimated camera, its truth frustum and the link between them."""
    import json

    from . import estimates
    from .blender import camera as bcam

    out = []
    for obj in estimates.estimated_cameras():
        intr = bcam.intrinsics_at_size(obj, int(obj.get("pose_width", 640)), int(obj.get("pose_height", 480)))
        T = bcam.get_cam_from_world(obj)
        out.append((estimates.method_color(obj.get("pose_method", "")), frustum_lines(T, intr)))
        if "pose_truth" in obj:
            Tt = np.array(json.loads(obj["pose_truth"]))
            out.append((estimates.METHOD_COLORS["truth"], frustum_lines(Tt, intr)))
            c_est, c_true = -T[:3, :3].T @ T[:3, 3], -Tt[:3, :3].T @ Tt[:3, 3]
            out.append(((1.0, 0.2, 0.2, 1.0), np.array([c_est, c_true])))
    return out


def _draw_estimates():
    settings = getattr(bpy.context.scene, "pose_tools", None)
    if settings is None or not settings.show_estimates:
        return
    import gpu
    from gpu_extras.batch import batch_for_shader

    shader = gpu.shader.from_builtin("UNIFORM_COLOR")
    for color, segs in estimate_segments():
        batch = batch_for_shader(shader, "LINES", {"pos": [tuple(map(float, p)) for p in segs]})
        shader.uniform_float("color", color)
        batch.draw(shader)


def _draw_estimate_labels():
    """Error labels next to estimated cameras, and 2D points over the photo when looking through one."""
    settings = getattr(bpy.context.scene, "pose_tools", None)
    if settings is None or not settings.show_estimates:
        return
    import blf
    from bpy_extras.view3d_utils import location_3d_to_region_2d

    from . import estimates

    region, rv3d = bpy.context.region, bpy.context.region_data
    if region is None or rv3d is None:
        return
    for obj in estimates.estimated_cameras():
        p = location_3d_to_region_2d(region, rv3d, obj.matrix_world.translation)
        if p is None:
            continue
        text = obj.get("pose_method", "")
        if "pose_t_err_m" in obj:
            text += f"  {obj['pose_t_err_m']:.3f} m  {obj['pose_R_err_deg']:.2f} deg"
        blf.position(0, p.x + 6, p.y + 6, 0)
        blf.size(0, 12)
        blf.draw(0, text)
    cam = bpy.context.scene.camera
    if cam is None or rv3d.view_perspective != "CAMERA" or "pose_points" not in cam:
        return
    frame = [cam.matrix_world @ v for v in cam.data.view_frame(scene=bpy.context.scene)]
    corners = [location_3d_to_region_2d(region, rv3d, v) for v in frame]
    if any(c is None for c in corners):
        return
    xs, ys = [c.x for c in corners], [c.y for c in corners]
    W, H = int(cam.get("pose_width", 1)), int(cam.get("pose_height", 1))

    def to_region(u, v):
        return (min(xs) + (u + 0.5) / W * (max(xs) - min(xs)), max(ys) - (v + 0.5) / H * (max(ys) - min(ys)))

    import gpu
    from gpu_extras.batch import batch_for_shader

    shader = gpu.shader.from_builtin("UNIFORM_COLOR")
    colors = {"inliers": (0.1, 1.0, 0.3, 1.0), "keypoints": (1.0, 0.3, 0.9, 1.0)}
    for key, uv in estimates.photo_points(cam).items():
        if len(uv):
            batch = batch_for_shader(shader, "POINTS", {"pos": [to_region(u, v) for u, v in uv]})
            shader.uniform_float("color", colors[key])
            gpu.state.point_size_set(4.0)
            batch.draw(shader)


def register_handlers() -> None:
    if bpy.app.background:
        return
    add = bpy.types.SpaceView3D.draw_handler_add
    _handles.append((add(_draw_pose_list, (), "WINDOW", "POST_VIEW"), "WINDOW"))
    _handles.append((add(_draw_estimates, (), "WINDOW", "POST_VIEW"), "WINDOW"))
    _handles.append((add(_draw_estimate_labels, (), "WINDOW", "POST_PIXEL"), "WINDOW"))


def unregister_handlers() -> None:
    while _handles:
        handle, region = _handles.pop()
        bpy.types.SpaceView3D.draw_handler_remove(handle, region)
