"""``METHOD+refine`` for every method: the method's poses refined by rendering at the estimate
(:class:`ml_backend.refine.Refiner` on the dataset's ``scene.glb``): :class:`RefinedMethod` wraps the opened
method for photos, :func:`for_method` gives the benchmark's ``run``.

``refine`` (in the options, or the benchmark's conf) overrides :data:`ml_backend.refine.default_conf`;
``scene_glb`` names the building when there is no dataset; the rest goes to the method.
A query the method did not localize stays unlocalized; a refinement that does not raise the edge score keeps
the method's pose (``refine.stage == "initial"``). Each row's ``time_s`` includes the refinement, also given
alone as ``t_refine_s``.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import numpy as np

from pose_addon.core.cameras import Intrinsics
from pose_addon.core.dataset import Dataset

from ..progress import progress_bar
from . import MethodUnavailable
from .interface import Estimate, Method

__all__ = ["for_method", "RefinedMethod", "scene_of", "SUFFIX", "MATCHER"]

SUFFIX = "+refine"
MATCHER = "render at the estimate: SIFT + PnP, then model edges vs sub-pixel Canny edges (scipy least squares)"


def _open_refiner(glb: Path, conf: dict):
    from ..refine import Refiner
    from ..render import RendererUnavailable

    try:
        return Refiner(glb, conf.get("refine"))
    except RendererUnavailable as e:
        raise MethodUnavailable(f"no worker-side render of {glb}: {e}") from e


def _load_rgb(path) -> np.ndarray:
    import cv2

    from ..matching.extractors import ImageReadError

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ImageReadError(f"cannot read image {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _refine_fields(r) -> dict:
    return {"refined": bool(r.refined), "refine": {"stage": r.stage, "score_initial": r.score_initial,
                                                   "score": r.score, "n_inliers": r.n_inliers,
                                                   "time_s": r.time_s, "message": r.message}}


def for_method(base: str) -> SimpleNamespace:
    """A method namespace (``run``, ``estimate_images``) refining the poses of registry method ``base``."""
    from . import get_method

    base_mod = get_method(base)

    def run(dataset: Dataset, workdir: Path, conf: dict) -> list[dict]:
        rows = base_mod.run(dataset, workdir, conf)  # imports the method's torch stack before the GL context
        glb = dataset.path(dataset.scene.get("gltf") or "scene.glb")
        if not glb.is_file():
            raise MethodUnavailable(f"refinement needs the building as glTF; {glb} is missing")
        with _open_refiner(glb, conf) as ref:
            for row in progress_bar(rows, desc=f"{base}{SUFFIX}", unit="query", disable=not conf.get("progress", True)):
                if row.get("cam_from_world") is None:
                    row.update(refined=False, t_refine_s=0.0)
                    continue
                q = dataset.frame(row["id"])
                r = ref.refine(_load_rgb(dataset.path(q.image)), q.intrinsics, np.asarray(row["cam_from_world"]))
                row.update(cam_from_world=r.cam_from_world.tolist(), time_s=float(row["time_s"]) + r.time_s,
                           t_refine_s=r.time_s, **_refine_fields(r))
        return rows

    return SimpleNamespace(run=run, __name__=f"{base}{SUFFIX}")


def scene_of(dataset: Optional[Dataset], scene_glb: Optional[str]) -> Path:
    """The building to render: ``scene_glb``, else ``dataset``'s glTF; FileNotFoundError when there is none."""
    glb = Path(scene_glb) if scene_glb else None
    if glb is None and dataset is not None:
        glb = dataset.path(dataset.scene.get("gltf") or "scene.glb")
    if glb is None or not glb.is_file():
        raise FileNotFoundError(f"refinement needs the building as glTF: give option 'scene_glb' or a dataset with "
                                f"scene.glb (got {glb})")
    return glb


class RefinedMethod(Method):
    """An opened method whose accepted poses are refined by rendering at them; failures stay failures."""

    def __init__(self, base: Method, scene: Path, refine_conf: Optional[dict] = None):
        self.base, self.name = base, f"{base.name}{SUFFIX}"
        try:
            self.refiner = _open_refiner(scene, {"refine": refine_conf})
        except BaseException:
            base.close()
            raise

    def close(self) -> None:
        try:
            self.refiner.close()
        finally:
            self.base.close()

    def estimate(self, image, intrinsics: Intrinsics, estimate_focal: bool = False) -> Estimate:
        e = self.base.estimate(image, intrinsics, estimate_focal=estimate_focal)
        timings = dict(e.extras.get("timings", {}))
        if not e.success or e.cam_from_world is None:
            timings["refine"] = 0.0
            return dataclasses.replace(e, extras={**e.extras, "refined": False, "timings": timings})
        rgb = image if isinstance(image, np.ndarray) else _load_rgb(image)
        r = self.refiner.refine(rgb, e.intrinsics, np.asarray(e.cam_from_world))
        timings["refine"] = r.time_s
        return dataclasses.replace(e, cam_from_world=r.cam_from_world, time_s=e.time_s + r.time_s,
                                   extras={**e.extras, **_refine_fields(r), "matcher": MATCHER, "timings": timings})
