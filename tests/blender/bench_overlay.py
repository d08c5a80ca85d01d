"""Benchmark of the estimated-cameras overlay at N cameras (default 1000), each compared with a truth (so three
line sets a camera: estimate frustum, truth frustum, link).

    tools/blender -b --python tests/blender/bench_overlay.py -- [N]

Prints the time of one redraw on the cached path (what the draw handlers do while the estimates do not change:
key check, per-colour geometry lookup, label projection and selection), the time of a rebuild (what happens
once after the estimates change) and, for reference, the old per-redraw cost (every frustum rebuilt). Headless
bpy has no GPU drawing context ("GPU functions for drawing are not available in background mode"), so the
batch upload and the draw calls themselves are not timed here: the cached path draws one batch per colour
(a handful of draw calls whatever N is).
"""
import json
import sys
import time
from pathlib import Path

import bpy
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout's pose_addon (script entry only)

import pose_addon  # noqa: E402
from pose_addon import draw, estimates  # noqa: E402
from pose_addon.blender import scene_io  # noqa: E402
from pose_addon.core.cameras import Intrinsics  # noqa: E402
from pose_addon.core.sampling import look_at  # noqa: E402


def main(n: int) -> None:
    scene_io.reset_scene()
    scene_io.load_scene("procedural:1")
    pose_addon.register()
    rng = np.random.default_rng(0)
    intr = Intrinsics(640, 480, 500.0, 500.0, 319.5, 239.5)
    t0 = time.perf_counter()
    for i in range(n):
        az, el, d = rng.uniform(0, 2 * np.pi), rng.uniform(0.1, 0.6), rng.uniform(20, 40)
        eye = d * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        T = look_at(eye, np.array([0.0, 0.0, 4.0]))
        obj = estimates.create_estimated_camera(bpy.context, f"/photos/IMG_{i:04d}.jpg", T, intr,
                                                ("sift", "regression", "keypoints")[i % 3], {"n_inliers": 100})
        obj["pose_truth"] = json.dumps(T.tolist())
        obj["pose_t_err_m"], obj["pose_R_err_deg"] = 0.1, 0.5
    print(f"made {n} estimated cameras in {time.perf_counter() - t0:.1f} s")
    # a view from above and aside, as the viewport's perspective matrix (world -> clip): x/z and y/z in [-1, 1]
    view = np.array(look_at(np.array([60.0, -60.0, 40.0]), np.zeros(3)))
    proj = np.array([[900 / 960, 0, 0, 0], [0, -900 / 540, 0, 0], [0, 0, 1, 0], [0, 0, 1, 0]]) @ view

    draw.invalidate()
    t = time.perf_counter()
    lines, _ = draw.ESTIMATES.get(draw._estimates_key(), False)
    rebuild_ms = 1000 * (time.perf_counter() - t)
    n_lines = sum(len(v) for v in lines.values()) // 2

    reps = 200
    t = time.perf_counter()
    for _ in range(reps):
        lines, _ = draw.ESTIMATES.get(draw._estimates_key(), False)
        pos, texts = draw.ESTIMATES.extra
        idx, xy = draw.visible_labels(pos, proj, 1920, 1080)
    cached_ms = 1000 * (time.perf_counter() - t) / reps

    t = time.perf_counter()
    for _ in range(3):
        segs = draw.estimate_segments()
        [np.asarray(s, np.float32) for _, s in segs]  # the old handler built one batch per camera from these
    old_ms = 1000 * (time.perf_counter() - t) / 3
    print(f"overlay at {n} cameras: {n_lines} line segments in {len(lines)} colour batches, "
          f"{len(idx)} labels drawn (cap {draw.MAX_LABELS})")
    print(f"redraw (cached path, no GPU context headless): {cached_ms:.3f} ms")
    print(f"rebuild after the estimates change: {rebuild_ms:.1f} ms (once)")
    print(f"rebuilding every frustum on each redraw instead (no cache, before GPU batches): {old_ms:.1f} ms")
    pose_addon.unregister()


if __name__ == "__main__":
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    main(int(argv[0]) if argv else 1000)
