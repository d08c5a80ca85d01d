"""BuildingPoseNetCached: an MLP over cached image features -> camera pose.

Pose parametrization (world = Blender world, camera = OpenCV axes):
  * translation: ``t`` of cam_from_world (the world origin in camera axes; default, what the image shows
    directly: where the building sits and how large) or the camera centre ``c = -R^T t``, normalized by the
    scene as ``(x - centre) / scale`` (``[B, 3]``; centre and scale stored in the checkpoint);
  * rotation: ``R`` of ``cam_from_world`` as continuous 6D (first two columns, ``[B, 6]``, Zhou et al. 2019) or a
    unit quaternion (w, x, y, z).
``cam_from_world = [R | t]`` (or ``[R | -R c]``).
"""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["BuildingPoseNetCached", "sixd_to_matrix", "quat_to_matrix", "matrix_to_sixd", "geodesic_deg",
           "PoseLoss"]


def sixd_to_matrix(d6: torch.Tensor) -> torch.Tensor:
    """``[B, 6]`` (two columns a1, a2) -> rotation ``[B, 3, 3]`` by Gram-Schmidt."""
    a1, a2 = d6[:, :3], d6[:, 3:]
    b1 = nn.functional.normalize(a1, dim=1)
    b2 = nn.functional.normalize(a2 - (b1 * a2).sum(1, keepdim=True) * b1, dim=1)
    b3 = torch.cross(b1, b2, dim=1)
    return torch.stack([b1, b2, b3], dim=2)


def matrix_to_sixd(R: torch.Tensor) -> torch.Tensor:
    """Rotation ``[B, 3, 3]`` -> ``[B, 6]`` (its first two columns)."""
    return torch.cat([R[:, :, 0], R[:, :, 1]], dim=1)


def quat_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """``[B, 4]`` (w, x, y, z), any norm -> ``[B, 3, 3]``."""
    w, x, y, z = nn.functional.normalize(q, dim=1).unbind(1)
    return torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], 1).view(-1, 3, 3)


def geodesic_deg(Ra: torch.Tensor, Rb: torch.Tensor) -> torch.Tensor:
    """Angle between rotations ``[B, 3, 3]`` in degrees ``[B]``."""
    M = Ra.transpose(1, 2) @ Rb
    cos = (M.diagonal(dim1=1, dim2=2).sum(1) - 1) / 2
    v = torch.stack([M[:, 2, 1] - M[:, 1, 2], M[:, 0, 2] - M[:, 2, 0], M[:, 1, 0] - M[:, 0, 1]], 1)
    sin = 0.5 * torch.sqrt((v * v).sum(1) + 1e-24)  # atan2 stays accurate (and differentiable) near 0 and 180
    return torch.rad2deg(torch.atan2(sin, cos))


class BuildingPoseNetCached(nn.Module):
    """MLP over a feature vector ``[B, D]`` -> (normalized translation ``[B, 3]``, rotation ``[B, 3, 3]``).

    Args:
        in_dim: feature length D.
        hidden: widths of the hidden layers.
        rotation: ``"6d"`` or ``"quat"``.
        dropout: dropout after each hidden layer.
    """

    def __init__(self, in_dim: int, hidden: tuple = (1024, 512), rotation: str = "6d", dropout: float = 0.1):
        super().__init__()
        if rotation not in ("6d", "quat"):
            raise ValueError(f"rotation must be '6d' or 'quat', got {rotation!r}")
        self.rotation = rotation
        layers, d = [nn.LayerNorm(in_dim)], in_dim
        for h in hidden:
            layers += [nn.Linear(d, h), nn.GELU(), nn.Dropout(dropout)]
            d = h
        self.trunk = nn.Sequential(*layers)
        self.head_t = nn.Linear(d, 3)
        self.head_r = nn.Linear(d, 6 if rotation == "6d" else 4)

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(feats)
        r = self.head_r(h)
        R = sixd_to_matrix(r) if self.rotation == "6d" else quat_to_matrix(r)
        return self.head_t(h), R


class PoseLoss(nn.Module):
    """``L = L_t * exp(-s_t) + s_t + L_R * exp(-s_R) + s_R`` (Kendall & Cipolla, learned) or ``L_t + beta L_R``.

    ``L_t`` is the L1 distance of normalized translations, ``L_R`` the L1 distance of rotation matrices' entries,
    plus ``geodesic_weight`` x geodesic angle (radians) when > 0.
    """

    def __init__(self, learned: bool = True, beta: float = 1.0, s_t: float = 0.0, s_r: float = -3.0,
                 geodesic_weight: float = 0.0):
        super().__init__()
        self.learned, self.beta, self.geodesic_weight = learned, beta, geodesic_weight
        self.s_t = nn.Parameter(torch.tensor(float(s_t)), requires_grad=learned)
        self.s_r = nn.Parameter(torch.tensor(float(s_r)), requires_grad=learned)

    def forward(self, c_pred, R_pred, c_gt, R_gt) -> tuple[torch.Tensor, dict]:
        lt = (c_pred - c_gt).abs().sum(1).mean()
        lr = (R_pred - R_gt).abs().sum((1, 2)).mean()
        if self.geodesic_weight > 0:
            lr = lr + self.geodesic_weight * torch.deg2rad(geodesic_deg(R_pred, R_gt)).mean()
        if self.learned:
            loss = lt * torch.exp(-self.s_t) + self.s_t + lr * torch.exp(-self.s_r) + self.s_r
        else:
            loss = lt + self.beta * lr
        return loss, {"loss_t": float(lt.detach()), "loss_R": float(lr.detach())}
