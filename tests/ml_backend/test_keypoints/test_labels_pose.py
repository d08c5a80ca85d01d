"""Keypoint labels (projection, visibility, Ultralytics format) and keypoint PnP, no training."""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from ml_backend.evaluation import pose_error
from ml_backend.keypoints.labels import (
    OCCLUDED,
    OUTSIDE,
    TRAIN_OKS_SIGMA,
    VISIBLE,
    KeypointSet,
    YoloSource,
    frame_keypoints,
    keypoint_set_for_dataset,
    parse_label_line,
    train_yaml_path,
    write_yolo_dataset,
)
from ml_backend.keypoints.pose import solve_keypoint_pose

from ..synthetic import BOX_MAX, BOX_MIN


@pytest.fixture(scope="module")
def kset(synth_dataset):
    return keypoint_set_for_dataset(synth_dataset, k=8)


def test_suggested_keypoints_are_box_corners_without_ground(kset):
    assert len(kset) == 8
    corners = {tuple(np.round([x, y, z], 3)) for x in (BOX_MIN[0], BOX_MAX[0]) for y in (BOX_MIN[1], BOX_MAX[1])
               for z in (BOX_MIN[2], BOX_MAX[2])}
    assert {tuple(np.round(p, 3)) for p in kset.points} == corners
    assert np.all(np.abs(kset.hull[:, :2]) <= 5.0 + 1e-6)  # the 36 m ground square is not in the hull


def test_labels_reproject_to_half_pixel_and_flag_occlusion(synth_dataset, kset, tmp_path):
    yaml_path = write_yolo_dataset([YoloSource(synth_dataset, "reference", "train", stop=12),
                                    YoloSource(synth_dataset, "reference", "val", start=12),
                                    YoloSource(synth_dataset, "query", "test")], kset, tmp_path / "yolo")
    data = yaml.safe_load(yaml_path.read_text())
    assert data["kpt_shape"] == [8, 3] and data["flip_idx"] == list(range(8)) and data["fliplr"] == 0.0
    assert data["kpt_oks_sigmas"] == [pytest.approx(0.03)] * 8 and data["test"] == "images/test"
    train = yaml.safe_load(train_yaml_path(yaml_path).read_text())  # the loss's wider sigma, same data otherwise
    assert train.pop("kpt_oks_sigmas") == [pytest.approx(TRAIN_OKS_SIGMA)] * 8 and TRAIN_OKS_SIGMA > 0.03
    assert train == {k: v for k, v in data.items() if k != "kpt_oks_sigmas"}
    n_occ = 0
    for fr in synth_dataset.frames:
        split = {"reference": "train" if int(fr.id[-4:]) < 12 else "val", "query": "test"}[fr.split]
        img = tmp_path / "yolo" / "images" / split / f"{synth_dataset.root.name}_{fr.id}.png"
        assert img.is_file()
        line = (tmp_path / "yolo" / "labels" / split / f"{synth_dataset.root.name}_{fr.id}.txt").read_text()
        w, h = fr.intrinsics.width, fr.intrinsics.height
        box, uv_lab, vis_lab = parse_label_line(line.strip(), 8, w, h)
        uv, vis = frame_keypoints(kset, fr, synth_dataset.read_depth(fr))
        assert np.array_equal(vis, vis_lab)
        m = vis > 0
        assert np.abs(uv_lab[m] - uv[m]).max() < 0.5
        assert np.all(uv_lab[~m] == -0.5)  # outside: x = y = 0 in the label
        assert 0 <= box[0] < box[2] <= w and 0 <= box[1] < box[3] <= h
        # a box seen from outside hides at least one of its corners (the far bottom one)
        assert (vis == OCCLUDED).sum() >= 1
        n_occ += int((vis == OCCLUDED).sum())
        # visible corners really are the nearest surface: the depth there matches their camera z
        z = (kset.points @ fr.cam_from_world[:3, :3].T + fr.cam_from_world[:3, 3])[:, 2]
        far = z > z[vis == VISIBLE].max() + 1e-9
        assert not np.any(far & (vis == VISIBLE))
    assert n_occ >= len(synth_dataset.frames)


def test_outside_points_get_v0(synth_dataset, kset):
    fr = synth_dataset.split("query")[0]
    far = KeypointSet(["a", "b"], np.array([[0.0, 0.0, 3.0], [1e4, 0.0, 3.0]]))
    uv, vis = frame_keypoints(far, fr, synth_dataset.read_depth(fr))
    assert vis[1] == OUTSIDE and vis[0] in (VISIBLE, OCCLUDED)


def _gt(synth_dataset, kset, i=0):
    fr = synth_dataset.split("query")[i]
    uv, vis = frame_keypoints(kset, fr, synth_dataset.read_depth(fr))
    return fr, uv, vis


def test_pnp_from_exact_keypoints(synth_dataset, kset):
    fr, uv, vis = _gt(synth_dataset, kset)
    r = solve_keypoint_pose(uv, np.ones(8), kset.points, fr.intrinsics, kset.names)
    assert r.success and r.solver.startswith("ransac") and len(r.used) == 8 and r.reproj_error_px < 1e-3
    dt, dr = pose_error(r.cam_from_world, fr.cam_from_world)
    assert dt < 1e-3 and dr < 1e-3


def test_pnp_minimal_solver_outlier_and_weights(synth_dataset, kset):
    fr, uv, vis = _gt(synth_dataset, kset)
    conf = np.array([1, 1, 1, 1, 1, 0, 0, 0], float)  # 5 keypoints: below ransac_min, all-point SQPnP
    r = solve_keypoint_pose(uv, conf, kset.points, fr.intrinsics, kset.names)
    assert r.success and r.solver == "sqpnp" and r.used == kset.names[:5]
    assert pose_error(r.cam_from_world, fr.cam_from_world)[0] < 1e-3
    bad = uv.copy()
    bad[2] += 60.0  # one outlier among 8: RANSAC drops it
    r = solve_keypoint_pose(bad, np.ones(8), kset.points, fr.intrinsics, kset.names)
    assert r.success and kset.names[2] not in r.used and pose_error(r.cam_from_world, fr.cam_from_world)[0] < 1e-2
    noisy = uv + np.random.default_rng(0).normal(0, 1.0, uv.shape)
    rw = solve_keypoint_pose(noisy, np.linspace(0.6, 1.0, 8), kset.points, fr.intrinsics, cfg={"weighted": True})
    assert rw.success and pose_error(rw.cam_from_world, fr.cam_from_world)[0] < 0.5


def test_pnp_fails_clearly_below_four(synth_dataset, kset):
    fr, uv, vis = _gt(synth_dataset, kset)
    conf = np.array([0.9, 0.9, 0.9, 0.2, 0.1, 0.0, 0.0, 0.0])
    r = solve_keypoint_pose(uv, conf, kset.points, fr.intrinsics)
    assert not r.success and r.cam_from_world is None and "only 3 keypoints" in r.message and "at least 4" in r.message
