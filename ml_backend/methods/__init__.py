"""Localization methods by name. Each registry entry is a module with ``run(dataset, workdir, conf) -> rows`` (the
benchmark's queries) and, for the methods that are not matching methods, ``estimate_images`` (photos); every
method is opened the same way through :func:`.interface.open_method`.

The matching methods are the presets of :mod:`ml_backend.matching.presets` (every preset but the variants) and the
``ensemble``: a new preset is a new method without touching this file. Every method also exists as
``METHOD+refine`` (:mod:`.refined`). A per-query row is ``{"id", "cam_from_world": 4x4 nested list (OpenCV axes)
or None, "time_s", ...}``. A method that cannot run here (missing weights, package, ...) raises
:class:`MethodUnavailable`.
"""
from __future__ import annotations

import importlib
from types import ModuleType, SimpleNamespace
from typing import Union

from ..matching.presets import method_presets

__all__ = ["REGISTRY", "MATCHING_METHODS", "BENCHMARK_ONLY", "MethodUnavailable", "get_method", "available",
           "for_photos"]

#: methods that localize by local feature matching (retrieval, matching, lifting, PnP): every preset + ensemble
MATCHING_METHODS: tuple[str, ...] = (*method_presets(), "ensemble")

REGISTRY: dict[str, str] = {
    "retrieval_nn": "ml_backend.methods.retrieval_nn",  # pose of the top-1 retrieved reference (baseline)
    **{name: "ml_backend.methods.matching" for name in MATCHING_METHODS},
    "regression": "ml_backend.methods.regression",  # BuildingPoseNetCached: one forward pass
    "retrieval_nn_train": "ml_backend.methods.retrieval_nn_train",  # NN over exactly the regression's training set
    "keypoints": "ml_backend.methods.keypoints",  # keypoint model (trained on renders) + PnP
    "keypoints_oracle": "ml_backend.methods.keypoints_oracle",  # PnP from ground-truth keypoints + matched noise
}
#: every method + refinement by rendering at its estimate (``ml_backend.refine``), e.g. ``sift+refine``
REGISTRY.update({f"{name}+refine": "ml_backend.methods.refined" for name in list(REGISTRY)
                 if name not in ("keypoints_oracle",)})

#: methods that need the benchmark's ground truth or training split (bounds and baselines, not for a user's photo)
BENCHMARK_ONLY = ("keypoints_oracle", "retrieval_nn_train")


def for_photos(name: str) -> bool:
    """Whether method ``name`` (or ``name`` without ``+refine``) can localize a user's photo."""
    return name.removesuffix("+refine") not in BENCHMARK_ONLY


class MethodUnavailable(RuntimeError):
    """The method cannot run in this environment; the message says why (reported as skipped)."""


def available() -> list[str]:
    return list(REGISTRY)


def get_method(name: str) -> Union[ModuleType, SimpleNamespace]:
    """The module implementing ``name`` (a namespace with ``run`` for a matching method or ``METHOD+refine``);
    raises KeyError for unknown names, MethodUnavailable on import failure."""
    if name not in REGISTRY:
        raise KeyError(f"unknown method {name!r}; available: {', '.join(REGISTRY)}")
    if name.endswith("+refine"):
        from .refined import for_method

        return for_method(name[: -len("+refine")])
    try:
        module = importlib.import_module(REGISTRY[name])
    except ImportError as e:
        raise MethodUnavailable(f"cannot import {REGISTRY[name]}: {e}") from e
    return module.for_preset(name) if name in MATCHING_METHODS else module
