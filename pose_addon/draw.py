"""Viewport drawing with the ``gpu`` module: frustums of the lightweight pose list and of estimated cameras
(colour per method, white ground truth, a line from each estimate to its truth, error labels) and, looking
through an estimated camera, its reprojected keypoints and inlier correspondences over the photo.

A redraw only draws: the line geometry (one batch per colour) and the label anchors are built once and rebuilt
when the cache's key changes. The key is a version counter bumped by :func:`invalidate` (called by the operators
that make, move or delete cameras, and by a depsgraph handler when a camera object changes) plus the number of
cameras. Handlers are added on register and removed on unregister; nothing is drawn in background mode.
"""
import bpy
import numpy as np

from .core.cameras import Intrinsics

_handles: list = []
#: label anchors drawn at most per redraw (the ones nearest the view centre)
MAX_LABELS = 100
_state = {"version": 0}
_cache: dict = {"poses": (None, None), "estimates": (None, None)}


def invalidate() -> None:
    """Mark the cached geometry stale (cameras added, moved, removed or compared)."""
    _state["version"] += 1


def frustum_lines(cam_from_world: np.ndarray, intr: Intrinsics, depth: float = 1.5) -> np.ndarray:
    """Line segments ``[16, 3]`` (world) of a camera frustum: 4 rays from the centre and the image rectangle."""
    return frustum_lines_many(np.asarray(cam_from_world, np.float64)[None], intr, depth)[0]


def frustum_lines_many(cam_from_world: np.ndarray, intr, depth: float = 1.5) -> np.ndarray:
    """Frustum segments ``[N, 16, 3]`` (world) of ``N`` cameras ``[N, 4, 4]`` (OpenCV axes) sharing ``intr`` or
    with one :class:`Intrinsics` each (a list)."""
    T = np.asarray(cam_from_world, np.float64).reshape(-1, 4, 4)
    intrs = intr if isinstance(intr, (list, tuple)) else [intr] * len(T)
    k = np.array([(i.width, i.height, i.fx, i.fy, i.cx, i.cy) for i in intrs], np.float64).reshape(-1, 6)
    R, t = T[:, :3, :3], T[:, :3, 3]
    c = -np.einsum("nji,nj->ni", R, t)  # centres: -R^T t
    w, h = k[:, 0] - 0.5, k[:, 1] - 0.5
    px = np.stack([np.stack([-0.5 + 0 * w, -0.5 + 0 * h], 1), np.stack([w, -0.5 + 0 * h], 1), np.stack([w, h], 1),
                   np.stack([-0.5 + 0 * w, h], 1)], 1)  # [N, 4, 2] image corners
    rays = np.concatenate([(px - k[:, None, 4:6]) / k[:, None, 2:4], np.ones((len(T), 4, 1))], axis=2)
    far = np.einsum("nkj,nji->nki", rays * depth, R) + c[:, None, :]  # R^T applied to row vectors
    segs = np.empty((len(T), 16, 3))
    for i in range(4):
        segs[:, 4 * i] = c
        segs[:, 4 * i + 1] = far[:, i]
        segs[:, 4 * i + 2] = far[:, i]
        segs[:, 4 * i + 3] = far[:, (i + 1) % 4]
    return segs


def cams_from_world(objects) -> np.ndarray:
    """``cam_from_world`` ``[N, 4, 4]`` (OpenCV axes) of camera objects, from their ``matrix_world`` in one go
    (the vectorized form of :func:`.blender.camera.get_cam_from_world`)."""
    M = np.array([o.matrix_world for o in objects], np.float64).reshape(-1, 4, 4)
    R = M[:, :3, :3] / np.linalg.norm(M[:, :3, :3], axis=1, keepdims=True) * [1.0, -1.0, -1.0]  # Blender -> OpenCV
    out = np.zeros_like(M)
    out[:, :3, :3] = np.transpose(R, (0, 2, 1))
    out[:, :3, 3] = -np.einsum("nji,nj->ni", R, M[:, :3, 3])
    out[:, 3, 3] = 1.0
    return out


