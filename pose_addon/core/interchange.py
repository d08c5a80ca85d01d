"""Reading camera sets written by other tools (bpy-free): COLMAP text models, nerfstudio ``transforms.json`` and the
``poses.json`` of ``localize``. Writers live in :mod:`.dataset` (:func:`.dataset.write_colmap`,
:func:`.dataset.write_nerfstudio`).

Every reader returns :class:`CameraRecord` s: ``cam_from_world`` 4x4 in OpenCV camera axes, intrinsics in the
OpenCV pixel convention (centre of the top-left pixel at 0, 0) and the image path (absolute when it could be
resolved). Bad input raises :class:`InterchangeError` naming the file and the line or field.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from .cameras import Intrinsics, cam_from_world_from_blender_matrix_world
from .model_frame import default_up_axis, rebase_pose, up_axis_rotation
from .poses import quat_to_matrix

__all__ = ["InterchangeError", "CameraRecord", "read_colmap", "read_nerfstudio", "read_localize",
           "LOCALIZE_FORMAT", "model_to_blender_import"]

LOCALIZE_FORMAT = "building-pose-localize"


class InterchangeError(ValueError):
    """A camera file that cannot be read; the message names the file and what is wrong."""


@dataclass
class CameraRecord:
    """One camera: ``name`` (the image's stem), ``image`` path, intrinsics, ``cam_from_world`` (OpenCV axes);
    ``info`` holds what the source says besides (inliers, confidence, status and reason of a failure)."""

    name: str
    image: str
    intrinsics: Optional[Intrinsics]
    cam_from_world: Optional[np.ndarray]
    info: dict = field(default_factory=dict)


def _resolve(image: str, base: Path) -> str:
    p = Path(image).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


# ----------------------------------------------------------------------------------------------- COLMAP
#: parameter layouts of COLMAP's camera models: focal(s), principal point, then distortion
_COLMAP_MODELS = {"SIMPLE_PINHOLE": ("f", 3), "PINHOLE": ("fxfy", 4), "SIMPLE_RADIAL": ("f", 4),
                  "RADIAL": ("f", 5), "OPENCV": ("fxfy", 8), "FULL_OPENCV": ("fxfy", 12),
                  "SIMPLE_RADIAL_FISHEYE": ("f", 4), "RADIAL_FISHEYE": ("f", 5), "OPENCV_FISHEYE": ("fxfy", 8)}


def _data_lines(path: Path) -> list[tuple[int, str]]:
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise InterchangeError(f"COLMAP file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InterchangeError(f"cannot read {path}: {e}") from None
    return [(i, line) for i, line in enumerate(text.splitlines(), 1)]


def read_colmap(folder: Path | str, image_dir: Path | str | None = None) -> list[CameraRecord]:
    """Cameras of a COLMAP text model (``cameras.txt`` + ``images.txt``). Distortion parameters are kept in
    ``intrinsics.dist`` (``k1, k2[, p1, p2]``); image names are resolved against ``image_dir`` (default: the
    model folder's parent ``images/`` when it exists, else the model folder)."""
    folder = Path(folder)
    if folder.is_file():
        folder = folder.parent
    cams = {}
    for i, line in _data_lines(folder / "cameras.txt"):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        parts = s.split()
        try:
            cid, model, w, h = int(parts[0]), parts[1], int(parts[2]), int(parts[3])
            params = [float(x) for x in parts[4:]]
        except (ValueError, IndexError):
            raise InterchangeError(f"{folder / 'cameras.txt'} line {i}: expected 'ID MODEL WIDTH HEIGHT PARAMS...', "
                                   f"got {s!r}") from None
        if model not in _COLMAP_MODELS:
            raise InterchangeError(f"{folder / 'cameras.txt'} line {i}: camera model {model} is not supported "
                                   f"({', '.join(_COLMAP_MODELS)})")
        kind, n = _COLMAP_MODELS[model]
        if len(params) != n:
            raise InterchangeError(f"{folder / 'cameras.txt'} line {i}: {model} takes {n} parameters, got "
                                   f"{len(params)}")
        if kind == "f":
            fx = fy = params[0]
            cx, cy, dist = params[1], params[2], params[3:]
        else:
            fx, fy, cx, cy, dist = params[0], params[1], params[2], params[3], params[4:]
        if fx <= 0 or fy <= 0 or w <= 0 or h <= 0:
            raise InterchangeError(f"{folder / 'cameras.txt'} line {i}: focal and size must be positive")
        cams[cid] = Intrinsics(w, h, fx, fy, cx - 0.5, cy - 0.5, tuple(dist[:4]))
    if image_dir is None:
        image_dir = folder.parent / "images" if (folder.parent / "images").is_dir() else folder
    out = []
    lines = [(i, s.strip()) for i, s in _data_lines(folder / "images.txt") if not s.strip().startswith("#")]
    k = 0
    while k < len(lines):
        i, s = lines[k]
        if not s:
            k += 1
            continue
        parts = s.split(maxsplit=9)
        try:
            q = np.array([float(x) for x in parts[1:5]])
            t = np.array([float(x) for x in parts[5:8]])
            cid, name = int(parts[8]), parts[9]
        except (ValueError, IndexError):
            raise InterchangeError(f"{folder / 'images.txt'} line {i}: expected 'ID QW QX QY QZ TX TY TZ CAMERA_ID "
                                   f"NAME', got {s!r}") from None
        if cid not in cams:
            raise InterchangeError(f"{folder / 'images.txt'} line {i}: camera {cid} is not in cameras.txt")
        norm = float(np.linalg.norm(q))
        if not math.isfinite(norm) or norm < 1e-9:
            raise InterchangeError(f"{folder / 'images.txt'} line {i}: invalid quaternion")
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = quat_to_matrix(q / norm), t
        out.append(CameraRecord(Path(name).stem, _resolve(name, Path(image_dir)), cams[cid], T))
        k += 2  # the POINTS2D line follows every image line (it may be empty)
    return out


# ----------------------------------------------------------------------------------------------- nerfstudio
def read_nerfstudio(path: Path | str) -> list[CameraRecord]:
    """Cameras of a nerfstudio ``transforms.json`` (intrinsics per frame or shared at the top level;
    ``transform_matrix`` is world_from_cam in OpenGL/Blender camera axes; ``cx, cy`` are OpenCV's + 0.5)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise InterchangeError(f"transforms file not found: {path}") from None
    except (OSError, ValueError) as e:
        raise InterchangeError(f"cannot read {path}: {e}") from None
    frames = doc.get("frames") if isinstance(doc, dict) else None
    if not isinstance(frames, list):
        raise InterchangeError(f"{path}: no 'frames' list (is it a nerfstudio transforms.json?)")
    out = []
    for i, fr in enumerate(frames):
        def get(key, fr=fr, i=i):
            v = fr.get(key, doc.get(key))
            if v is None:
                raise InterchangeError(f"{path}: frames[{i}] has no '{key}' (neither has the file)")
            return v

        try:
            w, h = int(get("w")), int(get("h"))
            fx = float(get("fl_x"))
            fy = float(fr.get("fl_y", doc.get("fl_y", fx)))
            cx, cy = float(get("cx")) - 0.5, float(get("cy")) - 0.5
            M = np.array(get("transform_matrix"), dtype=np.float64)
            image = str(get("file_path"))
        except (TypeError, ValueError) as e:
            raise InterchangeError(f"{path}: frames[{i}]: {e}") from None
        if M.shape == (3, 4):
            M = np.vstack([M, [0, 0, 0, 1]])
        if M.shape != (4, 4) or not np.all(np.isfinite(M)):
            raise InterchangeError(f"{path}: frames[{i}].transform_matrix must be a finite 4x4 matrix")
        dist = tuple(float(fr.get(k, doc.get(k, 0.0))) for k in ("k1", "k2", "p1", "p2"))
        out.append(CameraRecord(Path(image).stem, _resolve(image, path.parent),
                                Intrinsics(w, h, fx, fy, cx, cy, dist if any(dist) else ()),
                                cam_from_world_from_blender_matrix_world(M)))
    return out


# ----------------------------------------------------------------------------------------------- localize
def model_to_blender_import(model_path: str) -> np.ndarray:
    """``blender_from_model`` 4x4: how Blender's importers place the model file's frame in their world (glTF
    and OBJ turned from Y-up to Z-up, PLY as it is; see :func:`.model_frame.default_up_axis`)."""
    M = np.eye(4)
    M[:3, :3] = up_axis_rotation(default_up_axis(str(model_path)))
    return M


def read_localize(path: Path | str, frame: str = "import") -> tuple[dict, list[CameraRecord]]:
    """The header and the photos of a ``localize`` ``poses.json``.

    ``frame`` chooses the world the returned ``cam_from_world`` live in: ``model`` (the model file's own frame,
    as written), ``import`` (the model as Blender's importer places it, see :func:`model_to_blender_import`) or
    ``render`` (the render world, via the file's ``model_from_world``); poses stay rigid
    (:func:`.model_frame.rebase_pose`). Failed photos come back with
    ``cam_from_world`` None and their reason in ``info``.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "poses.json"
    try:
        doc = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise InterchangeError(f"localize results not found: {path}") from None
    except (OSError, ValueError) as e:
        raise InterchangeError(f"cannot read {path}: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != LOCALIZE_FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else None
        raise InterchangeError(f"{path}: not a localize result (format is {found!r}, expected {LOCALIZE_FORMAT!r})")
    if doc.get("version") != 1:
        raise InterchangeError(f"{path}: version {doc.get('version')!r} is not supported (expected 1)")
    if frame not in ("model", "import", "render"):
        raise ValueError(f"frame must be model, import or render, got {frame!r}")
    photos = doc.get("photos")
    if not isinstance(photos, list):
        raise InterchangeError(f"{path}: 'photos' must be a list")
    if frame == "render":
        mfw = np.array(doc.get("model_from_world"), dtype=np.float64)
        if mfw.shape != (4, 4):
            raise InterchangeError(f"{path}: 'model_from_world' must be 4x4 to place the cameras in the render world")
        model_from_frame = mfw
    elif frame == "import":
        # what Blender's importer does depends on the file type only (glTF is Y-up by specification), not on
        # the up axis the references were rendered with
        model_from_frame = np.linalg.inv(model_to_blender_import(str(doc.get("model", ""))))
    else:
        model_from_frame = np.eye(4)
    out = []
    for i, p in enumerate(photos):
        where = f"{path}: photos[{i}]"
        try:
            image, status = str(p["image"]), p.get("status")
            stem = str(p.get("stem") or Path(image).stem)
        except (KeyError, TypeError):
            raise InterchangeError(f"{where} has no 'image'") from None
        info = {k: p.get(k) for k in ("status", "reason", "n_inliers", "inlier_ratio", "confidence", "time_s")}
        info["method"] = doc.get("method")
        if status != "ok":
            out.append(CameraRecord(stem, _resolve(image, path.parent), None, None, info))
            continue
        try:
            K = np.array(p["K"], dtype=np.float64)
            T = np.array(p["cam_from_world"], dtype=np.float64)
            w, h = int(p["width"]), int(p["height"])
        except (KeyError, TypeError, ValueError) as e:
            raise InterchangeError(f"{where} ({stem}): missing or malformed {e}") from None
        if K.shape != (3, 3) or T.shape != (4, 4) or not (np.all(np.isfinite(K)) and np.all(np.isfinite(T))):
            raise InterchangeError(f"{where} ({stem}): K must be 3x3 and cam_from_world 4x4, finite")
        if K[0, 0] <= 0 or K[1, 1] <= 0 or w <= 0 or h <= 0:
            raise InterchangeError(f"{where} ({stem}): focal and size must be positive")
        if abs(np.linalg.det(T[:3, :3]) - 1.0) > 1e-3:
            raise InterchangeError(f"{where} ({stem}): cam_from_world's rotation is not a rotation")
        dist = tuple(float(x) for x in (p.get("dist") or ()))
        intr = Intrinsics(w, h, float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]), dist)
        out.append(CameraRecord(stem, _resolve(image, path.parent), intr, rebase_pose(T, model_from_frame), info))
    return doc, out
