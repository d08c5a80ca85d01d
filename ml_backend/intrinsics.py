"""Intrinsics of a query photo from what the user has: explicit values, EXIF, a camera preset, a calibration
file (OpenCV YAML/JSON or a COLMAP ``cameras.txt``), or a guess.

Every source returns :class:`pose_addon.core.cameras.Intrinsics` in the OpenCV pixel convention at the photo's
own size; distortion coefficients are kept (OpenCV radial-tangential ``k1, k2, p1, p2[, k3]``) so the solver
can undistort the keypoints.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

from pose_addon.core.cameras import Intrinsics

__all__ = ["CAMERA_PRESETS", "IntrinsicsError", "image_size", "from_exif", "from_preset", "from_calibration",
           "guess", "resolve", "load_photo", "parse_intrinsics_arg"]

#: sensor width in mm of common cameras (name -> width); focal length comes from EXIF or the user
CAMERA_PRESETS: dict[str, float] = {
    "full-frame": 36.0, "aps-c": 23.5, "aps-c-canon": 22.3, "micro-four-thirds": 17.3, "1-inch": 13.2,
    "phone-1/1.3": 9.8, "phone-1/2.55": 5.6, "blender-default": 36.0,
}


class IntrinsicsError(ValueError):
    """The intrinsics cannot be determined from the given source (message says what is missing)."""


#: EXIF orientations (tag 274) that turn the stored pixels by 90 degrees (width and height swap when displayed)
TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file as displayed (after its EXIF orientation); raises IntrinsicsError for a
    missing or unreadable file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            w, h = int(im.width), int(im.height)
            orientation = im.getexif().get(0x0112, 1) if hasattr(im, "getexif") else 1
            return (h, w) if orientation in TRANSPOSING_ORIENTATIONS else (w, h)
    except FileNotFoundError:
        raise IntrinsicsError(f"photo not found: {path}") from None
    except (UnidentifiedImageError, OSError) as e:
        raise IntrinsicsError(f"cannot read photo {path}: {e}") from None


def _centered(width: int, height: int, f_px: float, dist=()) -> Intrinsics:
    return Intrinsics(width, height, f_px, f_px, width / 2.0 - 0.5, height / 2.0 - 0.5, tuple(dist))


def from_exif(path: str | Path, sensor_width_mm: Optional[float] = None) -> Intrinsics:
    """Focal length from EXIF, at the photo's displayed size (EXIF orientation applied), principal point at the
    centre: ``FocalLength`` in mm with the sensor width given, else with the sensor's pixel pitch from
    ``FocalPlaneXResolution`` (exact when the photo has the sensor's full resolution), else
    ``FocalLengthIn35mmFilm`` (a whole number of mm on a 36 mm wide frame: about 1% coarse)."""
    from PIL import Image

    w, h = image_size(path)
    with Image.open(path) as im:
        exif = im.getexif()
        sub = exif.get_ifd(0x8769) if exif else {}
    tags = {**dict(exif or {}), **dict(sub or {})}
    f_mm = float(tags.get(0x920A) or 0)  # FocalLength
    f35 = tags.get(0xA405)  # FocalLengthIn35mmFilm
    if f_mm > 0 and sensor_width_mm:
        return _centered(w, h, f_mm / sensor_width_mm * max(w, h))
    xres, unit = tags.get(0xA20E), tags.get(0xA210, 2)  # FocalPlaneXResolution, unit (2 inch, 3 cm)
    if f_mm > 0 and xres and float(xres) > 0:
        px_per_mm = float(xres) / (25.4 if int(unit) == 2 else 10.0 if int(unit) == 3 else 1.0)
        return _centered(w, h, f_mm * px_per_mm)
    if f35:
        return _centered(w, h, float(f35) / 36.0 * max(w, h))
    if f_mm > 0:
        raise IntrinsicsError(f"{path}: EXIF has a focal length ({f_mm} mm) but no sensor size: "
                              "choose a camera preset or give the sensor width")
    raise IntrinsicsError(f"{path}: no focal length in EXIF; use a preset, a calibration file or 'guess'")


def load_photo(path: str | Path) -> np.ndarray:
    """The pixels of a photo as displayed: RGB uint8 ``[H, W, 3]`` with its EXIF orientation applied first.

    Raises:
        IntrinsicsError: a missing or unreadable file (the message names it and says why).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    from .integrity import ImageRejected, check_image_file, degenerate_image_reason

    try:
        check_image_file(path)  # file and pixel-count limits from the header, before decoding
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise IntrinsicsError(f"photo not found: {path}") from None
    except ImageRejected as e:
        raise IntrinsicsError(str(e)) from None
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise IntrinsicsError(f"cannot read photo {path}: {e}") from None
    why = degenerate_image_reason(rgb)
    if why:  # nothing a method could trust: a failure with this reason, never a pose
        raise IntrinsicsError(f"photo {path}: {why}")
    return rgb


def from_preset(path: str | Path, focal_mm: float, preset: str = "full-frame",
                sensor_width_mm: Optional[float] = None) -> Intrinsics:
    """Focal length in mm on a named sensor (:data:`CAMERA_PRESETS`) or an explicit sensor width."""
    w, h = image_size(path)
    sw = sensor_width_mm or CAMERA_PRESETS.get(preset)
    if not sw:
        raise IntrinsicsError(f"unknown camera preset {preset!r}; known: {', '.join(CAMERA_PRESETS)}")
    if focal_mm <= 0:
        raise IntrinsicsError("focal length must be positive")
    return _centered(w, h, focal_mm / sw * max(w, h))


def from_calibration(calib: str | Path, image: str | Path | None = None) -> Intrinsics:
    """Intrinsics from a calibration file, rescaled to the photo's size when it differs.

    Formats: OpenCV FileStorage YAML/XML/JSON (``camera_matrix`` or ``K``, ``distortion_coefficients`` or
    ``dist_coeffs``, ``image_width``/``image_height``), a plain JSON ``{"width","height","fx","fy","cx","cy",
    "dist"}`` or ``{"K": 3x3, ...}``, or a COLMAP ``cameras.txt`` (first camera; PINHOLE, SIMPLE_PINHOLE,
    SIMPLE_RADIAL, RADIAL, OPENCV; COLMAP's principal point is converted by -0.5).
    """
    calib = Path(calib)
    if not calib.is_file():
        raise IntrinsicsError(f"calibration file not found: {calib}")
    if calib.stat().st_size > 1 << 20:
        raise IntrinsicsError(f"{calib}: {calib.stat().st_size} bytes is not a calibration file (at most 1 MiB)")
    try:
        if calib.name.endswith(".txt"):
            intr = _from_colmap(calib)
        else:
            intr = _from_json(calib) if calib.suffix == ".json" else None
            if intr is None:
                intr = _from_opencv(calib)
    except IntrinsicsError:
        raise
    except Exception as e:  # IndexError, KeyError, UnicodeDecodeError, cv2.error / SystemError on garbage, ...
        raise IntrinsicsError(f"{calib}: malformed calibration file ({type(e).__name__}: {str(e)[:200]})") from None
    bad = [k for k, v in (("width", intr.width), ("height", intr.height), ("fx", intr.fx), ("fy", intr.fy))
           if not (np.isfinite(v) and v > 0)] + [k for k, v in (("cx", intr.cx), ("cy", intr.cy))
                                                 if not np.isfinite(v)]
    if bad:
        raise IntrinsicsError(f"{calib}: calibration has invalid {', '.join(bad)} (sizes and focal lengths must be "
                              "positive, all values finite)")
    if image is not None:
        w, h = image_size(image)
        if (w, h) != (intr.width, intr.height):
            if abs(w / intr.width - h / intr.height) > 1e-3:
                raise IntrinsicsError(f"photo is {w}x{h} but the calibration is for {intr.width}x{intr.height} "
                                      "(another aspect ratio): wrong calibration?")
            intr = intr.scaled(w / intr.width)
            intr = Intrinsics(w, h, intr.fx, intr.fy, intr.cx, intr.cy, intr.dist)
    return intr


def _from_json(path: Path) -> Optional[Intrinsics]:
    try:
        d = json.loads(path.read_text("utf-8"))
    except ValueError:
        return None
    if not isinstance(d, dict):
        raise IntrinsicsError(f"{path}: expected a JSON object")
    if "fx" in d:
        return Intrinsics.from_dict(d)
    if "K" in d:
        return Intrinsics.from_K(np.array(d["K"]), d["width"], d["height"], d.get("dist", ()))
    return None  # maybe OpenCV FileStorage JSON


def _from_opencv(path: Path) -> Intrinsics:
    import cv2

    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    try:
        if not fs.isOpened():
            raise IntrinsicsError(f"{path}: not an OpenCV calibration file")
        K = next((fs.getNode(n).mat() for n in ("camera_matrix", "K", "cameraMatrix")
                  if not fs.getNode(n).empty()), None)
        if K is None:
            raise IntrinsicsError(f"{path}: no camera_matrix / K node")
        dist = next((fs.getNode(n).mat() for n in ("distortion_coefficients", "dist_coeffs", "D", "distCoeffs")
                     if not fs.getNode(n).empty()), None)
        w = fs.getNode("image_width").real() or 0
        h = fs.getNode("image_height").real() or 0
    finally:
        fs.release()
    if not w or not h:
        raise IntrinsicsError(f"{path}: image_width/image_height missing")
    return Intrinsics.from_K(K, int(w), int(h), () if dist is None else np.asarray(dist).ravel())


def _from_colmap(path: Path) -> Intrinsics:
    for line in path.read_text("utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        model, w, h, p = parts[1], int(parts[2]), int(parts[3]), [float(x) for x in parts[4:]]
        if model == "PINHOLE":
            fx, fy, cx, cy, dist = *p[:4], ()
        elif model == "SIMPLE_PINHOLE":
            fx = fy = p[0]
            cx, cy, dist = p[1], p[2], ()
        elif model == "SIMPLE_RADIAL":
            fx = fy = p[0]
            cx, cy, dist = p[1], p[2], (p[3], 0.0, 0.0, 0.0)
        elif model == "RADIAL":
            fx = fy = p[0]
            cx, cy, dist = p[1], p[2], (p[3], p[4], 0.0, 0.0)
        elif model == "OPENCV":
            fx, fy, cx, cy = p[:4]
            dist = tuple(p[4:8])
        else:
            raise IntrinsicsError(f"{path}: COLMAP model {model} is not supported (use PINHOLE/OPENCV/...)")
        return Intrinsics(w, h, fx, fy, cx - 0.5, cy - 0.5, tuple(dist))
    raise IntrinsicsError(f"{path}: no camera line")


def guess(path: str | Path, hfov_deg: float = 60.0) -> Intrinsics:
    """A last resort: a typical horizontal field of view, principal point at the centre."""
    w, h = image_size(path)
    return _centered(w, h, (max(w, h) / 2.0) / np.tan(np.radians(hfov_deg) / 2.0))


def resolve(image: str | Path, spec: dict) -> Intrinsics:
    """Intrinsics for ``image`` from a spec: ``{"source": "explicit", width, height, fx, fy, cx, cy, dist?}``,
    ``{"source": "exif", "sensor_width_mm"?}``, ``{"source": "preset", "focal_mm", "preset"?, "sensor_width_mm"?}``,
    ``{"source": "calibration", "path"}``, ``{"source": "guess", "hfov_deg"?}`` or ``{"source": "estimate"}`` (a
    guess whose focal length the matching methods then solve for); without ``source`` the dict is explicit."""
    src = spec.get("source", "explicit")
    if src == "explicit":
        try:
            return Intrinsics.from_dict(spec)
        except (KeyError, TypeError, ValueError) as e:
            raise IntrinsicsError(f"intrinsics must hold width, height, fx, fy, cx, cy: {e}") from None
    if src == "exif":
        return from_exif(image, spec.get("sensor_width_mm"))
    if src == "preset":
        return from_preset(image, float(spec.get("focal_mm", 0)), spec.get("preset", "full-frame"),
                           spec.get("sensor_width_mm"))
    if src == "calibration":
        return from_calibration(spec["path"], image)
    if src == "pixels":  # fx, fy, cx, cy at the photo's size
        w, h = image_size(image)
        return Intrinsics(w, h, float(spec["fx"]), float(spec["fy"]), float(spec["cx"]), float(spec["cy"]))
    if src in ("guess", "estimate"):  # "estimate": the method solves the focal length, starting from this guess
        return guess(image, float(spec.get("hfov_deg", 60.0)))
    raise IntrinsicsError(f"unknown intrinsics source {src!r}: explicit, exif, preset, calibration, guess or "
                          "estimate")


def parse_intrinsics_arg(arg: str) -> dict:
    """A command-line intrinsics choice as a :func:`resolve` spec: ``exif``, ``estimate``, ``guess``,
    ``fx,fy,cx,cy`` (pixels of the photo as displayed, OpenCV convention) or a calibration file path."""
    a = (arg or "").strip()
    if a in ("exif", "estimate", "guess"):
        return {"source": a}
    parts = a.split(",")
    if len(parts) == 4:
        try:
            fx, fy, cx, cy = (float(x) for x in parts)
        except ValueError:
            raise IntrinsicsError(f"--intrinsics {arg!r}: fx,fy,cx,cy must be numbers") from None
        return {"source": "pixels", "fx": fx, "fy": fy, "cx": cx, "cy": cy}
    if Path(a).suffix.lower() in (".json", ".yaml", ".yml", ".xml", ".txt"):
        if not Path(a).is_file():
            raise IntrinsicsError(f"calibration file not found: {a}")
        return {"source": "calibration", "path": a}
    raise IntrinsicsError(f"--intrinsics {arg!r}: use exif, estimate, fx,fy,cx,cy or a calibration file")
