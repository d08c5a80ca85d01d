"""Seeing the keypoint data: projected 3D keypoints coloured by visibility with names, detections beside them."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from pose_addon.core.dataset import Dataset, Frame, atomic_write_bytes

from .labels import OCCLUDED, VISIBLE, KeypointSet, frame_keypoints

__all__ = ["draw_keypoints", "draw_frame", "COLORS"]

#: BGR colours by visibility: visible green, occluded orange; detections magenta.
COLORS = {VISIBLE: (60, 220, 60), OCCLUDED: (0, 150, 255), "det": (255, 0, 255)}


def draw_keypoints(image: np.ndarray, uv: np.ndarray, vis: np.ndarray, names: list,
                   conf: Optional[np.ndarray] = None, color: Optional[tuple] = None) -> np.ndarray:
    """Draw keypoints ``uv [K, 2]`` (OpenCV px) on a BGR copy: a circle (filled when visible) and the name.

    ``vis [K]``: 2 visible, 1 occluded, 0 not drawn. ``conf [K]``: appended to names when given.
    """
    out = image.copy()
    scale = max(0.35, out.shape[1] / 1400)
    for i, (p, v) in enumerate(zip(uv, vis)):
        if v == 0 or not np.isfinite(p).all():
            continue
        col = color or COLORS[int(v)]
        c = (int(round(p[0] * 4)), int(round(p[1] * 4)))
        cv2.circle(out, c, 16, col, -1 if v == VISIBLE else 2, cv2.LINE_AA, shift=2)
        label = names[i] + (f" {conf[i]:.2f}" if conf is not None else "")
        org = (int(p[0]) + 5, int(p[1]) - 5)
        cv2.putText(out, label, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, label, org, cv2.FONT_HERSHEY_SIMPLEX, scale, col, 1, cv2.LINE_AA)
    return out


def draw_frame(dataset: Dataset, frame: Frame, kset: KeypointSet, out_png: Path | str,
               detection: Optional[dict] = None, min_conf: float = 0.5) -> Path:
    """Ground-truth keypoints of a frame (visibility from its depth); with ``detection`` (``{"uv" [K, 2], "conf"
    [K]}``) the detections above ``min_conf`` in a second panel beside it, with lines to the ground truth."""
    img = cv2.imread(str(dataset.path(frame.image)), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"cannot read image {dataset.path(frame.image)}")
    depth = dataset.read_depth(frame) if frame.depth and dataset.path(frame.depth).is_file() else None
    uv, vis = frame_keypoints(kset, frame, depth)
    gt = draw_keypoints(img, uv, vis, kset.names)
    cv2.putText(gt, "ground truth (green visible, orange occluded)", (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                (255, 255, 255), 1, cv2.LINE_AA)
    panel = gt
    if detection is not None:
        duv = np.asarray(detection["uv"], np.float64)
        dconf = np.asarray(detection["conf"], np.float64)
        keep = (dconf >= min_conf) & np.isfinite(duv).all(1)
        det = img.copy()
        for i in np.nonzero(keep & (vis > 0))[0]:
            cv2.line(det, tuple(int(x) for x in uv[i]), tuple(int(x) for x in duv[i]), (255, 255, 255), 1,
                     cv2.LINE_AA)
        det = draw_keypoints(det, uv, np.where(keep, vis, 0), kset.names)
        det = draw_keypoints(det, duv, np.where(keep, VISIBLE, 0), kset.names, dconf, COLORS["det"])
        cv2.putText(det, f"detections >= {min_conf:g} (magenta), lines to ground truth", (8, 20),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        panel = np.concatenate([gt, det], axis=1)
    ok, buf = cv2.imencode(".png", panel)
    if not ok:
        raise ValueError(f"cannot encode {out_png}")
    atomic_write_bytes(out_png, buf.tobytes())
    return Path(out_png)
