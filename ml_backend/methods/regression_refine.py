"""Regression + render-and-compare refinement: the regressed pose, refined against worker-side renders of the
dataset's ``scene.glb`` (moderngl) with SIFT matching (``matcher`` in each row) and poselib PnP.

A query whose refinement fails keeps the regressed pose (``refined: false``).
"""
from __future__ import annotations

import time
from pathlib import Path

from tqdm import tqdm

from pose_addon.core.dataset import Dataset

from . import MethodUnavailable
from ._common import result_row
from .regression import predict_queries

__all__ = ["run", "MATCHER", "estimate_images"]

MATCHER = "sift+bf-ratio (OpenCV RootSIFT, poselib PnP)"


def run(dataset: Dataset, workdir: Path, conf: dict) -> list[dict]:
    """Per-query results; ``conf["refine"]`` overrides :data:`ml_backend.regression.refine.default_conf`."""
    from ..regression.refine import refine_pose
    from ..render import RendererUnavailable, SceneRenderer

    glb = dataset.path(dataset.scene.get("gltf") or "scene.glb")
    try:
        renderer = SceneRenderer(glb)
    except (RendererUnavailable, FileNotFoundError) as e:
        raise MethodUnavailable(f"no worker-side render of {glb}: {e}") from e
    rows = []
    with renderer:
        for q, rgb, T0, dt, n_train in tqdm(predict_queries(dataset, workdir, conf), desc="regression+refine",
                                            unit="query", disable=not conf.get("progress", True)):
            t0 = time.perf_counter()
            r = refine_pose(rgb, q.intrinsics, T0, renderer, conf.get("refine"))
            t_ref = time.perf_counter() - t0
            rows.append(result_row(q.id, r.cam_from_world, dt + t_ref, n_train=n_train, t_infer_s=dt,
                                   t_refine_s=t_ref, refined=r.success, iterations=r.iterations,
                                   n_inliers=r.n_inliers, matcher=MATCHER, message=r.message))
    return rows


def estimate_images(images: list[str], intrinsics: list, conf: dict, progress=None) -> list[dict]:
    """Regressed poses refined by render-and-compare against ``conf["scene_glb"]`` (or ``conf["dataset"]``'s
    ``scene.glb``), with each photo's own intrinsics."""
    from ..regression.extractors import load_rgb
    from ..regression.refine import refine_pose
    from ..render import RendererUnavailable, SceneRenderer
    from .regression import estimate_images as regress

    glb = conf.get("scene_glb")
    if not glb and conf.get("dataset"):
        ds = Dataset.load(conf["dataset"])
        glb = ds.path(ds.scene.get("gltf") or "scene.glb")
    if not glb or not Path(glb).is_file():
        raise FileNotFoundError(f"refinement needs the building as glTF: give conf 'scene_glb' or a 'dataset' "
                                f"with scene.glb (got {glb!r})")
    rows = regress(images, intrinsics, conf)
    try:
        renderer = SceneRenderer(Path(glb))
    except RendererUnavailable as e:
        raise MethodUnavailable(f"no worker-side render of {glb}: {e}") from e
    with renderer:
        for i, (row, intr) in enumerate(zip(rows, intrinsics)):
            t0 = time.perf_counter()
            r = refine_pose(load_rgb(row["image"]), intr, row["cam_from_world"], renderer, conf.get("refine"))
            row.update(cam_from_world=r.cam_from_world, inliers=int(r.n_inliers), refined=bool(r.success),
                       iterations=r.iterations, matcher=MATCHER, message=r.message)
            row["timings"]["refine"] = time.perf_counter() - t0
            if progress:
                progress((i + 1) / len(rows), f"{Path(row['image']).name}: {r.n_inliers} inliers")
    return rows