def frustum_depth(context=None) -> float:
    """Frustum length: a tenth of the target's longest side (1.5 m for a 15 m building)."""
    from .scene_utils import target_objects, world_bounds

    context = context or bpy.context
    objs = target_objects(context, selected_only=False) if context.scene else []
    if not objs:
        return 1.5
    b = world_bounds(objs)
    return float(np.clip(0.1 * np.max(b[:, 1].max(0) - b[:, 0].min(0)), 0.01, 100.0))


def estimate_segments(depth: float | None = None) -> list[tuple[tuple, np.ndarray]]:
    """(colour, line segments [2K, 3]) for every estimated camera, its truth frustum and the link between them."""
    import json

    from . import estimates
    from .blender import camera as bcam

    depth = frustum_depth() if depth is None else depth
    cams = estimates.estimated_cameras()
    if not cams:
        return []
    T = cams_from_world(cams)
    intrs = [bcam.intrinsics_at_size(o, int(o.get("pose_width", 640)), int(o.get("pose_height", 480))) for o in cams]
    est = frustum_lines_many(T, intrs, depth)
    with_truth = [n for n, o in enumerate(cams) if "pose_truth" in o]
    truth = {}
    if with_truth:
        Tt = np.array([json.loads(cams[n]["pose_truth"]) for n in with_truth], np.float64)
        segs = frustum_lines_many(Tt, [intrs[n] for n in with_truth], depth)
        truth = {n: (Tt[j], segs[j]) for j, n in enumerate(with_truth)}
    out = []
    for n, obj in enumerate(cams):
        out.append((estimates.method_color(obj.get("pose_method", "")), est[n]))
        if n in truth:
            Tt, segs = truth[n]
            out.append((estimates.METHOD_COLORS["truth"], segs))
            out.append(((1.0, 0.2, 0.2, 1.0), np.array([est[n][0], -Tt[:3, :3].T @ Tt[:3, 3]])))
    return out


def group_by_colour(segments: list[tuple[tuple, np.ndarray]]) -> dict:
    """``{colour: float32 [M, 3]}``: all segments of one colour in one array (one batch, one draw call)."""
    groups: dict = {}
    for colour, segs in segments:
        groups.setdefault(tuple(colour), []).append(np.asarray(segs, np.float32).reshape(-1, 3))
    return {k: np.concatenate(v) for k, v in groups.items()}


def estimate_labels() -> tuple[np.ndarray, list[str]]:
    """Label anchors ``[N, 3]`` (camera centres, world) and texts of the estimated cameras."""
    from . import estimates

    cams = estimates.estimated_cameras()
    pos = np.array([tuple(o.matrix_world.translation) for o in cams], np.float64).reshape(-1, 3)
    texts = []
    for o in cams:
        text = o.get("pose_method", "")
        if "pose_t_err_m" in o:
            text += f"  {o['pose_t_err_m']:.3f} m  {o['pose_R_err_deg']:.2f} deg"
        texts.append(text)
    return pos, texts


class GeometryCache:
    """Per-colour line arrays (and GPU batches when a GPU context exists) kept until the key changes."""

    def __init__(self, build):
        self.build, self.key, self.lines, self.batches, self.extra = build, None, {}, None, None

    def get(self, key, with_gpu: bool):
        """The cached (lines, batches); rebuilt only when ``key`` differs from the last one."""
        if key != self.key:
            self.lines, self.extra = self.build()
            self.batches, self.key = None, key
        if with_gpu and self.batches is None:
            import gpu
            from gpu_extras.batch import batch_for_shader

            shader = gpu.shader.from_builtin("UNIFORM_COLOR")
            self.batches = [(colour, batch_for_shader(shader, "LINES", {"pos": pts}))
                            for colour, pts in self.lines.items() if len(pts)]
        return self.lines, self.batches


def _build_poses():
    settings = bpy.context.scene.pose_tools
    T = np.array([p.cam_from_world for p in settings.poses], np.float64).reshape(-1, 4, 4)
    segs = frustum_lines_many(T, settings.render.intrinsics(), frustum_depth()) if len(T) else np.zeros((0, 16, 3))
    return {(1.0, 0.6, 0.1, 1.0): segs.reshape(-1, 3).astype(np.float32)}, None


def _build_estimates():
    return group_by_colour(estimate_segments()), estimate_labels()


