"""One job in its own process: ``python -m ml_backend.service.job_runner --kind K --params P.json --result R.json``.

Run by :class:`ml_backend.service.jobs.JobManager`, which reads progress from stdout (one JSON object per line:
``{"event": "progress", "progress": 0..1, "stage": str, "message": str}``) and the result from ``--result``
(written atomically; absent when the job failed). A failure prints ``{"event": "error", "code", "message"}`` and
exits 1. The process exits as soon as its parent (the worker) is gone, so a killed worker leaves no orphan job;
outputs are written through temporary names (the database as ``.partial``), so a killed job never leaves a
half-written file under its final name.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

from .. import progress

__all__ = ["KINDS", "main", "validate"]

_out_lock = threading.Lock()
_stdout = sys.stdout


def emit(event: dict) -> None:
    from .protocol import encode_payload

    line = encode_payload(event).decode("utf-8") + "\n"
    with _out_lock:
        try:
            _stdout.write(line)
            _stdout.flush()
        except (BrokenPipeError, OSError):  # the worker is gone
            os._exit(1)


class _Reporter:
    """The job process's progress sink (:mod:`ml_backend.progress`): throttled ``progress`` events on stdout."""

    def __init__(self):
        self._last = 0.0

    def __call__(self, progress: Optional[float], stage: str, message: str = "", force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < 0.2:
            return
        self._last = now
        emit({"event": "progress", "progress": None if progress is None else max(0.0, min(1.0, float(progress))),
              "stage": stage, "message": message})


report = _Reporter()


# ------------------------------------------------------------------------------------------------ parameters
class ParamError(ValueError):
    """A job parameter is missing or wrong (``code``: invalid_params or not_found)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def _get(params: dict, name: str, kind, default: Any = ..., check: Optional[Callable[[Any], bool]] = None):
    if name not in params or params[name] is None:
        if default is ...:
            raise ParamError("invalid_params", f"missing parameter {name!r}")
        return default
    v = params[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(v, bool) and bool not in kinds or not isinstance(v, kinds):
        names = "/".join(k.__name__ for k in kinds)
        raise ParamError("invalid_params", f"parameter {name!r} must be {names}, got {type(v).__name__}")
    if check is not None and not check(v):
        raise ParamError("invalid_params", f"parameter {name!r} has an invalid value {v!r}")
    return v


def _existing_dir(params: dict, name: str) -> Path:
    p = Path(_get(params, name, str)).expanduser()
    if not p.is_dir():
        raise ParamError("not_found", f"{name}: folder not found: {p}")
    return p


def _v_build_database(params: dict, work_dir: Path) -> dict:
    ds = _existing_dir(params, "dataset")
    if not (ds / "manifest.json").is_file():
        raise ParamError("not_found", f"dataset: {ds} has no manifest.json (not a dataset folder)")
    out = params.get("out")
    out = Path(_get(params, "out", str)).expanduser() if out is not None else work_dir / "features" / ds.name
    conf = _get(params, "conf", (str, dict), "sift")
    return {"dataset": str(ds), "out": str(out), "conf": conf}


def _v_scene_look(params: dict) -> dict:
    """``ground`` (textured / plain / none) and ``query_blur`` (Gaussian sigma in px, >= 0) of a rendered scene."""
    from ..scenes import GROUND_STYLES

    return {"ground": _get(params, "ground", str, "textured", lambda v: v in GROUND_STYLES),
            "query_blur": float(_get(params, "query_blur", (int, float), 0.0, lambda v: v >= 0))}


def _v_render(params: dict, work_dir: Path) -> dict:
    from pose_addon.core.render_config import ENGINES

    pos = lambda v: v > 0  # noqa: E731
    out = {"scene": _get(params, "scene", str, "procedural"),
           "out": str(Path(_get(params, "out", str)).expanduser()),
           "n_references": _get(params, "n_references", int, 0, lambda v: v >= 0),
           "n_queries": _get(params, "n_queries", int, 10, lambda v: v >= 0),
           "width": _get(params, "width", int, 640, pos), "height": _get(params, "height", int, 480, pos),
           "engine": _get(params, "engine", str, ENGINES[0], lambda v: v in ENGINES),
           "samples": _get(params, "samples", int, 16, pos),
           "scale": _get(params, "scale", (int, float), None), **_v_scene_look(params)}
    if out["n_references"] + out["n_queries"] == 0:
        raise ParamError("invalid_params", "nothing to render: n_references + n_queries is 0")
    return out


def _v_benchmark(params: dict, work_dir: Path) -> dict:
    methods = _get(params, "methods", list, ["retrieval_nn", "sift"])
    if not all(isinstance(m, str) for m in methods):
        raise ParamError("invalid_params", "parameter 'methods' must be a list of names")
    from ..methods import REGISTRY

    unknown = [m for m in methods if m not in REGISTRY]
    if unknown:
        raise ParamError("invalid_params", f"unknown methods {unknown}; available: {', '.join(REGISTRY)}")
    pos = lambda v: v > 0  # noqa: E731
    ds = params.get("dataset")
    return {"scene": _get(params, "scene", str, "procedural"), "methods": methods,
            "out": str(Path(_get(params, "out", str, str(work_dir / "bench"))).expanduser()),
            "dataset": str(_existing_dir(params, "dataset")) if ds is not None else None,
            "n_references": _get(params, "n_references", int, 100, pos),
            "n_queries": _get(params, "n_queries", int, 60, pos),
            "width": _get(params, "width", int, 640, pos), "height": _get(params, "height", int, 480, pos),
            "engine": _get(params, "engine", str, "CYCLES"), "samples": _get(params, "samples", int, 16, pos),
            "cache": _get(params, "cache", str, None), **_v_scene_look(params)}


def _v_estimate(params: dict, work_dir: Path) -> dict:
    from ..methods import REGISTRY

    path = Path(_get(params, "path", str)).expanduser()
    if not path.exists():
        raise ParamError("not_found", f"path: photo or folder not found: {path}")
    method = _get(params, "method", str, "sift", lambda m: m in REGISTRY)
    conf = dict(_get(params, "conf", dict, {}))
    for key in ("database", "dataset", "checkpoint", "model"):
        if conf.get(key) is not None and not Path(str(conf[key])).expanduser().exists():
            raise ParamError("not_found", f"conf.{key}: not found: {conf[key]}")
    if not any(conf.get(k) for k in ("database", "dataset", "checkpoint", "model")):
        raise ParamError("invalid_params", "conf needs a 'database' or 'dataset' (matching), a 'checkpoint' "
                         "(regression) or a 'model' (keypoints)")
    conf.setdefault("workdir", str(work_dir / "estimate"))
    conf["progress"] = False
    intr = _get(params, "intrinsics", dict, {"source": "exif"})
    return {"path": str(path), "method": method, "conf": conf, "intrinsics": intr}


def _v_localize(params: dict, work_dir: Path) -> dict:
    """``localize``: photos against a model or a dataset (see :mod:`ml_backend.localize_photos`)."""
    from pose_addon.core.sampling import PRESETS

    from ..intrinsics import IntrinsicsError, parse_intrinsics_arg
    from ..methods import REGISTRY

    model, dataset = params.get("model"), params.get("dataset")
    if bool(model) == bool(dataset):
        raise ParamError("invalid_params", "give exactly one of 'model' (a mesh file) or 'dataset' (a folder)")
    src = Path(_get(params, "model" if model else "dataset", str)).expanduser()
    if not src.exists():
        raise ParamError("not_found", f"{'model' if model else 'dataset'}: not found: {src}")
    photos = _get(params, "photos", (str, list))
    photos = [photos] if isinstance(photos, str) else photos
    for ph in photos:
        if not isinstance(ph, str) or not Path(ph).expanduser().exists():
            raise ParamError("not_found", f"photos: not found: {ph}")
    intr = _get(params, "intrinsics", str, "exif")
    try:
        parse_intrinsics_arg(intr)
    except IntrinsicsError as e:
        raise ParamError("invalid_params", str(e)) from None
    return {"model": str(src) if model else None, "dataset": str(src) if dataset else None, "photos": photos,
            "out": str(Path(_get(params, "out", str, str(work_dir / "localize"))).expanduser()),
            "intrinsics": intr, "method": _get(params, "method", str, "sift", lambda m: m in REGISTRY),
            "options": dict(_get(params, "options", dict, {})), "up_axis": _get(params, "up_axis", str, None),
            "scale": _get(params, "scale", (int, float), None, lambda v: v > 0),
            "preset": _get(params, "preset", str, "street", lambda v: v in PRESETS),
            "n_references": _get(params, "n_references", int, 60, lambda v: v > 0),
            "cache": _get(params, "cache", str, None)}


def _v_train(params: dict, work_dir: Path) -> dict:
    ds = _existing_dir(params, "dataset")
    if not (ds / "manifest.json").is_file():
        raise ParamError("not_found", f"dataset: {ds} has no manifest.json (not a dataset folder)")
    conf = dict(_get(params, "conf", dict, {}))
    return {"dataset": str(ds), "conf": conf, "workdir": str(work_dir)}


def _v_sleep(params: dict, work_dir: Path) -> dict:
    return {"seconds": float(_get(params, "seconds", (int, float), 1.0, lambda v: 0 <= v <= 3600)),
            "out": _get(params, "out", str, None)}


# ------------------------------------------------------------------------------------------------ job bodies
def _run_build_database(p: dict) -> dict:
    from ..matching.database import build_database

    report(0.0, "database", "loading dataset", force=True)
    path = build_database(p["dataset"], p["out"], p["conf"], progress=True)
    return {"database": str(path)}


def _run_render(p: dict) -> dict:
    from pose_addon.core.dataset import atomic_write_json

    from .. import blender_runner
    from ..bench import make_render_config
    from ..scenes import parse_scene

    spec = parse_scene(p["scene"], p["scale"], p["ground"])
    cfg = make_render_config(spec, max(1, p["n_references"]), max(1, p["n_queries"]), p["width"], p["height"],
                             p["engine"], p["samples"], p["query_blur"])
    cfg.groups = [g for g in cfg.groups if (g.split == "reference" and p["n_references"] > 0)
                  or (g.split == "query" and p["n_queries"] > 0)]
    out = Path(p["out"])
    cfg_path = out.parent / f".{out.name}.render.json"
    atomic_write_json(cfg_path, cfg.to_dict())

    cmd = ["render-dataset", "--scene", spec.spec, "--config", str(cfg_path), "--out", str(out)]
    if spec.scale is not None:
        cmd += ["--scale", repr(float(spec.scale))]
    if spec.ground != "textured":
        cmd += ["--ground", spec.ground]
    report(0.0, "render", "starting Blender", force=True)
    ev = blender_runner.run_headless(cmd, Path(p.get("cache") or out.parent / ".blender-cache"), progress=False,
                                     desc="render")
    return {"dataset": str(ev.get("dataset", out))}


def _run_benchmark(p: dict) -> dict:
    from ..bench import BenchOptions, format_table, run_bench

    opts = BenchOptions(scene=p["scene"], methods=tuple(p["methods"]), out=Path(p["out"]),
                        n_references=p["n_references"], n_queries=p["n_queries"], width=p["width"],
                        height=p["height"], engine=p["engine"], samples=p["samples"],
                        cache=Path(p["cache"]) if p["cache"] else None, progress=True, viz=False,
                        ground=p["ground"], query_blur_px=p["query_blur"])
    results = run_bench(opts, Path(p["dataset"]) if p["dataset"] else None)
    return {"results": results, "table": format_table(results), "out": str(Path(p["out"]) / "results.json")}


def _run_estimate(p: dict) -> dict:
    from ..estimate import estimate_photos

    report(0.0, "estimate", f"{p['method']} on {Path(p['path']).name}", force=True)
    rows = estimate_photos(p["path"], p["method"], p["conf"], p["intrinsics"],
                           progress=progress.stage_reporter("estimate"))
    return {"estimates": rows, "n_localized": sum(1 for r in rows if r.get("success"))}


def _run_localize(p: dict) -> dict:
    from ..localize_photos import LocalizeOptions, localize_photos

    report(0.0, "localize", "references", force=True)
    opts = LocalizeOptions(photos=p["photos"], out=Path(p["out"]), model=p["model"], dataset=p["dataset"],
                           intrinsics=p["intrinsics"], method=p["method"], options=p["options"],
                           up_axis=p["up_axis"], scale=p["scale"], preset=p["preset"],
                           n_references=p["n_references"], cache=Path(p["cache"]) if p["cache"] else None)
    res = localize_photos(opts, on_progress=progress.stage_reporter("localize"))
    return {"poses": str(Path(p["out"]) / "poses.json"), "summary": res["summary"]}


def _run_train_regression(p: dict) -> dict:
    """Train (or reuse) the regression checkpoint of a dataset's scene: GL training views, features, network."""
    from pose_addon.core.dataset import Dataset

    from ..regression.pipeline import ensure_checkpoint

    report(0.0, "regression", "preparing training data", force=True)
    ds = Dataset.load(p["dataset"])
    folder = f"{ds.root.name}-{ds.digest(ds.reference_frames())}"  # keyed by the references, not the folder name
    conf = {"regression_dir": str(Path(p["workdir"]) / "regression" / folder), "progress": True, **p["conf"]}
    ckpt, train_ds = ensure_checkpoint(ds, Path(p["workdir"]), conf)
    return {"checkpoint": str(ckpt), "train_dataset": str(train_ds)}


def _run_train_keypoints(p: dict) -> dict:
    """Label, train or reuse the keypoint model of a dataset's scene (:func:`ml_backend.keypoints.pipeline.
    ensure_model`); its training reports through the progress channel (heatmap: the share of the time budget spent,
    YOLO: epochs of its child process), so the job's progress follows it."""
    from pose_addon.core.dataset import Dataset

    from ..keypoints import pipeline

    report(0.0, "keypoints", "preparing labelled renders", force=True)
    ds = Dataset.load(p["dataset"])
    conf = {"cache": str(Path(p["workdir"]) / "cache"), **p["conf"]}

    model = pipeline.ensure_model(ds, conf)
    model.kset.save(Path(model.weights).parent / "keypoints.json", scene=str(ds.scene.get("name", "")))
    return {"model": str(model.weights), "n_keypoints": len(model.kset), "train": model.train_info}


def _run_sleep(p: dict) -> dict:
    """Diagnostic job: waits ``seconds`` with progress; writes ``out`` (atomically) at the end if given."""
    n = max(1, int(p["seconds"] * 20))
    for i in range(n):
        time.sleep(p["seconds"] / n)
        report((i + 1) / n, "sleep", f"{i + 1}/{n}", force=i == n - 1)
    if p["out"]:
        from pose_addon.core.dataset import atomic_write_json

        atomic_write_json(p["out"], {"slept_s": p["seconds"]})
    return {"slept_s": p["seconds"]}


#: kind -> (validate(params, work_dir) -> normalised params, run(params) -> result)
KINDS: dict[str, tuple[Callable, Callable]] = {
    "build_database": (_v_build_database, _run_build_database),
    "render_queries": (_v_render, _run_render),
    "benchmark": (_v_benchmark, _run_benchmark),
    "estimate": (_v_estimate, _run_estimate),
    "localize": (_v_localize, _run_localize),
    "train_regression": (_v_train, _run_train_regression),
    "train_keypoints": (_v_train, _run_train_keypoints),
    "sleep": (_v_sleep, _run_sleep),
}


def validate(kind: str, params: Any, work_dir: Path) -> dict:
    """Normalised parameters of a job, checked before any process starts; raises :class:`ParamError`."""
    if kind not in KINDS:
        raise ParamError("invalid_params", f"unknown job kind {kind!r}; kinds: {', '.join(KINDS)}")
    if not isinstance(params, dict):
        raise ParamError("invalid_params", f"job params must be an object, got {type(params).__name__}")
    return KINDS[kind][0](params, work_dir)


def _watch_parent(pid: int) -> None:
    def loop():
        while True:
            time.sleep(0.5)
            if os.getppid() != pid:
                os._exit(3)

    threading.Thread(target=loop, daemon=True, name="parent-watch").start()


def main(argv: Optional[list] = None) -> int:
    global _stdout
    ap = argparse.ArgumentParser(prog="python -m ml_backend.service.job_runner")
    ap.add_argument("--kind", required=True, choices=sorted(KINDS))
    ap.add_argument("--params", required=True, help="JSON file of validated parameters")
    ap.add_argument("--result", required=True, help="JSON file written atomically on success")
    ap.add_argument("--parent-pid", type=int, default=None)
    args = ap.parse_args(argv)
    if args.parent_pid:
        _watch_parent(args.parent_pid)
    # progress goes to the real stdout; anything else printed (libraries) goes to stderr, the job's log
    _stdout = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    params = json.loads(Path(args.params).read_text())
    try:
        progress.set_sink(report)  # every bar and report of the job's steps becomes a progress event
        result = KINDS[args.kind][1](params)
    except Exception as e:  # reported as the job's error; the traceback goes to the log
        import traceback

        traceback.print_exc()
        from pose_addon.core.dataset import DatasetError

        code = "not_found" if isinstance(e, FileNotFoundError) else (
            "invalid_params" if isinstance(e, (ValueError, KeyError)) and not isinstance(e, DatasetError)
            else "failed")
        emit({"event": "error", "code": code, "message": f"{type(e).__name__}: {e}"[:2000]})
        return 1
    from pose_addon.core.dataset import atomic_write_json

    atomic_write_json(args.result, result)
    report(1.0, "done", "", force=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
