"""Localization methods by name. Each module exposes ``run(dataset, workdir, conf) -> list[dict]``.

A per-query result is ``{"id", "cam_from_world": 4x4 nested list (OpenCV axes) or None, "time_s", ...}``.
A method that cannot run here (missing weights, package, ...) raises :class:`MethodUnavailable`.
"""
from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["REGISTRY", "BENCHMARK_ONLY", "MethodUnavailable", "get_method", "available", "for_photos"]

REGISTRY: dict[str, str] = {
    "retrieval_nn": "ml_backend.methods.retrieval_nn",  # pose of the top-1 retrieved reference (baseline)
    "sift": "ml_backend.methods.sift",  # retrieval + SIFT matching + PnP on depth-lifted points
    "regression": "ml_backend.methods.regression",  # BuildingPoseNetCached: one forward pass
    "retrieval_nn_train": "ml_backend.methods.retrieval_nn_train",  # NN over exactly the regression's training set
    "keypoints": "ml_backend.methods.keypoints",  # YOLO pose keypoints (trained on renders) + PnP
    "keypoints_oracle": "ml_backend.methods.keypoints_oracle",  # PnP from ground-truth keypoints + matched noise
    # the matchers of ml_backend.matchers (same retrieval, same PnP)
    "colmap": "ml_backend.methods.colmap",  # peer: COLMAP SIFT (pycolmap) + COLMAP's matching rule
    "aliked+lightglue": "ml_backend.methods.aliked_lightglue",
    "disk+lightglue": "ml_backend.methods.disk_lightglue",
    "xfeat+lighterglue": "ml_backend.methods.xfeat_lighterglue",
    "superpoint+lightglue": "ml_backend.methods.superpoint_lightglue",
    "loftr": "ml_backend.methods.loftr",
    "ensemble": "ml_backend.methods.ensemble",
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


def get_method(name: str) -> ModuleType:
    """The module implementing ``name`` (for ``METHOD+refine``, a namespace with ``run``/``estimate_images``);
    raises KeyError for unknown names, MethodUnavailable on import failure."""
    if name not in REGISTRY:
        raise KeyError(f"unknown method {name!r}; available: {', '.join(REGISTRY)}")
    if name.endswith("+refine"):
        from .refined import for_method

        return for_method(name[: -len("+refine")])
    try:
        return importlib.import_module(REGISTRY[name])
    except ImportError as e:
        raise MethodUnavailable(f"cannot import {REGISTRY[name]}: {e}") from e
