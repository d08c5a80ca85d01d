"""What the worker has built: datasets, feature databases, regression checkpoints and keypoint models under its
folders, with scene, date and validation figures -- the list the extension's Models panel shows.

Recognized by layout, not by name: a dataset is a folder with ``manifest.json``; a feature database an ``.h5``
written by :mod:`ml_backend.matching.database` (image features of the regression: by
:mod:`ml_backend.regression.features`);
a regression checkpoint ``best.pt`` beside ``metrics.csv``; a keypoint model ``model.pt`` beside ``train.json``.
"""
from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path

__all__ = ["list_models"]

_SKIP_DIRS = {"images", "depth", "labels", "__pycache__", "work"}


def _date(p: Path) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(p.stat().st_mtime))


def _dataset(manifest: Path) -> dict:
    m = json.loads(manifest.read_text("utf-8"))
    splits: dict[str, int] = {}
    for f in m.get("frames", []):
        splits[f.get("split", "?")] = splits.get(f.get("split", "?"), 0) + 1
    return {"kind": "dataset", "path": str(manifest.parent), "scene": m.get("scene", {}).get("name"),
            "date": _date(manifest), "figures": {"splits": splits, "complete": bool(m.get("complete"))}}


def _database(path: Path) -> dict | None:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            a = f.attrs
            if a.get("format") == "ml_backend-feature-db":
                return {"kind": "database", "path": str(path), "scene": Path(str(a.get("dataset", ""))).name,
                        "date": _date(path), "figures": {"conf": str(a.get("conf_name", "")),
                                                         "images": len(f["frames"]) if "frames" in f else 0}}
            if "extractor" in a and "features" in f:
                return {"kind": "image_features", "path": str(path), "scene": Path(str(a.get("dataset", ""))).name,
                        "date": _date(path), "figures": {"extractor": str(a["extractor"]),
                                                         "split": str(a.get("split", "")),
                                                         "rows": int(f["features"].shape[0])}}
    except (OSError, ValueError, KeyError):
        return None
    return None


def _regression(best: Path) -> dict:
    rows = list(csv.DictReader((best.parent / "metrics.csv").open()))
    best_row = min(rows, key=lambda r: float(r.get("val_median_t_m") or "inf")) if rows else {}
    figures = {"epochs": len(rows)}
    for k in ("val_median_t_m", "val_median_R_deg"):
        if k in best_row:
            figures[k] = float(best_row[k])
    return {"kind": "regression", "path": str(best), "scene": best.parent.parent.name, "date": _date(best),
            "figures": figures}


def _keypoints(model: Path) -> dict:
    info = json.loads((model.parent / "train.json").read_text("utf-8"))
    figures = {k: info[k] for k in ("train_s", "epochs", "n_keypoints", "model") if k in info}
    return {"kind": "keypoints", "path": str(model), "scene": model.parent.parent.name, "date": _date(model),
            "figures": figures}


def list_models(roots: Iterable[str | Path], max_depth: int = 6) -> list[dict]:
    """Everything found under ``roots`` (missing roots are skipped), newest first."""
    out: list[dict] = []
    seen: set[str] = set()
    for root in roots:
        root = Path(root).expanduser()
        if not root.is_dir():
            continue
        base = len(root.parts)
        for dirpath, dirnames, filenames in os.walk(root):
            d = Path(dirpath)
            if len(d.parts) - base >= max_depth:
                dirnames[:] = []
            dirnames[:] = [n for n in dirnames if n not in _SKIP_DIRS and not n.startswith(".")]
            names = set(filenames)
            found = []
            try:
                if "manifest.json" in names:
                    found.append(_dataset(d / "manifest.json"))
                if "best.pt" in names and "metrics.csv" in names:
                    found.append(_regression(d / "best.pt"))
                if "model.pt" in names and "train.json" in names:
                    found.append(_keypoints(d / "model.pt"))
                for n in sorted(names):
                    if n.endswith(".h5") and not n.startswith("."):
                        db = _database(d / n)
                        if db:
                            found.append(db)
            except (OSError, ValueError, KeyError) as e:  # a half-written or foreign file: list it as unreadable
                found.append({"kind": "unreadable", "path": str(d), "error": str(e)})
            for item in found:
                if item["path"] not in seen:
                    seen.add(item["path"])
                    out.append(item)
    return sorted(out, key=lambda x: x.get("date", ""), reverse=True)
