"""Benchmark: render a scene's reference and query views through Blender, localize the queries, report metrics.

Everything is cached under ``--cache`` by content: the dataset folder by ``RenderConfig.digest(scene key)``
(the scene key holds the mesh file's hash and the scale), the feature database by its conf. Each method runs in
its own process (``python -m ml_backend run-method``) so process-wide state (thread pools, imports) never leaks
between methods; a method that cannot run here (missing package or weights) is reported as
``{"skipped": reason}``, one that crashed, failed or timed out as ``{"failed": reason, "exit_code": int|None}``.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from pose_addon.core.dataset import Dataset, DatasetError, atomic_write_json
from pose_addon.core.render_config import LightingConfig, PhotoStyle, RenderConfig, RenderGroup
from pose_addon.core.sampling import SamplerConfig, placement_preset

from . import blender_runner
from .child_process import ChildError, describe_exit, python_command, run_events
from .distributed.cluster import active as distributed_active
from .evaluation import evaluate_results
from .matching.database import build_database
from .methods import REGISTRY
from .paths import CACHE_DIR
from .scenes import DEFAULT_LONGEST_M, SceneSpec, parse_scene

__all__ = ["BenchOptions", "make_render_config", "TRAINING_METHODS", "ensure_dataset", "run_method_subprocess",
           "run_bench", "format_table", "EXIT_UNAVAILABLE"]

EXIT_UNAVAILABLE = 3  # run-method's exit code for "this method cannot run here"
#: Methods that learn from (or retrieve over) the extra training split rendered by :func:`make_train_render_config`.
TRAINING_METHODS = ("regression", "regression+refine", "retrieval_nn_train")


@dataclass
class BenchOptions:
    scene: str = "procedural"
    methods: tuple = ("retrieval_nn", "sift")
    out: Path = Path("runs/bench")
    n_references: int = 100
    n_queries: int = 60
    width: int = 640
    height: int = 480
    scale: Optional[float] = None
    cache: Optional[Path] = None
    engine: str = "CYCLES"
    samples: int = 16
    db_conf: str = "sift"
    method_queries: Optional[dict] = None  # {method: N}: localize only the first N queries (slow rows; recorded)
    progress: bool = True
    viz: bool = True
    n_gl_views: int = 300  # worker-rendered training views added to the references for TRAINING_METHODS
    ground: str = "textured"  # ground under a mesh / the building: textured, plain (feature-poor) or none
    query_blur_px: float = 0.0  # Gaussian blur (sigma, px) of the query images, before their sensor noise
    query_style: str = "render"  # "render" (like the references) or "photo" (PhotoStyle effects, seeded)
    photo_seed: int = 0  # PhotoStyle.seed of photo-style queries
    band: str = "orbit"  # camera band of references and queries: a placement preset (orbit, street)


def make_render_config(spec: SceneSpec, n_references: int, n_queries: int, width: int, height: int,
                       engine: str = "CYCLES", samples: int = 16, query_blur_px: float = 0.0,
                       query_style: str = "render", photo_seed: int = 0, band: str = "orbit") -> RenderConfig:
    """References on a fibonacci shell, queries at random between them with other lighting, sensor noise and
    (``query_blur_px`` > 0) Gaussian blur; ``query_style="photo"`` adds :class:`PhotoStyle` effects (seed
    ``photo_seed``) to the queries.

    ``band="orbit"``: distances 25-40 m and elevations 5-35 deg for a building of 15 m, distances scaled with its
    longest side (queries 26-39 m, 7-33 deg, between the references). Other bands are the placement presets of
    :func:`pose_addon.core.sampling.placement_preset` (``street``: eye height around the building), references
    on a fibonacci layout (seed 0), queries at random in the same band (seed 1).
    """
    if query_style not in ("render", "photo"):
        raise ValueError(f"unknown query style {query_style!r}; choose render or photo")
    f = spec.longest_side_m() / DEFAULT_LONGEST_M
    if band == "orbit":
        ref_s = SamplerConfig(n=n_references, layout="fibonacci", distance=(25.0 * f, 40.0 * f),
                              elevation_deg=(5.0, 35.0), seed=0)
        qry_s = SamplerConfig(n=n_queries, layout="random", distance=(26.0 * f, 39.0 * f), elevation_deg=(7.0, 33.0),
                              seed=1)
    else:
        lo, hi = spec.world_bounds()
        ref_s = placement_preset(band, lo, hi, n=n_references, seed=0, layout="fibonacci")
        qry_s = placement_preset(band, lo, hi, n=n_queries, seed=1, layout="random")
    ref = RenderGroup("reference", ref_s, LightingConfig(), noise_std=0.0)
    qry = RenderGroup("query", qry_s,
                      LightingConfig(sun_elevation_deg=(25.0, 70.0), sun_azimuth_deg=(0.0, 360.0),
                                     sun_strength=(2.5, 4.5), world_strength=(0.3, 0.7),
                                     world_color=(0.85, 0.85, 0.95)),
                      noise_std=3.0, blur_px=float(query_blur_px),
                      photo=PhotoStyle(seed=int(photo_seed)) if query_style == "photo" else None)
    cfg = RenderConfig(groups=[ref, qry], width=width, height=height, engine=engine, samples=samples)
    cfg.validate()
    return cfg


def _dataset_ready(path: Path, cfg: RenderConfig) -> bool:
    try:
        ds = Dataset.load(path)
    except DatasetError:
        return False
    if not ds.complete:
        return False
    for g in cfg.groups:
        frames = ds.split(g.split)
        if len(frames) < g.sampler.n or not all(ds.has_frame_files(f.id) for f in frames):
            return False
    return True


def ensure_dataset(spec: SceneSpec, cfg: RenderConfig, cache: Path, progress: bool = True) -> Path:
    """The cached dataset folder of ``spec`` + ``cfg``, rendering (or finishing) it through Blender if needed."""
    digest = cfg.digest(spec.key())
    ds_dir = cache / "datasets" / f"{spec.name}-{digest}"
    if _dataset_ready(ds_dir, cfg):
        return ds_dir
    cfg_path = cache / "datasets" / f"{spec.name}-{digest}.render.json"
    atomic_write_json(cfg_path, cfg.to_dict())
    render = blender_runner.render_dataset
    if distributed_active():  # --ray: frame ranges as Ray tasks, merged into the same folder
        from .distributed.render import render_dataset as render
    render(spec.spec, cfg_path, ds_dir, cache, scale=spec.scale, progress=progress, ground=spec.ground,
           up_axis=spec.up_axis)
    if not _dataset_ready(ds_dir, cfg):
        raise DatasetError(f"Blender finished but {ds_dir} is not a complete dataset")
    return ds_dir


def run_method_subprocess(name: str, dataset_dir: Path, workdir: Path, conf: dict, out_json: Path,
                          timeout_s: Optional[float] = None) -> dict:
    """Run one method in a fresh worker process.

    Returns ``{"rows": [...]}``, ``{"skipped": reason}`` (the method cannot run here: exit code
    :data:`EXIT_UNAVAILABLE`) or ``{"failed": reason, "exit_code": rc}`` (it crashed, failed or timed out; a
    signal is a negative ``rc``, e.g. -11 for a segmentation fault, reported by a shell as 139).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = python_command("ml_backend", "run-method", "--method", name, "--dataset", dataset_dir, "--workdir", workdir,
                         "--conf", json.dumps(conf), "--out", out_json)
    try:
        res = run_events(cmd, timeout_s=timeout_s, tail_lines=40)
    except ChildError as e:  # could not start, or timed out
        return {"failed": str(e), "exit_code": None}
    rc = res.returncode
    if rc and conf.get("progress", True):
        sys.stderr.write("\n".join(res.stderr_tail) + "\n")
    if rc in (0, EXIT_UNAVAILABLE) and out_json.is_file():
        return json.loads(out_json.read_text())
    last = " | ".join([x for x in res.stderr_tail if x.strip()][-3:])
    return {"failed": f"{'crashed' if rc < 0 else 'failed'}: {describe_exit(rc)}" + (f": {last}" if last else ""),
            "exit_code": rc}


