"""hloc-style localization metrics: camera-centre distance, geodesic rotation angle, recalls, medians.

An unlocalized query has infinite error. Medians are taken over *all* queries (so they stay honest when some
fail) and are None when fewer than half are localized. Everything returned is JSON-safe (no inf / nan).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Optional

import numpy as np

from pose_addon.core.cameras import camera_center
from pose_addon.core.dataset import Dataset, atomic_write_json, json_safe
from pose_addon.core.poses import rotation_angle_deg

__all__ = ["THRESHOLDS", "threshold_key", "pose_error", "summarize", "evaluate_results", "write_metrics"]

#: (metres, degrees) pairs of hloc's outdoor recalls.
THRESHOLDS: tuple = ((0.05, 1.0), (0.25, 2.0), (0.5, 5.0), (5.0, 10.0))


def threshold_key(t_m: float, r_deg: float) -> str:
    """``"0.25m,2deg"`` style key."""
    return f"{t_m:g}m,{r_deg:g}deg"


def pose_error(cam_from_world_est: Optional[np.ndarray], cam_from_world_gt: np.ndarray) -> tuple[float, float]:
    """(translation error in metres, rotation error in degrees); (inf, inf) when the estimate is None.

    Translation error is the distance between camera centres ``c = -R^T t``, not between translation vectors.
    """
    if cam_from_world_est is None:
        return float("inf"), float("inf")
    est = np.asarray(cam_from_world_est, np.float64)
    gt = np.asarray(cam_from_world_gt, np.float64)
    if not np.isfinite(est).all():
        return float("inf"), float("inf")
    dt = float(np.linalg.norm(camera_center(est) - camera_center(gt)))
    return dt, rotation_angle_deg(est[:3, :3], gt[:3, :3])


def _median(errors: np.ndarray, n_localized: int) -> Optional[float]:
    n = len(errors)
    if n == 0 or 2 * n_localized < n:
        return None
    e = np.sort(errors)
    m = float(np.median(e))
    return m if np.isfinite(m) else float(e[(n - 1) // 2])  # exactly half localized: the lower median


def summarize(t_errors: Sequence[float], r_errors: Sequence[float], times_s: Iterable[float] = (),
              thresholds: tuple = THRESHOLDS) -> dict:
    """Metrics of one method over its queries.

    Args:
        t_errors: ``[Q]`` translation errors in metres (inf = not localized).
        r_errors: ``[Q]`` rotation errors in degrees (inf = not localized).
        times_s: per-query run times in seconds.

    Returns:
        ``{"recall": {"0.05m,1deg": r, ...}, "median_t_m", "median_R_deg", "localized", "ms_per_query",
        "n_queries"}`` (medians None when fewer than half are localized; ms None without times).
    """
    t = np.asarray(list(t_errors), np.float64)
    r = np.asarray(list(r_errors), np.float64)
    if t.shape != r.shape:
        raise ValueError(f"{len(t)} translation errors but {len(r)} rotation errors")
    n = len(t)
    loc = np.isfinite(t) & np.isfinite(r)
    recall = {threshold_key(tm, rd): (float(np.mean((t <= tm) & (r <= rd))) if n else None)
              for tm, rd in thresholds}
    times = np.asarray(list(times_s), np.float64)
    return json_safe({
        "recall": recall,
        "median_t_m": _median(t, int(loc.sum())),
        "median_R_deg": _median(r, int(loc.sum())),
        "localized": float(loc.mean()) if n else None,
        "ms_per_query": float(1000.0 * times.mean()) if times.size else None,
        "n_queries": n,
    })


def evaluate_results(results: Sequence[dict], dataset: Dataset, split: str = "query") -> tuple[dict, list[dict]]:
    """Compare per-query results with the dataset's ground truth.

    Args:
        results: dicts with ``id``, ``cam_from_world`` (4x4 nested list or None) and ``time_s``.
        dataset: the dataset holding the ground-truth poses of ``split``.

    Returns:
        (metrics as :func:`summarize`, per-query rows ``{"id", "t_err_m", "R_err_deg"}``); a query of the split
        with no result counts as unlocalized.
    """
    by_id = {r["id"]: r for r in results}
    rows, times = [], []
    for fr in dataset.split(split):
        r = by_id.get(fr.id)
        est = None if r is None or r.get("cam_from_world") is None else np.asarray(r["cam_from_world"])
        dt, dr = pose_error(est, fr.cam_from_world)
        rows.append({"id": fr.id, "t_err_m": dt, "R_err_deg": dr})
        if r is not None and r.get("time_s") is not None:
            times.append(float(r["time_s"]))
    metrics = summarize([x["t_err_m"] for x in rows], [x["R_err_deg"] for x in rows], times)
    return metrics, rows


def write_metrics(path: Path | str, metrics: dict) -> None:
    """Strict JSON (inf/nan as null), atomically."""
    atomic_write_json(path, metrics)
