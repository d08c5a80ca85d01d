"""Estimated cameras in the scene: creation from a method's answer, ground-truth lookup and error table.

An estimated camera is a camera object in the "Estimated Cameras" collection with the photo as background,
the intrinsics the method used (focal, sensor, shift) and custom properties: ``pose_method``, ``pose_image``,
``pose_n_inliers``, ``pose_reproj_px``, ``pose_timings`` (JSON), ``pose_points`` (JSON: the PnP inliers' 3D
points and the detected keypoints' pixels, for the camera-view overlay) and, once compared, ``pose_t_err_m`` /
``pose_R_err_deg``.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import bpy
import numpy as np

from .blender import camera as bcam
from .core.cameras import Intrinsics, camera_center
from .core.dataset import Dataset, atomic_write_bytes
from .core.poses import rotation_angle_deg
from .scene_utils import ensure_collection

COLLECTION = "Estimated Cameras"
#: frustum colour per method family (RGBA)
METHOD_COLORS = {"sift": (0.1, 0.8, 0.2, 1.0), "matching": (0.1, 0.8, 0.2, 1.0), "regression": (0.2, 0.5, 1.0, 1.0),
                 "keypoints": (1.0, 0.4, 0.8, 1.0), "manual": (1.0, 1.0, 0.2, 1.0), "truth": (1.0, 1.0, 1.0, 1.0)}


def method_color(method: str) -> tuple:
    for key, col in METHOD_COLORS.items():
        if method.startswith(key) or key in method:
            return col
    return (1.0, 0.6, 0.1, 1.0)


def create_estimated_camera(context, image_path: str, cam_from_world: np.ndarray, intr: Intrinsics, method: str,
                            info: dict | None = None):
    """Add a camera for one estimate; returns the object. ``cam_from_world`` is 4x4 in OpenCV axes."""
    info = info or {}
    name = f"{Path(image_path).stem}.{method}"
    data = bpy.data.cameras.new(name)
    obj = bpy.data.objects.new(name, data)
    ensure_collection(context, COLLECTION).objects.link(obj)
    set_camera_intrinsics(obj, intr)
    bcam.set_cam_from_world(obj, cam_from_world)
    add_photo_background(obj, image_path)
    obj["pose_method"] = method
    obj["pose_image"] = str(image_path)
    obj["pose_width"], obj["pose_height"] = intr.width, intr.height
    obj["pose_n_inliers"] = int(info.get("n_inliers") or 0)
    obj["pose_reproj_px"] = float(info.get("reproj_error_px", float("nan")))
    obj["pose_timings"] = json.dumps(info.get("timings", {}))
    obj["pose_points"] = json.dumps({k: info[k] for k in ("inliers_3d", "keypoints_2d") if info.get(k) is not None})
    from . import draw

    draw.invalidate()
    return obj


def set_camera_intrinsics(cam_obj, intr: Intrinsics) -> None:
    """Lens, sensor and shift of ``cam_obj`` so that it has ``intr`` at ``intr.width x intr.height`` (read back
    with :func:`.blender.camera.intrinsics_at_size`); the scene's resolution is left alone. Square pixels:
    ``fy`` follows ``fx``; distortion is not representable."""
    from .core.cameras import blender_from_intrinsics

    s = blender_from_intrinsics(Intrinsics(intr.width, intr.height, intr.fx, intr.fx, intr.cx, intr.cy))
    cam = cam_obj.data
    cam.type, cam.lens_unit = "PERSP", "MILLIMETERS"
    cam.sensor_fit, cam.sensor_width, cam.sensor_height = "HORIZONTAL", s.sensor_width_mm, s.sensor_height_mm
    cam.lens, cam.shift_x, cam.shift_y = s.lens_mm, s.shift_x, s.shift_y


def add_photo_background(cam_obj, image_path, alpha: float = 0.7) -> bool:
    """Show the photo behind ``cam_obj``'s view; False when it cannot be read (the camera stays useful)."""
    if not image_path or not Path(image_path).is_file():
        return False
    from .blender.photos import load_photo

    try:
        img = load_photo(image_path)  # upright, as the pose and its pixels refer to it
    except RuntimeError:
        return False
    cam_obj.data.show_background_images = True
    bg = cam_obj.data.background_images.new()
    bg.image, bg.alpha = img, alpha
    return True