POSES = GeometryCache(_build_poses)
ESTIMATES = GeometryCache(_build_estimates)


def _estimates_key():
    from . import estimates

    col = bpy.data.collections.get(estimates.COLLECTION)
    return (_state["version"], len(col.objects) if col else 0)


def _draw_batches(batches) -> None:
    import gpu

    shader = gpu.shader.from_builtin("UNIFORM_COLOR")
    shader.bind()
    for colour, batch in batches:
        shader.uniform_float("color", colour)
        batch.draw(shader)


def _draw_pose_list():
    settings = getattr(bpy.context.scene, "pose_tools", None)
    if settings is None or not settings.show_frustums or len(settings.poses) == 0:
        return
    _, batches = POSES.get((_state["version"], len(settings.poses), bpy.context.scene.name), True)
    _draw_batches(batches)


def _draw_estimates():
    settings = getattr(bpy.context.scene, "pose_tools", None)
    if settings is None or not settings.show_estimates:
        return
    _, batches = ESTIMATES.get(_estimates_key(), True)
    _draw_batches(batches)


def visible_labels(pos: np.ndarray, perspective_matrix: np.ndarray, width: int, height: int,
                   limit: int = MAX_LABELS) -> tuple[np.ndarray, np.ndarray]:
    """(indices, region xy ``[K, 2]``) of the label anchors in front of the view and inside the region, at most
    ``limit`` of them, the nearest to the region's centre first (one matrix product for all anchors)."""
    if not len(pos):
        return np.zeros(0, int), np.zeros((0, 2))
    h = np.c_[pos, np.ones(len(pos))] @ np.asarray(perspective_matrix, np.float64).T
    front = h[:, 3] > 1e-6
    ndc = h[:, :2] / np.where(front, h[:, 3], 1.0)[:, None]
    xy = (ndc + 1.0) * 0.5 * [width, height]
    ok = front & (np.abs(ndc) <= 1.0).all(1)
    idx = np.flatnonzero(ok)
    if len(idx) > limit:
        d = np.linalg.norm(ndc[idx], axis=1)
        idx = idx[np.argsort(d)[:limit]]
    return idx, xy[idx]


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
    _, _ = ESTIMATES.get(_estimates_key(), False)
    pos, texts = ESTIMATES.extra
    idx, xy = visible_labels(pos, np.array(rv3d.perspective_matrix), region.width, region.height)
    blf.size(0, 12)
    for i, (x, y) in zip(idx, xy):
        blf.position(0, float(x) + 6, float(y) + 6, 0)
        blf.draw(0, texts[i])
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


@bpy.app.handlers.persistent
def _on_depsgraph_update(scene, depsgraph) -> None:
    """A camera object or camera data changed (moved, edited, added, deleted): the overlay is rebuilt."""
    for u in depsgraph.updates:
        idb = u.id
        if isinstance(idb, bpy.types.Camera) or isinstance(idb, bpy.types.Collection) or \
                (isinstance(idb, bpy.types.Object) and idb.type == "CAMERA"):
            invalidate()
            return


@bpy.app.handlers.persistent
def _on_load(*_args) -> None:
    invalidate()


def register_handlers() -> None:
    bpy.app.handlers.depsgraph_update_post.append(_on_depsgraph_update)
    bpy.app.handlers.load_post.append(_on_load)
    if bpy.app.background:
        return
    add = bpy.types.SpaceView3D.draw_handler_add
    _handles.append((add(_draw_pose_list, (), "WINDOW", "POST_VIEW"), "WINDOW"))
    _handles.append((add(_draw_estimates, (), "WINDOW", "POST_VIEW"), "WINDOW"))
    _handles.append((add(_draw_estimate_labels, (), "WINDOW", "POST_PIXEL"), "WINDOW"))


def unregister_handlers() -> None:
    for lst, fn in ((bpy.app.handlers.depsgraph_update_post, _on_depsgraph_update),
                    (bpy.app.handlers.load_post, _on_load)):
        if fn in lst:
            lst.remove(fn)
    while _handles:
        handle, region = _handles.pop()
        bpy.types.SpaceView3D.draw_handler_remove(handle, region)
