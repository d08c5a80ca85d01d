"""What every local feature extractor shares: the :class:`Features` it returns, image reading, conf merging, and
the resize-then-map-back wrapper of the learned (torch) extractors.

Keypoints are always in OpenCV pixel convention of the *original* image (top-left pixel centre at (0, 0)),
whatever resolution a network saw.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import cv2
import numpy as np

__all__ = ["Features", "ImageReadError", "load_image_gray", "to_gray", "merge_defaults", "LearnedExtractor",
           "cached"]


class ImageReadError(RuntimeError):
    """An image file is missing or cannot be decoded."""


@dataclass
class Features:
    """Local features of one image.

    Attributes:
        keypoints: ``[N, 2]`` float32, (x, y) in OpenCV pixel convention.
        descriptors: ``[N, D]`` float32, L2-normalised.
        scales: ``[N]`` float32 keypoint sizes in pixels (0 when the extractor has none).
        scores: ``[N]`` float32 detector responses.
        image_size: (width, height).
    """

    keypoints: np.ndarray
    descriptors: np.ndarray
    scales: np.ndarray
    scores: np.ndarray
    image_size: tuple

    def __len__(self) -> int:
        return len(self.keypoints)


def merge_defaults(defaults: dict[str, Any], conf: Optional[dict]) -> dict:
    """``defaults`` updated with ``conf``; keys ``defaults`` lacks are an error naming the extractor (typos)."""
    conf = dict(conf or {})
    unknown = set(conf) - set(defaults)
    if unknown:
        raise ValueError(f"unknown {defaults['name']} options {sorted(unknown)}; known: {sorted(defaults)}")
    return {**defaults, **conf}


def load_image_gray(path: Path | str) -> np.ndarray:
    """Read an image file as 8-bit grey ``[H, W]``; raises :class:`ImageReadError` with the reason."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"image not found: {path}")
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
    if img is None:
        raise ImageReadError(f"cannot decode image {path} (not a PNG/JPEG/... file, or truncated)")
    return img


def to_gray(image: np.ndarray) -> np.ndarray:
    """``[H, W]`` uint8 grey of an ``[H, W]``, ``[H, W, 3]`` RGB or ``[H, W, 4]`` RGBA image (uint8 or [0, 1])."""
    img = np.asarray(image)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY if img.shape[2] == 3 else cv2.COLOR_RGBA2GRAY)
    if img.dtype != np.uint8:
        img = np.clip(img * (255.0 if img.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    return img


def resize_max(img: np.ndarray, longest: Optional[int], multiple: int = 1) -> tuple[np.ndarray, float, float]:
    """``img`` downscaled so its longest side is at most ``longest`` and each side a multiple of ``multiple``;
    returns it with the factors ``(sx, sy)`` from its pixels back to the original's."""
    h, w = img.shape[:2]
    s = min(1.0, float(longest) / max(h, w)) if longest else 1.0
    nw = max(multiple, int(round(w * s / multiple)) * multiple)
    nh = max(multiple, int(round(h * s / multiple)) * multiple)
    if (nw, nh) == (w, h):
        return img, 1.0, 1.0
    return cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA), w / nw, h / nh


class LearnedExtractor:
    """Base of the torch extractors: a subclass loads its network in ``__init__`` and implements :meth:`detect`;
    calling the extractor resizes the image to ``conf["resize_max"]``, sorts strongest first and maps keypoints
    back to the original image's pixels."""

    #: the side lengths the network needs to be a multiple of
    multiple: int = 1

    def __init__(self, conf: dict):
        from ..weights import set_torch_threads

        set_torch_threads()
        self.conf = conf

    def detect(self, gray: np.ndarray, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Keypoints ``[N, 2]`` (pixel centres at integers), descriptors ``[N, D]``, scores ``[N]`` of one resized
        image given as grey ``[h, w]`` and RGB ``[h, w, 3]`` uint8 (under ``torch.inference_mode``)."""
        raise NotImplementedError

    def __call__(self, image: np.ndarray) -> Features:
        """Features of an image ``[H, W]`` grey or ``[H, W, 3]`` RGB uint8; strongest first."""
        import torch

        img = np.asarray(image)
        gray = to_gray(img)
        h, w = gray.shape
        rgb = cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB) if img.ndim == 2 else img[..., :3]
        small_rgb, sx, sy = resize_max(rgb, self.conf["resize_max"], self.multiple)
        small_gray = resize_max(gray, self.conf["resize_max"], self.multiple)[0]
        with torch.inference_mode():
            kp, desc, sc = self.detect(small_gray, small_rgb)
        order = np.argsort(-sc, kind="stable")
        kp, desc, sc = kp[order], desc[order], sc[order]
        kp = np.stack([(kp[:, 0] + 0.5) * sx - 0.5, (kp[:, 1] + 0.5) * sy - 0.5], 1) if len(kp) else \
            np.zeros((0, 2))
        return Features(kp.astype(np.float32), np.ascontiguousarray(desc, np.float32), np.zeros(len(kp), np.float32),
                        sc.astype(np.float32), (w, h))


_LOADED: dict[str, Any] = {}


def cached(conf: dict, build: Callable[[dict], Any]) -> Any:
    """``build(conf)``, once per process and conf (networks and COLMAP's SIFT are loaded once)."""
    key = json.dumps(conf, sort_keys=True)
    if key not in _LOADED:
        _LOADED[key] = build(conf)
    return _LOADED[key]