def photo_points(cam_obj) -> dict:
    """Points to draw over an estimated camera's photo, in its pixels (OpenCV convention): ``inliers``
    ``[N, 2]`` (the PnP inliers' 3D points reprojected at the estimated pose) and ``keypoints`` ``[K, 2]``."""
    from .core.cameras import project_points

    pts = json.loads(cam_obj.get("pose_points", "{}") or "{}")
    out = {}
    if pts.get("inliers_3d"):
        intr = bcam.intrinsics_at_size(cam_obj, int(cam_obj.get("pose_width", 0)), int(cam_obj.get("pose_height", 0)))
        uv, z = project_points(intr.K, bcam.get_cam_from_world(cam_obj), np.array(pts["inliers_3d"], dtype=float))
        out["inliers"] = uv[z > 0]
    if pts.get("keypoints_2d"):
        out["keypoints"] = np.array(pts["keypoints_2d"], dtype=float).reshape(-1, 2)
    return out


def estimated_cameras() -> list:
    col = bpy.data.collections.get(COLLECTION)
    return sorted([o for o in col.objects if o.type == "CAMERA"], key=lambda o: o.name) if col else []


def photo_stem(cam_obj) -> str:
    """The file stem of the photo a camera stands for: its ``pose_image``, its annotated photo, its first
    background image, else its name up to the first dot (``IMG_0001.sift`` -> ``IMG_0001``)."""
    if cam_obj.get("pose_image"):
        return Path(cam_obj["pose_image"]).stem
    ann = cam_obj.get("pose_annotation")
    if ann:
        image = json.loads(ann).get("image")
        if image:
            return Path(image).stem
    data = cam_obj.data if cam_obj.type == "CAMERA" else None
    for bg in (data.background_images if data else ()):
        if bg.image is not None and bg.image.filepath:
            return Path(bpy.path.abspath(bg.image.filepath)).stem
    return cam_obj.name.split(".")[0]


def truth_for(cam_obj, truth_camera=None, dataset: Dataset | None = None) -> np.ndarray | None:
    """Ground-truth ``cam_from_world`` of an estimated camera: the truth camera when it shows the same photo
    (same file stem), else the dataset frame whose image has the estimate's photo's stem (``a.jpg`` matches
    ``images/a.png``); None when nothing matches."""
    stem = photo_stem(cam_obj)
    if truth_camera is not None and photo_stem(truth_camera) == stem:
        return bcam.get_cam_from_world(truth_camera)
    if dataset is not None:
        for f in dataset.frames:
            if Path(f.image).stem == stem or f.id == stem:
                return f.cam_from_world
    return None


def compare(truth_camera=None, dataset_dir: str | None = None) -> list[dict]:
    """Errors of every estimated camera against its truth (stored on the objects; estimates of other photos than
    the truth camera's keep no error); returns the table rows."""
    ds = Dataset.load(bpy.path.abspath(dataset_dir)) if dataset_dir else None
    rows = []
    for obj in estimated_cameras():
        est = bcam.get_cam_from_world(obj)
        T = truth_for(obj, truth_camera, ds)
        if T is None:
            for key in ("pose_t_err_m", "pose_R_err_deg", "pose_truth"):
                if key in obj:
                    del obj[key]
        row = {"camera": obj.name, "method": obj.get("pose_method", ""), "image": Path(obj.get("pose_image", "")).name,
               "n_inliers": obj.get("pose_n_inliers", 0), "reproj_px": obj.get("pose_reproj_px", float("nan")),
               "t_err_m": float("nan"), "R_err_deg": float("nan")}
        if T is not None:
            row["t_err_m"] = float(np.linalg.norm(camera_center(est) - camera_center(T)))
            row["R_err_deg"] = rotation_angle_deg(est[:3, :3], T[:3, :3])
            obj["pose_t_err_m"], obj["pose_R_err_deg"] = row["t_err_m"], row["R_err_deg"]
            obj["pose_truth"] = json.dumps(np.asarray(T).tolist())
        rows.append(row)
    from . import draw

    draw.invalidate()
    return rows


def write_csv(rows: list[dict], path) -> None:
    """The compare table as CSV (atomically)."""
    buf = io.StringIO()
    fields = ["camera", "method", "image", "n_inliers", "reproj_px", "t_err_m", "R_err_deg"]
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in fields})
    atomic_write_bytes(Path(path), buf.getvalue().encode())
