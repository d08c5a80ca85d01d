"""Inspection tools that write PNGs (worker environment): manual pair match, keypoints, pose overlay.

    python -m ml_backend match-pair --dataset DIR --query ID --reference ID [--matcher sift] --out PNG
    python -m ml_backend show-keypoints --image PATH [--extractor sift] --out PNG
    python -m ml_backend pose-overlay --dataset DIR --frame ID [--pose-json FILE] --out PNG
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from pose_addon.core.dataset import Dataset

from .matching import extractors

__all__ = ["match_pair", "show_keypoints", "box_segments", "pose_overlay", "add_parsers", "dispatch"]


def _write(path: Path | str, img: np.ndarray) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".partial.png")
    if not cv2.imwrite(str(tmp), img):
        raise ValueError(f"cannot write {path}")
    tmp.replace(path)
    return path


def match_pair(dataset_dir: Path | str, query_id: str, reference_id: str, out_png: Path | str,
               matcher: str | dict = "sift", threshold_px: float = 2.5) -> dict:
    """Match a query against one chosen render, solve PnP on the lifted matches, draw both.

    Writes ``out_png``: query | reference side by side, inlier matches green, outliers red, and under them the
    query with the model edges at the estimated pose (green) and the true one (red). Returns a summary dict
    (matches, inliers, translation/rotation error when the query has a ground-truth pose).
    """
    from . import viz
    from .evaluation import pose_error
    from .matching import lifting
    from .matching.extractors import load_image_gray
    from .matching.presets import get_matcher
    from .pnp import solve_pnp

    ds = Dataset.load(dataset_dir)
    q, r = ds.frame(query_id), ds.frame(reference_id)
    m = get_matcher(matcher)
    cq = cv2.imread(str(ds.path(q.image)), cv2.IMREAD_COLOR)
    cr = cv2.imread(str(ds.path(r.image)), cv2.IMREAD_COLOR)
    if cq is None or cr is None:
        raise FileNotFoundError(f"cannot read {ds.path(q.image)} or {ds.path(r.image)}")
    if m.dense:
        xq, xr = m.match_images(load_image_gray(ds.path(q.image)), load_image_gray(ds.path(r.image)))
    else:
        fq, fr = m.extract(cv2.cvtColor(cq, cv2.COLOR_BGR2RGB)), m.extract(cv2.cvtColor(cr, cv2.COLOR_BGR2RGB))
        pairs = m.match(fq, fr)
        xq, xr = fq.keypoints[pairs[:, 0]], fr.keypoints[pairs[:, 1]]
    p3, valid = lifting.lift_keypoints(xr, ds.read_depth(r), r.intrinsics, r.cam_from_world)
    res = solve_pnp(xq[valid], p3[valid], q.intrinsics, threshold_px)
    inl = np.zeros(len(xq), bool)
    inl[np.nonzero(valid)[0]] = res.inliers
    h = max(cq.shape[0], cr.shape[0])
    canvas = np.zeros((h, cq.shape[1] + cr.shape[1], 3), np.uint8)
    canvas[:cq.shape[0], :cq.shape[1]] = cq
    canvas[:cr.shape[0], cq.shape[1]:] = cr
    for a, b, ok in zip(xq, xr, inl):
        cv2.line(canvas, (int(a[0]), int(a[1])), (int(b[0]) + cq.shape[1], int(b[1])),
                 (0, 255, 0) if ok else (0, 0, 255), 1, cv2.LINE_AA)
    segs = viz.load_model_edges(ds.path(ds.scene.get("gltf", "scene.glb")), ds.scene.get("gltf_up", "Z"))
    ov = viz.draw_edges(cq, q.intrinsics.K, q.cam_from_world, segs, (0, 0, 255))
    if res.success:
        ov = viz.draw_edges(ov, q.intrinsics.K, res.cam_from_world, segs, (0, 255, 0))
    bottom = np.zeros((ov.shape[0], canvas.shape[1], 3), np.uint8)
    bottom[:, :ov.shape[1]] = ov
    summary = {"matcher": m.name, "matches": int(len(xq)), "lifted": int(valid.sum()), "inliers": int(res.n_inliers),
               "reproj_error_px": res.reproj_error_px if res.success else None, "success": bool(res.success)}
    if res.success:
        dt, dr = pose_error(res.cam_from_world, q.cam_from_world)
        summary.update(t_err_m=dt, R_err_deg=dr)
    text = f"{m.name}: {summary['matches']} matches, {summary['inliers']} inliers" + (
        f", err {summary['t_err_m']:.3f} m {summary['R_err_deg']:.2f} deg" if res.success else ", no pose")
    cv2.putText(bottom, text, (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    _write(out_png, np.concatenate([canvas, bottom], 0))
    return summary


def show_keypoints(image_path: Path | str, out_png: Path | str, extractor: str | dict = "sift") -> int:
    """Draw the keypoints of any extractor (:mod:`ml_backend.matching.extractors`) on an image; returns N."""
    from .matching.extractors import extract_features

    bgr = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"cannot read image {image_path}")
    conf = {"name": extractor} if isinstance(extractor, str) else extractor
    f = extract_features(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), conf)
    out = bgr.copy()
    for x, y in f.keypoints:
        cv2.circle(out, (int(round(x * 4)), int(round(y * 4))), 8, (0, 255, 0), 1, cv2.LINE_AA, shift=2)
    cv2.putText(out, f"{conf['name']}: {len(f)} keypoints", (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                (255, 255, 255), 1, cv2.LINE_AA)
    _write(out_png, out)
    return len(f)


def box_segments(points: np.ndarray) -> np.ndarray:
    """The 12 edges ``[12, 2, 3]`` of the axis-aligned bounding box of ``points [N, 3]``."""
    lo, hi = np.min(points, 0), np.max(points, 0)
    c = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    e = [(i, j) for i in range(8) for j in range(i + 1, 8) if bin(i ^ j).count("1") == 1]
    return np.stack([c[[i, j]] for i, j in e])


def pose_overlay(dataset_dir: Path | str, frame_id: str, out_png: Path | str,
                 cam_from_world: Optional[np.ndarray] = None) -> Path:
    """The frame's image with the model edges + 3D bounding box at the estimated (green) and true (red) pose."""
    from . import viz

    ds = Dataset.load(dataset_dir)
    fr = ds.frame(frame_id)
    img = cv2.imread(str(ds.path(fr.image)), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"cannot read image {ds.path(fr.image)}")
    segs = viz.load_model_edges(ds.path(ds.scene.get("gltf", "scene.glb")), ds.scene.get("gltf_up", "Z"))
    box = box_segments(segs.reshape(-1, 3))
    K = fr.intrinsics.K
    for T, col in ((fr.cam_from_world, (0, 0, 255)), (cam_from_world, (0, 255, 0))):
        if T is not None:
            img = viz.draw_edges(img, K, np.asarray(T), np.concatenate([segs, box]), col)
    return _write(out_png, img)


