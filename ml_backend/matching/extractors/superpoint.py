"""SuperPoint (MagicLeap architecture) local features; weights: the user's ``superpoint_v1.pth`` (see
:mod:`..weights`)."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .base import Features, LearnedExtractor, cached, merge_defaults

__all__ = ["default_conf", "merge_conf", "extract"]

#: ``resize_max``: longest image side the network sees; ``weights``: the file, else torch hub's checkpoints
default_conf: dict[str, Any] = {"name": "superpoint", "max_keypoints": 2048, "detection_threshold": 0.005,
                                "nms_radius": 4, "remove_borders": 4, "resize_max": 640, "weights": None,
                                "random_weights_for_tests": False}


def merge_conf(conf: Optional[dict]) -> dict:
    """:data:`default_conf` updated with ``conf`` (unknown keys are an error)."""
    return merge_defaults(default_conf, conf)


def _superpoint_net():
    import torch
    from torch import nn

    class SuperPointNet(nn.Module):
        """SuperPoint: image ``[B, 1, H, W]`` in [0, 1] -> scores ``[B, H, W]``, descriptors ``[B, 256, H/8, W/8]``."""

        def __init__(self) -> None:
            super().__init__()
            c1, c2, c3, c4, c5, d1 = 64, 64, 128, 128, 256, 256
            self.relu = nn.ReLU(inplace=True)
            self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
            self.conv1a = nn.Conv2d(1, c1, 3, 1, 1)
            self.conv1b = nn.Conv2d(c1, c1, 3, 1, 1)
            self.conv2a = nn.Conv2d(c1, c2, 3, 1, 1)
            self.conv2b = nn.Conv2d(c2, c2, 3, 1, 1)
            self.conv3a = nn.Conv2d(c2, c3, 3, 1, 1)
            self.conv3b = nn.Conv2d(c3, c3, 3, 1, 1)
            self.conv4a = nn.Conv2d(c3, c4, 3, 1, 1)
            self.conv4b = nn.Conv2d(c4, c4, 3, 1, 1)
            self.convPa = nn.Conv2d(c4, c5, 3, 1, 1)
            self.convPb = nn.Conv2d(c5, 65, 1, 1, 0)
            self.convDa = nn.Conv2d(c4, c5, 3, 1, 1)
            self.convDb = nn.Conv2d(c5, d1, 1, 1, 0)

        def forward(self, x):
            r = self.relu
            x = r(self.conv1b(r(self.conv1a(x))))
            x = r(self.conv2b(r(self.conv2a(self.pool(x)))))
            x = r(self.conv3b(r(self.conv3a(self.pool(x)))))
            x = r(self.conv4b(r(self.conv4a(self.pool(x)))))
            semi = self.convPb(r(self.convPa(x)))
            scores = torch.softmax(semi, 1)[:, :-1]
            b, _, h, w = scores.shape
            scores = scores.permute(0, 2, 3, 1).reshape(b, h, w, 8, 8).permute(0, 1, 3, 2, 4).reshape(b, h * 8, w * 8)
            desc = torch.nn.functional.normalize(self.convDb(r(self.convDa(x))), p=2, dim=1)
            return scores, desc

    return SuperPointNet()


class SuperPoint(LearnedExtractor):
    def __init__(self, conf: dict):
        super().__init__(conf)
        import torch

        from ..weights import find_user_weights, load_state_dict

        self.net = _superpoint_net().eval()
        if not conf["random_weights_for_tests"]:
            self.net.load_state_dict(load_state_dict(find_user_weights("superpoint", conf["weights"])), strict=True)
        else:
            torch.manual_seed(0)

    def detect(self, gray: np.ndarray, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import torch
        import torch.nn.functional as F

        c, img = self.conf, gray
        h, w = img.shape
        h8, w8 = h - h % 8, w - w % 8
        x = torch.from_numpy(img[:h8, :w8].astype(np.float32) / 255.0)[None, None]
        scores, desc = self.net(x)
        s = scores[0]
        r = int(c["nms_radius"])
        pooled = F.max_pool2d(s[None, None], 2 * r + 1, 1, r)[0, 0]
        keep = (s == pooled) & (s > float(c["detection_threshold"]))
        b = int(c["remove_borders"])
        keep[:b] = False
        keep[-b:] = False
        keep[:, :b] = False
        keep[:, -b:] = False
        yx = torch.nonzero(keep)
        sc = s[yx[:, 0], yx[:, 1]]
        order = torch.argsort(-sc)[: int(c["max_keypoints"])]
        yx, sc = yx[order], sc[order]
        kp = yx.flip(1).float()  # (x, y) pixel centres at integers
        # sample descriptors at keypoints (cell centres at 8 i + 3.5)
        grid = (kp + 0.5) / torch.tensor([w8, h8]) * 2 - 1
        d = F.grid_sample(desc, grid[None, None], mode="bilinear", align_corners=False)[0, :, 0].T
        d = F.normalize(d, p=2, dim=1)
        return kp.numpy(), d.numpy(), sc.numpy()


def extract(image: np.ndarray, conf: Optional[dict] = None) -> Features:
    """SuperPoint features of ``image`` (``[H, W]`` grey or ``[H, W, 3]`` RGB uint8), OpenCV pixel convention."""
    return cached(merge_conf(conf), SuperPoint)(image)
