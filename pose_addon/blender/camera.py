"""Bridge between Blender camera objects and the core conventions (:mod:`..core.cameras`).

No convention is defined here: every conversion goes through the core functions.
"""
from __future__ import annotations

import numpy as np

from ..core import cameras as core_cameras
from ..core.cameras import BlenderCameraSettings, Intrinsics

__all__ = ["settings_from_camera", "intrinsics_from_camera", "apply_settings", "apply_intrinsics",
           "set_cam_from_world", "get_cam_from_world", "matrix_to_numpy", "intrinsics_at_size"]


def matrix_to_numpy(m) -> np.ndarray:
    """``mathutils.Matrix`` -> float64 numpy array (row-major, as printed)."""
    return np.array([list(row) for row in m], dtype=np.float64)


def settings_from_camera(cam_obj, scene) -> BlenderCameraSettings:
    """The camera data and render settings that determine the intrinsics of ``cam_obj`` rendering ``scene``."""
    cam = cam_obj.data
    if cam.type != "PERSP":
        raise ValueError(f"camera {cam_obj.name!r} is {cam.type}; only perspective cameras are supported")
    r = scene.render
    return BlenderCameraSettings(
        lens_mm=float(cam.lens), sensor_width_mm=float(cam.sensor_width), sensor_height_mm=float(cam.sensor_height),
        sensor_fit=str(cam.sensor_fit), shift_x=float(cam.shift_x), shift_y=float(cam.shift_y),
        resolution_x=int(r.resolution_x), resolution_y=int(r.resolution_y),
        resolution_percentage=int(r.resolution_percentage), pixel_aspect_x=float(r.pixel_aspect_x),
        pixel_aspect_y=float(r.pixel_aspect_y))


def intrinsics_from_camera(cam_obj, scene) -> Intrinsics:
    """Intrinsics (OpenCV pixel convention) of ``cam_obj`` at ``scene``'s render resolution."""
    return core_cameras.intrinsics_from_blender(settings_from_camera(cam_obj, scene))


def intrinsics_at_size(cam_obj, width: int, height: int) -> Intrinsics:
    """Intrinsics of ``cam_obj`` for an image of ``width`` x ``height`` square pixels, whatever the scene's
    render resolution (estimated cameras keep their photo's size)."""
    cam = cam_obj.data
    return core_cameras.intrinsics_from_blender(BlenderCameraSettings(
        lens_mm=float(cam.lens), sensor_width_mm=float(cam.sensor_width), sensor_height_mm=float(cam.sensor_height),
        sensor_fit=str(cam.sensor_fit), shift_x=float(cam.shift_x), shift_y=float(cam.shift_y),
        resolution_x=int(width), resolution_y=int(height)))


def apply_settings(cam_obj, scene, s: BlenderCameraSettings) -> None:
    """Write ``s`` into the camera data and the scene's render resolution."""
    cam = cam_obj.data
    cam.type = "PERSP"
    cam.lens_unit = "MILLIMETERS"
    cam.lens = s.lens_mm
    cam.sensor_width = s.sensor_width_mm
    cam.sensor_height = s.sensor_height_mm
    cam.sensor_fit = s.sensor_fit
    cam.shift_x = s.shift_x
    cam.shift_y = s.shift_y
    r = scene.render
    r.resolution_x = int(s.resolution_x)
    r.resolution_y = int(s.resolution_y)
    r.resolution_percentage = int(s.resolution_percentage)
    r.pixel_aspect_x = float(s.pixel_aspect_x)
    r.pixel_aspect_y = float(s.pixel_aspect_y)


def apply_intrinsics(cam_obj, scene, intr: Intrinsics, sensor_width_mm: float = 36.0) -> None:
    """Set camera and render settings so that ``cam_obj`` renders with intrinsics ``intr`` (no distortion)."""
    if intr.dist and any(abs(d) > 0 for d in intr.dist):
        raise ValueError("Blender cameras cannot render lens distortion; undistort the intrinsics first")
    apply_settings(cam_obj, scene, core_cameras.blender_from_intrinsics(intr, sensor_width_mm))


def set_cam_from_world(cam_obj, cam_from_world: np.ndarray) -> None:
    """Place ``cam_obj`` so that its pose is ``cam_from_world`` (4x4, OpenCV axes). Unparents nothing:
    the object's ``matrix_world`` is set directly."""
    import mathutils

    M = core_cameras.blender_matrix_world_from_cam_from_world(np.asarray(cam_from_world, dtype=np.float64))
    cam_obj.matrix_world = mathutils.Matrix(M.tolist())


def get_cam_from_world(cam_obj) -> np.ndarray:
    """``cam_from_world`` (4x4, OpenCV axes) of ``cam_obj`` from its ``matrix_world``."""
    return core_cameras.cam_from_world_from_blender_matrix_world(matrix_to_numpy(cam_obj.matrix_world))
