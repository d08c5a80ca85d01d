"""Oracle for the keypoint method: PnP from the ground-truth keypoints in the image plus Gaussian pixel noise.

The noise matches the detector: per-axis sigma = (the ``keypoints`` method's median keypoint error (over all
keypoints in the image) on this dataset's queries) / sqrt(2 ln 2), read from the cache when that method ran
first; else ``conf["noise_px"]`` (default 2 px). It separates detector error from geometry (keypoint layout,
PnP). The method's details (``method_metrics.json``) also hold a sweep at fixed noise (``conf["noise_sweep_px"]``,
default 1, 2, 3, 5 px): the detector accuracy each pose threshold needs with this keypoint layout.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pose_addon.core.dataset import Dataset, atomic_write_json

__all__ = ["run"]


def run(dataset: Dataset, workdir: Path, conf: dict) -> list[dict]:
    """Per-query results on the ``query`` split (needs the queries' depth for the visibility labels)."""
    from ..keypoints import pipeline
    from ..keypoints.labels import keypoint_set_for_dataset

    c = dict(pipeline.default_conf, **conf)
    cache = Path(c.get("cache") or pipeline.default_cache()).resolve()
    kset = keypoint_set_for_dataset(dataset, c["keypoints"], int(c["n_keypoints"]))
    noise, source = float(c.get("noise_px", 2.0)), "conf"
    det = cache / "keypoints" / f"{dataset.root.name}.detector.json"
    if "noise_px" not in conf and det.is_file():
        med = json.loads(det.read_text()).get("median_err_px")
        if med is not None:
            noise, source = float(med) / pipeline.RAYLEIGH_MEDIAN, str(det)
    from ..evaluation import evaluate_results

    errs: list = []
    rows = pipeline.oracle_queries(dataset, kset, noise, c, errors_out=errs)
    sweep = {}
    for n in c.get("noise_sweep_px", (1.0, 2.0, 3.0, 5.0)):
        m, _ = evaluate_results(pipeline.oracle_queries(dataset, kset, float(n), c), dataset)
        sweep[f"{float(n):g}px"] = {"recall": m["recall"], "median_t_m": m["median_t_m"],
                                    "median_R_deg": m["median_R_deg"]}
    atomic_write_json(Path(workdir) / "method_metrics.json", {"noise_px": noise, "noise_from": source,
                                                              "median_keypoint_px": float(np.median(errs))
                                                              if errs else None,
                                                              "n_keypoints": len(kset), "fixed_noise": sweep})
    return rows
