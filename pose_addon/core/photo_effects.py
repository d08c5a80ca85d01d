"""Camera effects that make a render look like a photo, as pure numpy image operations (no bpy, no cv2).

:func:`sample_photo_params` draws one frame's parameters from a :class:`~.render_config.PhotoStyle` (seeded);
:func:`apply_camera_effects` applies them to an 8-bit RGB render, in the order a camera does: radial lens
distortion (the render is an ideal pinhole image; the output is what a lens with ``k1, k2`` records, OpenCV's
model ``x_d = x_u (1 + k1 r^2 + k2 r^4)`` on normalised coordinates, so undistorting with the same ``k1, k2``
gives the pinhole image back), defocus (Gaussian) and motion blur (a line kernel), vignetting (``cos^4``-like
fall-off), exposure (EV) and white balance (per-channel gains) in linear light. JPEG compression and sensor
noise are applied by the writer.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["sample_photo_params", "distortion_source_map", "distortion_margin_px", "apply_camera_effects",
           "remap_bilinear", "remap_nearest", "srgb_to_linear", "linear_to_srgb", "motion_kernel"]


def sample_photo_params(style, rng: np.random.Generator) -> dict:
    """One frame's effect parameters from ``style`` (a :class:`~.render_config.PhotoStyle`): a JSON-safe dict
    recorded in the manifest. ``rng`` is seeded by the caller (group seed, style seed, frame index)."""

    def u(r) -> float:
        return float(rng.uniform(r[0], r[1])) if r[1] > r[0] else float(r[0])

    return {
        "color_jitter": float(style.color_jitter), "roughness_jitter": float(style.roughness_jitter),
        "dirt": u(style.dirt), "material_seed": int(rng.integers(0, 2 ** 31 - 1)),
        "environment": style.environment,
        "k1": u(style.k1), "k2": u(style.k2),
        "defocus_px": u(style.defocus_px),
        "motion_px": u(style.motion_px), "motion_angle_deg": float(rng.uniform(0.0, 180.0)),
        "vignetting": u(style.vignetting),
        "exposure_ev": u(style.exposure_ev),
        "white_balance": [float(1.0 + rng.uniform(-style.white_balance, style.white_balance)), 1.0,
                          float(1.0 + rng.uniform(-style.white_balance, style.white_balance))],
        "jpeg_quality": int(round(u(style.jpeg_quality))) if style.jpeg_quality[1] > 0 else 0,
        "occluders": int(rng.integers(style.occluders[0], style.occluders[1] + 1)),
        "occluder_cover": float(style.occluder_cover), "occluder_seed": int(rng.integers(0, 2 ** 31 - 1)),
    }


def distortion_source_map(width: int, height: int, fx: float, fy: float, cx: float, cy: float, k1: float,
                          k2: float, iterations: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """For every pixel of the distorted image ``[H, W]``: the (x, y) of the undistorted (pinhole) pixel it
    shows, OpenCV pixel convention, inverting ``x_d = x_u (1 + k1 r_u^2 + k2 r_u^4)`` by fixed-point iteration."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    xd, yd = (xs - cx) / fx, (ys - cy) / fy
    xu, yu = xd.copy(), yd.copy()
    for _ in range(iterations):
        r2 = xu * xu + yu * yu
        f = 1.0 + k1 * r2 + k2 * r2 * r2
        xu, yu = xd / f, yd / f
    return xu * fx + cx, yu * fy + cy


def distortion_margin_px(width: int, height: int, fx: float, fy: float, cx: float, cy: float, k1: float,
                         k2: float) -> int:
    """How many pixels beyond each border of a pinhole render the distorted image needs (its overscan)."""
    mx, my = distortion_source_map(width, height, fx, fy, cx, cy, k1, k2)
    over = max(float(-mx.min()), float(mx.max() - (width - 1)), float(-my.min()), float(my.max() - (height - 1)),
               0.0)
    return int(math.ceil(over)) + 2


def remap_bilinear(img: np.ndarray, mx: np.ndarray, my: np.ndarray) -> np.ndarray:
    """``img [h, w, C]`` float sampled at ``(mx, my)`` ``[H, W]`` (pixel centres at integers, edges clamped)."""
    h, w = img.shape[:2]
    x = np.clip(mx, 0, w - 1.000001)
    y = np.clip(my, 0, h - 1.000001)
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    return (img[y0, x0] * (1 - fx) * (1 - fy) + img[y0, x0 + 1] * fx * (1 - fy)
            + img[y0 + 1, x0] * (1 - fx) * fy + img[y0 + 1, x0 + 1] * fx * fy)