def add_parsers(sub) -> None:
    """Add the tools' subcommands to the worker CLI's subparsers."""
    p = sub.add_parser("match-pair", help="match a query against one render, draw matches + pose (PNG)")
    p.add_argument("--dataset", required=True)
    p.add_argument("--query", required=True)
    p.add_argument("--reference", required=True)
    p.add_argument("--matcher", default="sift")
    p.add_argument("--out", required=True)
    p = sub.add_parser("show-keypoints", help="draw the keypoints of an extractor on an image (PNG)")
    p.add_argument("--image", required=True)
    p.add_argument("--extractor", default="sift", choices=extractors.names(), help="a local feature extractor")
    p.add_argument("--out", required=True)
    p = sub.add_parser("pose-overlay", help="model edges + 3D box at estimated and true pose (PNG)")
    p.add_argument("--dataset", required=True)
    p.add_argument("--frame", required=True)
    p.add_argument("--pose-json", default=None, help="JSON file holding a 4x4 cam_from_world (OpenCV axes)")
    p.add_argument("--out", required=True)


def dispatch(args) -> int:
    """Run a tools subcommand; prints a one-line JSON summary."""
    if args.command == "match-pair":
        print(json.dumps(match_pair(args.dataset, args.query, args.reference, args.out, args.matcher)))
    elif args.command == "show-keypoints":
        print(json.dumps({"keypoints": show_keypoints(args.image, args.out, args.extractor)}))
    else:
        T = None
        if args.pose_json:
            d = json.loads(Path(args.pose_json).read_text())
            T = np.asarray(d["cam_from_world"] if isinstance(d, dict) else d, np.float64)
        print(json.dumps({"out": str(pose_overlay(args.dataset, args.frame, args.out, T))}))
    return 0
