"""``METHOD+refine`` for every method: the method's poses refined by rendering at the estimate
(:class:`ml_backend.refine.Refiner` on the dataset's ``scene.glb``).

``conf["refine"]`` overrides :data:`ml_backend.refine.default_conf`; the rest of ``conf`` goes to the method.
A query the method did not localize stays unlocalized; a refinement that does not raise the edge score keeps
the method's pose (``refine.stage == "initial"``). Each row's ``time_s`` includes the refinement, also given
alone as ``t_refine_s``.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from pose_addon.core.dataset import Dataset

from ..progress import progress_bar
from . import MethodUnavailable

__all__ = ["for_method", "SUFFIX", "MATCHER"]

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

    from ..features.sift import ImageReadError

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

    def estimate_images(images: list[str], intrinsics: list, conf: dict, progress: Callable = None) -> list[dict]:
        if not hasattr(base_mod, "estimate_images"):
            raise MethodUnavailable(f"method {base!r} cannot estimate single photos")
        glb = conf.get("scene_glb")
        if not glb and conf.get("dataset"):
            ds = Dataset.load(conf["dataset"])
            glb = ds.path(ds.scene.get("gltf") or "scene.glb")
        if not glb or not Path(glb).is_file():
            raise FileNotFoundError(f"refinement needs the building as glTF: give conf 'scene_glb' or a 'dataset' "
                                    f"with scene.glb (got {glb!r})")
        rows = base_mod.estimate_images(images, intrinsics, conf)
        with _open_refiner(Path(glb), conf) as ref:
            for i, (row, intr) in enumerate(zip(rows, intrinsics)):
                row["matcher"] = MATCHER
                row.setdefault("timings", {})
                if row.get("cam_from_world") is None:
                    row.update(refined=False)
                    row["timings"]["refine"] = 0.0
                    continue
                if row.get("intrinsics"):  # the method estimated the focal length
                    from pose_addon.core.cameras import Intrinsics

                    intr = Intrinsics.from_dict(row["intrinsics"])
                t0 = time.perf_counter()
                r = ref.refine(_load_rgb(row["image"]), intr, np.asarray(row["cam_from_world"]))
                row.update(cam_from_world=r.cam_from_world, **_refine_fields(r))
                row["timings"]["refine"] = time.perf_counter() - t0
                if progress:
                    progress((i + 1) / len(rows), f"{Path(row['image']).name}: {r.stage}")
        return rows

    return SimpleNamespace(run=run, estimate_images=estimate_images, __name__=f"{base}{SUFFIX}")
