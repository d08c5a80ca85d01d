"""OpenGL renderer (moderngl, headless EGL) reproducing the dataset's pinhole camera exactly.

Camera model: the dataset's :class:`~pose_addon.core.cameras.Intrinsics` in OpenCV pixel convention (centre of
the top-left pixel at (0, 0)) and ``cam_from_world`` with OpenCV axes (+X right, +Y down, +Z forward). A camera
point ``(x, y, z)`` lands at ``u = fx x / z + cx``, ``v = fy y / z + cy``. OpenGL rasterizes pixel ``(i, j)`` at
its centre ``(i + 0.5, j + 0.5)`` in window coordinates, so the projection maps ``u -> x_win = u + 0.5`` and
``v -> y_win = H - (v + 0.5)`` (rows read back top-down). This is exactly Blender's convention once expressed in
OpenCV terms (``cx = W / 2 - 0.5``).

Depth is written by the fragment shader as the interpolated camera-space Z (planar depth along the optical axis,
metres) into a float32 colour attachment -- not read back from the non-linear depth buffer -- so it is the same
quantity Blender's Z pass stores. Pixels without a surface are 0.

This module draws in the calling process (:class:`GLRenderer`); the rest of the worker uses
:class:`ml_backend.render.process.SceneRenderer`, which runs it in a child process. Reason: creating a Mesa
llvmpipe EGL context loads the system's ``libLLVM`` into the process's global symbol scope (Mesa opens its
driver with ``RTLD_GLOBAL``); ``triton``'s ``libtriton.so`` (imported by ``torch._dynamo``, which torchvision and
timm import) carries its own, different LLVM whose exported symbols then bind to Mesa's copy, and its static
initializers crash (SIGSEGV, exit 139). Keeping the GL context out of processes that import torch removes the
collision instead of depending on import order.

Colour is the baked base-colour texture (unlit), optionally with a simple Lambert term; it is not a photometric
match of Cycles, only good enough for local-feature matching.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from pose_addon.core.cameras import Intrinsics

__all__ = ["RendererUnavailable", "MeshData", "load_scene_meshes", "opencv_projection", "GLRenderer"]


class RendererUnavailable(RuntimeError):
    """moderngl or an EGL/OpenGL context cannot be created here (the message says which)."""


@dataclass
class MeshData:
    """One textured triangle mesh in world coordinates (Blender world, Z up, metres).

    Attributes:
        vertices: ``[V, 3]`` float32 world positions.
        normals: ``[V, 3]`` float32 unit normals.
        uv: ``[V, 2]`` float32 texture coordinates (OpenGL: v = 0 at the image's bottom row) or None.
        faces: ``[F, 3]`` int32 vertex indices.
        texture: ``[h, w, 3]`` uint8 RGB, top row first, or None.
        color: ``[3]`` float32 base colour factor (multiplies the texture, or is the colour without one).
    """

    vertices: np.ndarray
    normals: np.ndarray
    uv: Optional[np.ndarray]
    faces: np.ndarray
    texture: Optional[np.ndarray]
    color: np.ndarray


def load_scene_meshes(path: Path | str) -> list[MeshData]:
    """Meshes of a glTF/GLB (or any trimesh-readable file) with node transforms applied.

    The dataset's ``scene.glb`` is exported Z up, so trimesh loads it directly in Blender world coordinates.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file holds no triangle mesh.
    """
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"scene mesh not found: {path}")
    scene = trimesh.load(str(path), force="scene")
    out = []
    for node in scene.graph.nodes_geometry:
        T, gname = scene.graph[node]
        g = scene.geometry[gname]
        if not isinstance(g, trimesh.Trimesh) or len(g.faces) == 0:
            continue
        g = g.copy()
        g.apply_transform(T)
        uv, tex, color = None, None, np.ones(3, np.float32)
        vis = g.visual
        if getattr(vis, "kind", None) == "texture":
            mat = vis.material
            img = getattr(mat, "baseColorTexture", None) or getattr(mat, "image", None)
            fac = getattr(mat, "baseColorFactor", None)
            if fac is not None:
                color = (np.asarray(fac, np.float32)[:3] / (255.0 if np.asarray(fac).dtype == np.uint8 else 1.0))
            if img is not None and vis.uv is not None:
                tex = np.asarray(img.convert("RGB"), np.uint8)
                uv = np.asarray(vis.uv, np.float32)
            elif getattr(mat, "main_color", None) is not None:
                color = np.asarray(mat.main_color, np.float32)[:3] / 255.0
        elif getattr(vis, "kind", None) in ("vertex", "face"):
            color = np.asarray(vis.main_color, np.float32)[:3] / 255.0
        out.append(MeshData(np.asarray(g.vertices, np.float32), np.asarray(g.vertex_normals, np.float32), uv,
                            np.asarray(g.faces, np.int32), tex, color))
    if not out:
        raise ValueError(f"{path} holds no triangle mesh")
    return out


def opencv_projection(intr: Intrinsics, near: float, far: float) -> np.ndarray:
    """``[4, 4]`` OpenGL clip-from-camera matrix for OpenCV camera axes and OpenCV pixel convention.

    ``clip = P @ [x, y, z, 1]`` with camera axes +X right, +Y down, +Z forward; after the perspective division
    ``x_ndc = 2 (u + 0.5) / W - 1`` and ``y_ndc = 1 - 2 (v + 0.5) / H`` with ``(u, v)`` the OpenCV pixel, and
    ``z_ndc`` in [-1, 1] between ``near`` and ``far``.
    """
    W, H = intr.width, intr.height
    P = np.zeros((4, 4))
    P[0, 0] = 2 * intr.fx / W
    P[0, 2] = 2 * (intr.cx + 0.5) / W - 1
    P[1, 1] = -2 * intr.fy / H
    P[1, 2] = 1 - 2 * (intr.cy + 0.5) / H
    P[2, 2] = (far + near) / (far - near)
    P[2, 3] = -2 * far * near / (far - near)
    P[3, 2] = 1.0
    return P


_VS = """
#version 330
uniform mat4 clip_from_world;
uniform mat4 cam_from_world;
in vec3 in_pos;
in vec3 in_normal;
in vec2 in_uv;
out vec2 v_uv;
out float v_z;
out vec3 v_normal;
void main() {
    vec4 pw = vec4(in_pos, 1.0);
    v_z = (cam_from_world * pw).z;
    v_uv = in_uv;
    v_normal = in_normal;
    gl_Position = clip_from_world * pw;
}
"""
_FS = """
#version 330
uniform sampler2D tex;
uniform bool has_tex;
uniform vec3 color;
uniform vec3 light_dir;
uniform float ambient;
in vec2 v_uv;
in float v_z;
in vec3 v_normal;
layout(location = 0) out vec4 out_color;
layout(location = 1) out float out_depth;
void main() {
    vec3 c = color;
    if (has_tex) c *= texture(tex, v_uv).rgb;
    float shade = ambient + (1.0 - ambient) * abs(dot(normalize(v_normal), light_dir));
    out_color = vec4(c * shade, 1.0);
    out_depth = v_z;
}
"""


class GLRenderer:
    """Renders a scene mesh at OpenCV poses in this process: ``render(cam_from_world, intrinsics) -> (rgb, depth)``.

    Never create one in a process that imports (or will import) torch: see the module docstring and
    :class:`ml_backend.render.process.SceneRenderer`.

    Args:
        scene: path of a glTF/GLB, or meshes from :func:`load_scene_meshes`.
        ambient: 1.0 = unlit base colour; below 1, a headlight-free Lambert term with ``light_dir`` (world) is
            mixed in.
        backend: moderngl context backend (``"egl"`` headless; ``None`` lets moderngl choose).

    Raises:
        RendererUnavailable: moderngl is not installed or no OpenGL 3.3 context can be created.
    """

    def __init__(self, scene: Path | str | list[MeshData], ambient: float = 1.0,
                 light_dir: tuple = (0.3, -0.5, 0.8), backend: Optional[str] = "egl"):
        try:
            import moderngl
        except ImportError as e:
            raise RendererUnavailable("moderngl is not installed (pip install moderngl); it renders through "
                                      "Mesa's EGL (libEGL_mesa) without a display") from e
        self._mgl = moderngl
        try:
            self.ctx = moderngl.create_standalone_context(backend=backend) if backend else \
                moderngl.create_standalone_context()
        except Exception as e:  # moderngl raises plain Exception on context failure
            raise RendererUnavailable(f"cannot create an OpenGL context (backend={backend}): {e}; on a machine "
                                      "without a GPU install Mesa's EGL (libegl-mesa0)") from e
        meshes = load_scene_meshes(scene) if isinstance(scene, (str, Path)) else list(scene)
        self.bounds = np.stack([np.min([m.vertices.min(0) for m in meshes], 0),
                                np.max([m.vertices.max(0) for m in meshes], 0)])
        self.prog = self.ctx.program(vertex_shader=_VS, fragment_shader=_FS)
        ld = np.asarray(light_dir, np.float64)
        self.prog["light_dir"].value = tuple((ld / np.linalg.norm(ld)).tolist())
        self.prog["ambient"].value = float(ambient)
        self._items = []
        for m in meshes:
            uv = m.uv if m.uv is not None else np.zeros((len(m.vertices), 2), np.float32)
            data = np.concatenate([m.vertices, m.normals, uv], 1).astype("f4")
            vbo = self.ctx.buffer(data.tobytes())
            ibo = self.ctx.buffer(np.ascontiguousarray(m.faces, "i4").tobytes())
            vao = self.ctx.vertex_array(self.prog, [(vbo, "3f 3f 2f", "in_pos", "in_normal", "in_uv")], ibo)
            tex = None
            if m.texture is not None:
                img = np.ascontiguousarray(np.flipud(m.texture))  # GL: first row at v = 0 (bottom)
                tex = self.ctx.texture((img.shape[1], img.shape[0]), 3, img.tobytes())
                tex.build_mipmaps()
                tex.filter = (moderngl.LINEAR_MIPMAP_LINEAR, moderngl.LINEAR)
                tex.repeat_x = tex.repeat_y = True
            self._items.append((vao, tex, m.color))
        self._fbo = None
        self._size = None

    def set_lighting(self, light_dir: tuple, ambient: float) -> None:
        """Lambert light direction (world axes, normalized here) and ambient level in [0, 1]."""
        ld = np.asarray(light_dir, np.float64)
        self.prog["light_dir"].value = tuple((ld / np.linalg.norm(ld)).tolist())
        self.prog["ambient"].value = float(ambient)

    def _framebuffer(self, w: int, h: int):
        if self._size != (w, h):
            if self._fbo is not None:
                self._fbo.release()
            self._color = self.ctx.renderbuffer((w, h), 4)
            self._depth_f = self.ctx.renderbuffer((w, h), 1, dtype="f4")
            self._zbuf = self.ctx.depth_renderbuffer((w, h))
            self._fbo = self.ctx.framebuffer([self._color, self._depth_f], self._zbuf)
            self._size = (w, h)
        return self._fbo

    def render(self, cam_from_world: np.ndarray, intrinsics: Intrinsics, near: Optional[float] = None,
               far: Optional[float] = None) -> tuple[np.ndarray, np.ndarray]:
        """Render one view.

        Args:
            cam_from_world: ``[4, 4]`` world -> camera, OpenCV axes.
            intrinsics: pinhole camera (distortion ignored), OpenCV pixel convention.
            near, far: clip distances in metres (default: from the scene bounds and the camera position).

        Returns:
            ``rgb [H, W, 3]`` uint8 and ``depth [H, W]`` float32 planar Z in metres (0 = no surface).
        """
        T = np.asarray(cam_from_world, np.float64)
        if T.shape != (4, 4):
            raise ValueError(f"cam_from_world must be 4x4, got {T.shape}")
        w, h = int(intrinsics.width), int(intrinsics.height)
        if near is None or far is None:
            corners = np.array([[x, y, z] for x in self.bounds[:, 0] for y in self.bounds[:, 1]
                                for z in self.bounds[:, 2]])
            zc = corners @ T[:3, :3].T + T[:3, 3]
            far = far or max(float(zc[:, 2].max()) * 1.01, 1.0)
            near = near or max(far * 1e-4, 0.01)
        P = opencv_projection(intrinsics, near, far)
        fbo = self._framebuffer(w, h)
        fbo.use()
        self.ctx.viewport = (0, 0, w, h)
        fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        self.ctx.enable(self._mgl.DEPTH_TEST)
        self.ctx.disable(self._mgl.CULL_FACE)
        self.prog["clip_from_world"].write((P @ T).T.astype("f4").tobytes())  # GL is column-major
        self.prog["cam_from_world"].write(T.T.astype("f4").tobytes())
        for vao, tex, color in self._items:
            self.prog["has_tex"].value = tex is not None
            self.prog["color"].value = tuple(float(c) for c in color)
            if tex is not None:
                tex.use(0)
                self.prog["tex"].value = 0
            vao.render(self._mgl.TRIANGLES)
        rgba = np.frombuffer(fbo.read(components=4, attachment=0), np.uint8).reshape(h, w, 4)
        depth = np.frombuffer(fbo.read(components=1, attachment=1, dtype="f4"), np.float32).reshape(h, w)
        rgb = np.ascontiguousarray(np.flipud(rgba[:, :, :3]))
        depth = np.ascontiguousarray(np.flipud(depth))
        depth = np.where(np.flipud(rgba[:, :, 3]) > 0, depth, 0.0).astype(np.float32)
        return rgb, depth

    def release(self) -> None:
        """Free the OpenGL context."""
        self.ctx.release()

    def __enter__(self) -> GLRenderer:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
