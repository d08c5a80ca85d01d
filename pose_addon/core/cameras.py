"""Camera frames and intrinsics: the one place that converts between Blender and OpenCV conventions.

Frames:

* **world**: Blender's world frame, Z up, metres.
* **cam (OpenCV/COLMAP axes)**: +X right, +Y down, +Z forward (the optical axis).
* **cam_blender**: a Blender camera's local frame, +X right, +Y up, looking down -Z.

The stored pose of every frame is ``cam_from_world`` (4x4, OpenCV axes). A Blender camera object's
``matrix_world`` is ``world_from_cam_blender``.

Pixels (OpenCV convention): the centre of the top-left pixel is (0, 0), so a Blender camera with no shift has
``cx = W / 2 - 0.5``. COLMAP puts that centre at (0.5, 0.5): see :func:`opencv_to_colmap_principal_point`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .poses import pose_inverse

__all__ = [
    "BLENDER_FROM_OPENCV_CAM", "cam_from_world_from_blender_matrix_world", "blender_matrix_world_from_cam_from_world",
    "camera_center", "Intrinsics", "BlenderCameraSettings", "intrinsics_from_blender", "blender_from_intrinsics",
    "project_points", "opencv_to_colmap_principal_point",
]

#: ``cam_blender_from_cam_opencv``: flips Y and Z. It is its own inverse.
BLENDER_FROM_OPENCV_CAM = np.diag([1.0, -1.0, -1.0, 1.0])


def cam_from_world_from_blender_matrix_world(matrix_world: np.ndarray) -> np.ndarray:
    """Blender camera ``matrix_world`` (``world_from_cam_blender``, 4x4) -> ``cam_from_world`` (OpenCV axes).

    Any scale in ``matrix_world`` is removed first (Blender cameras may be scaled; projection ignores it).
    """
    M = np.asarray(matrix_world, dtype=np.float64).copy()
    M[:3, :3] = M[:3, :3] / np.linalg.norm(M[:3, :3], axis=0, keepdims=True)
    world_from_cam = M @ BLENDER_FROM_OPENCV_CAM
    return pose_inverse(world_from_cam)


def blender_matrix_world_from_cam_from_world(cam_from_world: np.ndarray) -> np.ndarray:
    """``cam_from_world`` (OpenCV axes, 4x4) -> Blender camera ``matrix_world`` (``world_from_cam_blender``)."""
    return pose_inverse(np.asarray(cam_from_world, dtype=np.float64)) @ BLENDER_FROM_OPENCV_CAM


def camera_center(cam_from_world: np.ndarray) -> np.ndarray:
    """Camera centre in world coordinates ``[3]``: ``c = -R^T t``."""
    T = np.asarray(cam_from_world, dtype=np.float64)
    return -T[:3, :3].T @ T[:3, 3]


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in OpenCV pixel convention (pixel centres at integers), image size in pixels.

    ``dist`` holds OpenCV radial-tangential coefficients ``(k1, k2, p1, p2[, k3])`` or is empty.
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    dist: tuple = ()

    @property
    def K(self) -> np.ndarray:
        """3x3 calibration matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @classmethod
    def from_K(cls, K: np.ndarray, width: int, height: int, dist=()) -> Intrinsics:
        K = np.asarray(K, dtype=np.float64)
        return cls(int(width), int(height), float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]),
                   tuple(float(d) for d in dist))

    def scaled(self, sx: float, sy: float | None = None) -> Intrinsics:
        """Intrinsics of the image resized by ``sx`` (and ``sy``), keeping pixel-centre conventions right."""
        sy = sx if sy is None else sy
        return Intrinsics(int(round(self.width * sx)), int(round(self.height * sy)), self.fx * sx, self.fy * sy,
                          (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5, self.dist)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["dist"] = list(self.dist)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Intrinsics:
        return cls(int(d["width"]), int(d["height"]), float(d["fx"]), float(d["fy"]), float(d["cx"]),
                   float(d["cy"]), tuple(float(x) for x in d.get("dist", ())))


@dataclass(frozen=True)
class BlenderCameraSettings:
    """The Blender camera and render settings that determine the intrinsics (``bpy``-free mirror)."""

    lens_mm: float = 50.0
    sensor_width_mm: float = 36.0
    sensor_height_mm: float = 24.0
    sensor_fit: str = "AUTO"  # AUTO, HORIZONTAL or VERTICAL
    shift_x: float = 0.0
    shift_y: float = 0.0
    resolution_x: int = 640
    resolution_y: int = 480
    resolution_percentage: int = 100
    pixel_aspect_x: float = 1.0
    pixel_aspect_y: float = 1.0


def _fit_and_view_factor(s: BlenderCameraSettings, res_x: float, res_y: float) -> tuple[str, float, float]:
    """Return (effective fit, sensor size along it in mm, view factor in pixels) as Blender computes them."""
    fit = s.sensor_fit
    sensor = s.sensor_height_mm if fit == "VERTICAL" else s.sensor_width_mm
    if fit == "AUTO":
        fit = "HORIZONTAL" if s.pixel_aspect_x * res_x >= s.pixel_aspect_y * res_y else "VERTICAL"
    pixel_aspect = s.pixel_aspect_y / s.pixel_aspect_x
    view_fac = res_x if fit == "HORIZONTAL" else pixel_aspect * res_y
    return fit, sensor, view_fac


def intrinsics_from_blender(s: BlenderCameraSettings) -> Intrinsics:
    """Intrinsics (OpenCV pixel convention) of a perspective Blender camera rendering at ``s``'s resolution."""
    scale = s.resolution_percentage / 100.0
    res_x = int(s.resolution_x * scale)
    res_y = int(s.resolution_y * scale)
    _, sensor, view_fac = _fit_and_view_factor(s, res_x, res_y)
    pixel_aspect = s.pixel_aspect_y / s.pixel_aspect_x
    fx = s.lens_mm / sensor * view_fac
    fy = fx / pixel_aspect
    cx = res_x / 2.0 - s.shift_x * view_fac - 0.5
    cy = res_y / 2.0 + s.shift_y * view_fac / pixel_aspect - 0.5
    return Intrinsics(res_x, res_y, fx, fy, cx, cy)


def blender_from_intrinsics(intr: Intrinsics, sensor_width_mm: float = 36.0) -> BlenderCameraSettings:
    """Blender settings reproducing ``intr`` (square pixels assumed up to ``fy/fx`` as pixel aspect).

    Uses a HORIZONTAL sensor fit so that the sensor width maps to the image width.
    """
    pixel_aspect = intr.fx / intr.fy  # = pixel_aspect_y / pixel_aspect_x
    view_fac = float(intr.width)
    lens = intr.fx * sensor_width_mm / view_fac
    shift_x = (intr.width / 2.0 - 0.5 - intr.cx) / view_fac
    shift_y = (intr.cy + 0.5 - intr.height / 2.0) * pixel_aspect / view_fac
    if pixel_aspect >= 1:
        pa_x, pa_y = 1.0, pixel_aspect
    else:
        pa_x, pa_y = 1.0 / pixel_aspect, 1.0
    return BlenderCameraSettings(lens_mm=lens, sensor_width_mm=sensor_width_mm,
                                 sensor_height_mm=sensor_width_mm * intr.height / intr.width,
                                 sensor_fit="HORIZONTAL", shift_x=shift_x, shift_y=shift_y,
                                 resolution_x=intr.width, resolution_y=intr.height, resolution_percentage=100,
                                 pixel_aspect_x=pa_x, pixel_aspect_y=pa_y)


def project_points(K: np.ndarray, cam_from_world: np.ndarray,
                   points_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project world points ``[N, 3]`` -> pixels ``[N, 2]`` (OpenCV convention) and depths ``[N]`` (planar Z)."""
    p = np.asarray(points_world, dtype=np.float64) @ cam_from_world[:3, :3].T + cam_from_world[:3, 3]
    z = p[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = (p[:, :2] / z[:, None]) @ np.asarray(K)[:2, :2].T + np.asarray(K)[:2, 2]
    return uv, z


def opencv_to_colmap_principal_point(cx: float, cy: float) -> tuple[float, float]:
    """COLMAP puts pixel centres at +0.5: its principal point is OpenCV's plus 0.5."""
    return cx + 0.5, cy + 0.5