def format_table(results: dict) -> str:
    """Plain-text table of results.json's methods."""
    keys = ["0.05m,1deg", "0.25m,2deg", "0.5m,5deg", "5m,10deg"]
    head = f"{'method':<14}" + "".join(f"{k:>12}" for k in keys) + f"{'med t (m)':>11}{'med R (deg)':>12}" \
        f"{'localized':>10}{'ms/query':>10}"
    style = "".join(f", {k} {results[k]}" for k in ("band", "query_style", "photo_seed") if k in results)
    lines = [f"scene {results['scene']}: {results['n_references']} references, {results['n_queries']} queries"
             + style,
             head, "-" * len(head)]

    def fmt(v, spec):
        return "-" if v is None else format(v, spec)

    for name, m in results["methods"].items():
        if "skipped" in m:
            lines.append(f"{name:<14}skipped: {m['skipped']}")
            continue
        if "failed" in m:
            lines.append(f"{name:<14}FAILED: {m['failed']}")
            continue
        sub = f" (first {m['n_queries_evaluated']} queries)" if m.get("n_queries_evaluated") else ""
        if m.get("refine_ms_per_query") is not None:
            sub += f" (refinement {m['refine_ms_per_query']:.0f} ms/query, kept on {m['refined_share']:.0%})"
        lines.append(f"{name:<14}" + "".join(f"{fmt(m['recall'][k], '.3f'):>12}" for k in keys)
                     + f"{fmt(m['median_t_m'], '.4f'):>11}{fmt(m['median_R_deg'], '.4f'):>12}"
                     + f"{fmt(m['localized'], '.3f'):>10}{fmt(m['ms_per_query'], '.1f'):>10}" + sub)
        if m.get("details"):
            lines.append(f"{'':<14}" + json.dumps(m["details"], separators=(",", ":"))[:300])
    return "\n".join(lines)


