"""Local feature extractors as plugins: the module ``<name>.py`` of this package is the extractor ``<name>``.

A plugin module has ``default_conf`` (its parameters, ``name`` included), ``merge_conf(conf) -> dict`` (the defaults
updated, unknown keys refused) and ``extract(image, conf) -> Features`` (``image``: ``[H, W]`` grey or
``[H, W, 3]`` RGB uint8; keypoints in OpenCV pixel convention, top-left pixel centre at (0, 0)). Modules are
imported only when used (the learned ones need torch). Adding an extractor: one module here and its test.
"""
from __future__ import annotations

from types import ModuleType
from typing import Optional

import numpy as np

from ..plugins import import_plugin, plugin_names
from .base import Features, ImageReadError, load_image_gray

__all__ = ["Features", "ImageReadError", "load_image_gray", "names", "plugin", "merge_any_conf", "extract_features"]

_NOT_PLUGINS = ("base",)


def names() -> list[str]:
    """The extractors this package holds (its public modules)."""
    return plugin_names(__path__, _NOT_PLUGINS)


def plugin(name: str) -> ModuleType:
    """The module of extractor ``name``; ValueError naming the known ones for another name."""
    return import_plugin(__name__, __path__, name, "extractor", _NOT_PLUGINS)


def merge_any_conf(conf: Optional[dict]) -> dict:
    """A full extractor conf (``name`` defaults to sift)."""
    conf = dict(conf or {})
    return plugin(conf.get("name", "sift")).merge_conf(conf)


def extract_features(image: np.ndarray, conf: Optional[dict] = None) -> Features:
    """Features of ``image`` (``[H, W]`` grey or ``[H, W, 3]`` RGB uint8) by extractor ``conf["name"]``."""
    c = merge_any_conf(conf)
    return plugin(c["name"]).extract(image, c)
