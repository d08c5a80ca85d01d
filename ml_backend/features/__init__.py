"""Local feature extractors. Each returns keypoints in OpenCV pixel convention (top-left pixel centre at 0, 0).

:data:`EXTRACTORS` lists them by name; :func:`extract_features` dispatches on ``conf["name"]`` (``sift`` is
OpenCV's, the others are the learned ones of :mod:`.learned`, imported lazily since they need torch).
"""
from typing import Optional

import numpy as np

from .sift import Features, default_conf, extract, load_image_gray

__all__ = ["Features", "default_conf", "extract", "load_image_gray", "EXTRACTORS", "extract_features",
           "merge_any_conf"]

EXTRACTORS = ("sift", "aliked", "disk", "xfeat", "superpoint")


def merge_any_conf(conf: Optional[dict]) -> dict:
    """A full extractor conf (``name`` defaults to sift)."""
    conf = dict(conf or {})
    name = conf.get("name", "sift")
    if name == "sift":
        from .sift import merge_conf

        return merge_conf(conf)
    from .learned import merge_conf

    return merge_conf(conf)


def extract_features(image: np.ndarray, conf: Optional[dict] = None) -> Features:
    """Features of ``image`` (``[H, W]`` grey or ``[H, W, 3]`` RGB uint8) by extractor ``conf["name"]``."""
    c = merge_any_conf(conf)
    if c["name"] == "sift":
        return extract(image, c)
    from .learned import extract as learned_extract

    return learned_extract(image, c)
