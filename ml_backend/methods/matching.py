"""The matching methods: every preset of :mod:`ml_backend.matching.presets` (but the variants) and the ensemble,
run through :class:`.interface.MatchingMethod`.

Benchmark conf keys: ``database`` (the SIFT database: retrieval votes and, for dense matchers, the reference list),
``localize`` (:data:`ml_backend.matching.localize.default_conf` overrides), ``matcher`` (preset overrides),
``max_queries`` (localize only the first N queries; the bench records it), ``ensemble``
(:data:`ml_backend.matching.localize.ensemble_conf` overrides).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

from pose_addon.core.dataset import Dataset

from ..matching.database import build_database
from ..matching.localize import EnsembleLocalizer, Localizer, ensemble_conf
from ..matching.presets import resolve
from ..matching.weights import MissingWeightsError
from ..progress import progress_bar
from . import MethodUnavailable
from ._common import ensure_database, result_row

__all__ = ["for_preset", "make_run", "open_localizer", "matcher_database", "bench_options"]


def matcher_database(dataset: Dataset, sift_db: Path, preset: str, conf: dict) -> Path:
    """The feature database of ``preset`` (built next to the SIFT one, cached); the SIFT one for dense matchers."""
    mc = resolve({"name": preset, **({"matcher": conf["matcher"]} if conf.get("matcher") else {})})
    if mc["features"] is None or preset in ("sift",):
        return sift_db
    return build_database(dataset.root, Path(sift_db).parent, preset, progress=conf.get("progress", True))


def open_localizer(preset: str, dataset: Optional[Dataset], workdir: Path, conf: dict):
    """A Localizer (or EnsembleLocalizer) for ``preset`` on ``dataset``'s references; databases built or reused
    (``dataset`` may be None for ``sift`` with ``conf["database"]``)."""
    sift_db = ensure_database(dataset, workdir, conf)
    lconf = dict(conf.get("localize") or {})
    try:
        if preset == "ensemble":
            e = {**ensemble_conf, **(conf.get("ensemble") or {})}
            dbs = {m: matcher_database(dataset, sift_db, m, {}) for m in e["members"]}
            return EnsembleLocalizer(dbs, {**lconf, "retrieval_db": str(sift_db)}, e)
        db = matcher_database(dataset, sift_db, preset, conf)
        mconf = {"name": preset, **({"matcher": conf["matcher"]} if conf.get("matcher") else {})}
        return Localizer(db, {**lconf, "matcher": mconf, "retrieval_db": str(sift_db)})
    except (MissingWeightsError, ImportError) as err:
        raise MethodUnavailable(str(err)) from err


#: keys of a bench conf's ``localize`` dict that are :class:`~.interface.MatchingOptions` fields
_OPTION_KEYS = ("k", "k_fallback", "threshold_px", "min_inliers", "pnp_backend", "resize_max", "retrieval",
                "verify_k")


def bench_options(conf: dict) -> dict:
    """:class:`~.interface.MatchingOptions` of a bench conf (``localize``, ``matcher``, ``ensemble`` dicts and
    ``options``)."""
    loc = dict(conf.get("localize") or {})
    opts = {k: loc.pop(k) for k in _OPTION_KEYS if k in loc}
    return {**opts, "localize": loc, "matcher": dict(conf.get("matcher") or {}),
            "ensemble": dict(conf.get("ensemble") or {}), **dict(conf.get("options") or {})}


def make_run(preset: str) -> Callable:
    """A method ``run(dataset, workdir, conf) -> rows`` localizing the queries with matcher ``preset`` (or
    "ensemble") through the method interface (:func:`~.interface.open_method`)."""

    def run(dataset: Dataset, workdir: Path, conf: dict) -> list[dict]:
        from .interface import open_method

        queries = dataset.split(conf.get("split", "query"))
        if conf.get("max_queries"):
            queries = queries[: int(conf["max_queries"])]
        rows = []
        try:
            method = open_method(preset, dataset, workdir, bench_options(conf), database=conf.get("database"),
                                 progress=conf.get("progress", True))
        except (MissingWeightsError, ImportError) as err:
            raise MethodUnavailable(str(err)) from err
        with method:
            for q in progress_bar(queries, desc=preset, unit="query", disable=not conf.get("progress", True)):
                e = method.estimate(str(dataset.path(q.image)), q.intrinsics)
                rows.append(result_row(q.id, e.cam_from_world, e.time_s, n_inliers=e.n_inliers,
                                       n_matches=e.n_matches, reproj_error_px=e.reproj_error_px,
                                       inlier_ratio=e.inlier_ratio, confidence=e.confidence,
                                       retrieved=e.retrieved, timings=e.extras.get("timings", {}),
                                       message=e.reason or e.message))
        return rows

    return run


def for_preset(preset: str) -> SimpleNamespace:
    """The method namespace of matcher ``preset`` (or "ensemble"): ``run`` for the benchmark."""
    return SimpleNamespace(run=make_run(preset), __name__=f"{__name__}:{preset}")