def run_bench(opts: BenchOptions, dataset_dir: Optional[Path] = None) -> dict:
    """Run the benchmark and write ``opts.out/results.json``; returns the results dict.

    Args:
        opts: see :class:`BenchOptions`.
        dataset_dir: use this dataset instead of rendering one (tests, or a dataset rendered elsewhere).
    """
    unknown = [m for m in opts.methods if m not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; available: {', '.join(REGISTRY)}")
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(opts.cache) if opts.cache else CACHE_DIR
    rendered = dataset_dir is None
    if rendered:
        spec = parse_scene(opts.scene, opts.scale, opts.ground)  # fails on a missing mesh before Blender starts
        cfg = make_render_config(spec, opts.n_references, opts.n_queries, opts.width, opts.height, opts.engine,
                                 opts.samples, opts.query_blur_px, opts.query_style, opts.photo_seed, opts.band)
        dataset_dir = ensure_dataset(spec, cfg, cache, opts.progress)
    ds = Dataset.load(dataset_dir)
    build = build_database
    if distributed_active():  # --ray: reference frames in chunks as Ray tasks, merged into the same file
        from .distributed.features import build_database as build
    db_path = build(ds.root, cache / "features" / ds.root.name, opts.db_conf, progress=opts.progress)
    scene_label = opts.scene if rendered else str(ds.scene.get("source") or ds.scene.get("name") or ds.root.name)
    results = {"scene": scene_label, "n_references": len(ds.split("reference")),
               "n_queries": len(ds.split("query")), "methods": {}}
    if rendered:  # how the scene and queries were rendered, when this run rendered them
        results.update(ground=opts.ground, query_blur_px=opts.query_blur_px, query_style=opts.query_style,
                       band=opts.band)
        if opts.query_style == "photo":
            results["photo_seed"] = opts.photo_seed
        # what each split cost to render (photo-style queries: materials, sky, occluders, overscan, effects)
        results["render_s_per_frame"] = {sp: round(sum(f.extras.get("render_s", 0.0) for f in ds.split(sp))
                                                   / max(1, len(ds.split(sp))), 3) for sp in ("reference", "query")}
    per_query = {}
    for name in opts.methods:
        conf = {"database": str(db_path), "progress": opts.progress, "cache": str(cache)}
        n_sub = (opts.method_queries or {}).get(name)
        if n_sub:
            conf["max_queries"] = int(n_sub)
        if name.removesuffix("+refine") in TRAINING_METHODS:  # one training set and model shared by these, cached
            conf.update(regression_dir=str(cache / "regression" / ds.root.name), n_gl_views=opts.n_gl_views)
        res = run_method_subprocess(name, ds.root, out / "work" / name, conf, out / f"{name}_queries.json")
        if "skipped" in res or "failed" in res:
            results["methods"][name] = res
            sys.stderr.write(f"{name}: {res.get('failed') or 'skipped: ' + res['skipped']}\n")
            continue
        metrics, rows = evaluate_results(res["rows"], _QuerySubset(ds, n_sub) if n_sub else ds)
        metrics.pop("n_queries", None)
        for key in ("n_train", "matcher"):  # recorded by the training methods
            if res["rows"] and key in res["rows"][0]:
                metrics[key] = res["rows"][0][key]
        t_ref = [r["t_refine_s"] for r in res["rows"] if r.get("cam_from_world") is not None and "t_refine_s" in r]
        if t_ref:  # METHOD+refine: the refinement's own share of ms/query (its time is included there)
            metrics["refine_ms_per_query"] = 1000.0 * sum(t_ref) / len(t_ref)
            metrics["refined_share"] = sum(bool(r.get("refined")) for r in res["rows"]) / len(res["rows"])
        if n_sub:
            metrics["n_queries_evaluated"] = min(int(n_sub), len(ds.split("query")))
        details = out / "work" / name / "method_metrics.json"  # optional extra metrics a method writes
        if details.is_file():
            metrics["details"] = json.loads(details.read_text())
            if "median_keypoint_px" in metrics["details"]:  # keypoint rows: the detector's (or oracle's) error
                metrics["median_keypoint_px"] = metrics["details"]["median_keypoint_px"]
        results["methods"][name] = metrics
        per_query[name] = (res["rows"], rows)
    atomic_write_json(out / "results.json", results)
    atomic_write_json(out / "errors.json", {n: {"t_err_m": [_finite(r["t_err_m"]) for r in rows],
                                                "R_err_deg": [_finite(r["R_err_deg"]) for r in rows]}
                                            for n, (_, rows) in per_query.items()})
    if opts.viz and per_query:
        _write_figures(ds, out, per_query)
    return results


def _finite(x: float) -> Optional[float]:
    return None if x is None or x == float("inf") else float(x)


def plot_runs(run_dirs: list, out_png: Path) -> Path:
    """One recall figure of several bench runs (e.g. render-style and photo-style queries of one scene): each
    method of each run labelled with its run's query style and band. Reads ``results.json`` and ``errors.json``."""
    from . import viz

    curves = {}
    for d in run_dirs:
        d = Path(d)
        res = json.loads((d / "results.json").read_text())
        err = json.loads((d / "errors.json").read_text())
        tag = ", ".join(str(res[k]) for k in ("query_style", "band") if k in res) or d.name
        for name, e in err.items():
            inf = float("inf")
            curves[f"{name} ({tag})"] = ([inf if v is None else v for v in e["t_err_m"]],
                                         [inf if v is None else v for v in e["R_err_deg"]])
    return viz.plot_recall_curves(curves, out_png)


class _QuerySubset:
    """A dataset view whose query split is its first ``n`` queries (rows run on a subset, recorded as such)."""

    def __init__(self, ds: Dataset, n: int):
        self._ds, self._n = ds, int(n)

    def split(self, name: str) -> list:
        frames = self._ds.split(name)
        return frames[: self._n] if name == "query" else frames


def _write_figures(ds: Dataset, out: Path, per_query: dict) -> None:
    from . import viz

    viz.plot_recall_curves({n: ([r["t_err_m"] for r in rows], [r["R_err_deg"] for r in rows])
                            for n, (_, rows) in per_query.items()}, out / "recall.png")
    for name, (results, rows) in per_query.items():
        if name == "retrieval_nn":
            continue
        done = [(r["t_err_m"], r["id"]) for r in rows if r["t_err_m"] != float("inf")]
        if not done:
            continue
        done.sort()
        qid = done[len(done) // 2][1]  # the median query
        est = next(r["cam_from_world"] for r in results if r["id"] == qid)
        try:
            viz.draw_model_edges(ds, ds.frame(qid), est, out / f"{name}_{qid}_edges.png")
        except (FileNotFoundError, ValueError) as e:
            sys.stderr.write(f"no edge overlay for {name}: {e}\n")

