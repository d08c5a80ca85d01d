"""Local feature extractors by name. Each returns keypoints in OpenCV pixel convention (top-left pixel centre at
0, 0).

:data:`EXTRACTORS` maps a name to the module implementing it; such a module has ``merge_conf(conf) -> dict`` (its
defaults updated, unknown keys refused) and ``extract(image, conf) -> Features`` (``image``: ``[H, W]`` grey or
``[H, W, 3]`` RGB uint8). ``sift`` is OpenCV's, ``colmap_sift`` COLMAP's (pycolmap), the others are the learned ones
of :mod:`.learned`, imported only when used since they need torch. Adding an extractor: one module and its entry.
"""
import importlib
from types import ModuleType
from typing import Optional

import numpy as np

from .sift import Features, default_conf, extract, load_image_gray

__all__ = ["Features", "default_conf", "extract", "load_image_gray", "EXTRACTORS", "extract_features",
           "merge_any_conf"]

#: extractor name -> module (relative to this package)
EXTRACTORS: dict[str, str] = {"sift": ".sift", "colmap_sift": ".colmap_sift", "aliked": ".learned",
                              "disk": ".learned", "xfeat": ".learned", "superpoint": ".learned"}


def _plugin(name: str) -> ModuleType:
    if name not in EXTRACTORS:
        raise ValueError(f"unknown extractor {name!r}; known: {', '.join(EXTRACTORS)}")
    return importlib.import_module(EXTRACTORS[name], __name__)


def merge_any_conf(conf: Optional[dict]) -> dict:
    """A full extractor conf (``name`` defaults to sift)."""
    conf = dict(conf or {})
    return _plugin(conf.get("name", "sift")).merge_conf(conf)


def extract_features(image: np.ndarray, conf: Optional[dict] = None) -> Features:
    """Features of ``image`` (``[H, W]`` grey or ``[H, W, 3]`` RGB uint8) by extractor ``conf["name"]``."""
    c = merge_any_conf(conf)
    return _plugin(c["name"]).extract(image, c)