def remap_nearest(img: np.ndarray, mx: np.ndarray, my: np.ndarray) -> np.ndarray:
    """Nearest-pixel lookup (for depth and masks, which must not be interpolated across edges)."""
    h, w = img.shape[:2]
    return img[np.clip(np.rint(my).astype(np.int64), 0, h - 1), np.clip(np.rint(mx).astype(np.int64), 0, w - 1)]


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """sRGB values in [0, 1] -> linear light."""
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """Linear light (clipped to [0, 1]) -> sRGB values in [0, 1]."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def _convolve_separable(img: np.ndarray, k: np.ndarray, axis: int) -> np.ndarray:
    r = len(k) // 2
    pad = [(0, 0)] * img.ndim
    pad[axis] = (r, r)
    p = np.pad(img, pad, mode="edge")
    n = img.shape[axis]
    return sum(w * np.take(p, np.arange(i, i + n), axis=axis) for i, w in enumerate(k))


def _gaussian(img: np.ndarray, sigma: float) -> np.ndarray:
    r = max(1, int(math.ceil(3 * sigma)))
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    k /= k.sum()
    return _convolve_separable(_convolve_separable(img, k, 0), k, 1)


def motion_kernel(length_px: float, angle_deg: float) -> np.ndarray:
    """A normalised line kernel ``[n, n]`` of ``length_px`` pixels at ``angle_deg`` (anti-aliased)."""
    n = max(3, int(math.ceil(length_px)) | 1)
    c = n // 2
    k = np.zeros((n, n))
    a = math.radians(angle_deg)
    for t in np.linspace(-length_px / 2, length_px / 2, max(2, int(4 * length_px))):
        x, y = c + t * math.cos(a), c + t * math.sin(a)
        x0, y0 = int(math.floor(x)), int(math.floor(y))
        fx, fy = x - x0, y - y0
        for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy),
                          (1, 1, fx * fy)):
            if 0 <= x0 + dx < n and 0 <= y0 + dy < n:
                k[y0 + dy, x0 + dx] += w
    return k / k.sum()


def _convolve2d(img: np.ndarray, k: np.ndarray) -> np.ndarray:
    r = k.shape[0] // 2
    p = np.pad(img, ((r, r), (r, r), (0, 0)), mode="edge")
    h, w = img.shape[:2]
    out = np.zeros_like(img)
    for i in range(k.shape[0]):
        for j in range(k.shape[1]):
            if k[i, j] > 0:
                out += k[i, j] * p[i:i + h, j:j + w]
    return out


def apply_camera_effects(img: np.ndarray, params: dict, fx: float, fy: float, cx: float, cy: float,
                         margin: int = 0) -> np.ndarray:
    """The photo of a pinhole render.

    Args:
        img: ``[H + 2 margin, W + 2 margin, 3]`` uint8 sRGB render (``margin`` pixels of overscan on each side,
            see :func:`distortion_margin_px`).
        params: one frame's parameters (:func:`sample_photo_params`).
        fx, fy, cx, cy: intrinsics of the output ``[H, W]`` image (OpenCV pixels).

    Returns:
        ``[H, W, 3]`` float32 sRGB in 0..255 (not yet quantised: noise and JPEG follow).
    """
    x = img.astype(np.float64) / 255.0
    H, W = img.shape[0] - 2 * margin, img.shape[1] - 2 * margin
    if params.get("k1") or params.get("k2"):
        mx, my = distortion_source_map(W, H, fx, fy, cx, cy, params["k1"], params["k2"])
        x = remap_bilinear(x, mx + margin, my + margin)
    elif margin:
        x = x[margin:margin + H, margin:margin + W]
    lin = srgb_to_linear(x)
    if params.get("defocus_px", 0) > 0.05:
        lin = _gaussian(lin, params["defocus_px"])
    if params.get("motion_px", 0) > 0.5:
        lin = _convolve2d(lin, motion_kernel(params["motion_px"], params.get("motion_angle_deg", 0.0)))
    if params.get("vignetting", 0) > 0:
        ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
        r2 = ((xs - cx) / fx) ** 2 + ((ys - cy) / fy) ** 2
        corner = ((W / 2) / fx) ** 2 + ((H / 2) / fy) ** 2
        lin = lin * (1.0 - params["vignetting"] * r2 / corner)[..., None]
    gain = 2.0 ** params.get("exposure_ev", 0.0) * np.asarray(params.get("white_balance", [1, 1, 1]), np.float64)
    lin = lin * gain
    return (linear_to_srgb(lin) * 255.0).astype(np.float32)
