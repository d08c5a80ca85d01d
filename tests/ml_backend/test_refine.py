"""Refinement by rendering at the estimate (ml_backend.refine): model edges, edge alignment on a flat-coloured
house, the keep-the-better rule, distortion, and ``METHOD+refine`` through the bench's method runner."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from ml_backend.refine import ImageEdges, ModelEdges, Refiner
from pose_addon.core.cameras import Intrinsics, camera_center
from pose_addon.core.poses import rotation_angle_deg
from pose_addon.core.sampling import look_at

INTR = Intrinsics(640, 480, 533.3, 533.3, 319.5, 239.5)


def _house_glb(path: Path) -> Path:
    """A flat-coloured house: box walls, a gable roof of another colour, a door; on a plain ground."""
    import trimesh

    walls = trimesh.creation.box(bounds=[[-5, -4, 0], [5, 4, 5]])
    walls.visual.face_colors = [200, 190, 170, 255]
    roof = trimesh.Trimesh(vertices=[[-5.5, -4.5, 5], [5.5, -4.5, 5], [5.5, 4.5, 5], [-5.5, 4.5, 5], [-5.5, 0, 8],
                                     [5.5, 0, 8]],
                           faces=[[0, 1, 5], [0, 5, 4], [2, 3, 4], [2, 4, 5], [1, 2, 5], [3, 0, 4],
                                  [1, 0, 3], [1, 3, 2]])
    roof.visual.face_colors = [150, 60, 50, 255]
    door = trimesh.creation.box(bounds=[[-1, -4.05, 0], [1, -4.0, 2.5]])
    door.visual.face_colors = [60, 40, 30, 255]
    ground = trimesh.Trimesh(vertices=[[-40, -40, 0], [40, -40, 0], [40, 40, 0], [-40, 40, 0]],
                             faces=[[0, 1, 2], [0, 2, 3]])
    ground.visual.face_colors = [120, 130, 110, 255]
    for m in (walls, roof, door):
        m.unmerge_vertices()  # flat shading: one normal per face, like the renders of a real model
    path.write_bytes(trimesh.Scene([walls, roof, door, ground]).export(file_type="glb"))
    return path


@pytest.fixture(scope="module")
def house(tmp_path_factory):
    return _house_glb(tmp_path_factory.mktemp("house") / "house.glb")


def _renderer(glb, **kw):
    from ml_backend.render import RendererUnavailable, SceneRenderer

    try:
        return SceneRenderer(glb, **kw)
    except RendererUnavailable as e:
        pytest.skip(f"no OpenGL here: {e}")


def _query(glb, T):
    """A 'photo' of the house: shaded (Lambert, another light than the refiner's unlit renders), blurred, noisy."""
    with _renderer(glb, ambient=0.35, light_dir=(0.5, -0.8, 0.6)) as r:
        rgb, _ = r.render(T, INTR)
    img = cv2.GaussianBlur(rgb.astype(np.float32), (0, 0), 1.0)
    img += np.random.default_rng(0).normal(0, 3.0, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def _perturb(T, dt, deg, seed=1):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=3)
    D = np.eye(4)
    D[:3, :3] = cv2.Rodrigues(w / np.linalg.norm(w) * np.radians(deg))[0]
    out = D @ T
    c = camera_center(T) + dt * np.asarray(rng.normal(size=3)) / np.sqrt(3)
    out[:3, 3] = -out[:3, :3] @ c
    return out


def _err(T, T_gt):
    return float(np.linalg.norm(camera_center(T) - camera_center(T_gt))), rotation_angle_deg(T[:3, :3], T_gt[:3, :3])


T_GT = look_at(np.array([24.0, -22.0, 9.0]), np.array([0.0, 0.0, 3.0]))


def test_model_edges_of_a_box_are_its_twelve_edges():
    import trimesh

    from ml_backend.render import load_scene_meshes

    tmp = Path(pytest.importorskip("tempfile").mkdtemp()) / "box.glb"
    tmp.write_bytes(trimesh.Scene([trimesh.creation.box(extents=[2, 2, 2])]).export(file_type="glb"))
    e = ModelEdges(load_scene_meshes(tmp), 25.0)
    assert len(e) == 12  # the face diagonals are coplanar: not creases
    assert np.allclose(np.abs(e.a - e.b).sum(1), 2.0)


def test_image_edges_are_sub_pixel():
    img = np.zeros((60, 80), np.uint8)
    img[:, 40:] = 200  # a step between columns 39 and 40: the edge lies at x = 39.5
    img = cv2.GaussianBlur(img, (0, 0), 1.0)
    e = ImageEdges(img, (20, 50), 0.0)
    mid = np.abs(e.xy[:, 1] - 30) < 20
    assert mid.sum() > 10
    assert np.abs(e.xy[mid, 0] - 39.5).max() < 0.15
    assert np.all(np.abs(e.normals[mid, 0]) > 0.99)


@pytest.mark.parametrize("dt,deg", [(0.4, 0.5), (1.0, 1.0)])
def test_edges_bring_a_flat_coloured_house_to_centimetres(house, dt, deg):
    q = _query(house, T_GT)
    T0 = _perturb(T_GT, dt, deg)
    with Refiner(house, {"stages": ["edges"]}) as ref:
        r = ref.refine(q, INTR, T0)
    t, R = _err(r.cam_from_world, T_GT)
    assert r.stage == "edges" and r.score > r.score_initial
    assert t < 0.05 and R < 0.2, (t, R, r.history)


def test_a_good_pose_is_not_made_worse(house):
    q = _query(house, T_GT)
    with Refiner(house) as ref:
        r = ref.refine(q, INTR, T_GT)
    t, R = _err(r.cam_from_world, T_GT)
    assert t < 0.03 and R < 0.05, (t, R, r.stage, r.history)
    assert r.score >= r.score_initial


def test_a_wrong_image_keeps_the_initial_pose(house):
    """Nothing in the image explains the model's edges better elsewhere: the estimate stays as it was."""
    noise = np.random.default_rng(3).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    T0 = _perturb(T_GT, 0.3, 0.3)
    with Refiner(house) as ref:
        r = ref.refine(cv2.GaussianBlur(noise, (0, 0), 4.0), INTR, T0)
    assert r.stage == "initial" or r.score > r.score_initial
    if r.stage == "initial":
        assert np.allclose(r.cam_from_world, T0)


def test_distorted_query_is_undistorted_before_alignment(house):
    k = (-0.12, 0.03)
    q = _query(house, T_GT)
    mapx, mapy = _distort_maps(INTR, k)
    qd = cv2.remap(q, mapx, mapy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    intr_d = Intrinsics(INTR.width, INTR.height, INTR.fx, INTR.fy, INTR.cx, INTR.cy, (k[0], k[1], 0.0, 0.0))
    with Refiner(house, {"stages": ["edges"]}) as ref:
        r = ref.refine(qd, intr_d, _perturb(T_GT, 0.4, 0.5))
    t, R = _err(r.cam_from_world, T_GT)
    assert t < 0.08 and R < 0.3, (t, R)


def _distort_maps(intr, k):
    """Remap tables producing the distorted image: distorted pixel -> undistorted source pixel (inverse by
    fixed-point iteration)."""
    ys, xs = np.mgrid[0:intr.height, 0:intr.width].astype(np.float64)
    xd, yd = (xs - intr.cx) / intr.fx, (ys - intr.cy) / intr.fy
    xu, yu = xd.copy(), yd.copy()
    for _ in range(20):
        r2 = xu * xu + yu * yu
        f = 1 + k[0] * r2 + k[1] * r2 * r2
        xu, yu = xd / f, yd / f
    return (xu * intr.fx + intr.cx).astype(np.float32), (yu * intr.fy + intr.cy).astype(np.float32)


def test_every_method_has_a_refine_variant():
    from ml_backend.methods import REGISTRY, get_method

    for name in ("sift", "ensemble", "regression", "aliked+lightglue", "retrieval_nn"):
        assert f"{name}+refine" in REGISTRY
    assert callable(get_method("sift+refine").run)
    from ml_backend.methods.interface import describe_methods

    described = {d["name"]: d for d in describe_methods()}
    assert "refine" in described["sift+refine"]["options"] and described["sift+refine"]["estimate_focal"]


def test_sift_refine_through_the_method_runner(synth_dataset, synth_db, tmp_path):
    """``sift+refine`` on the synthetic dataset: every query localized by sift stays localized, at least as well."""
    from ml_backend.bench import run_method_subprocess
    from ml_backend.evaluation import evaluate_results

    conf = {"database": str(synth_db), "progress": False}
    base = run_method_subprocess("sift", synth_dataset.root, tmp_path / "a", conf, tmp_path / "a.json")
    ref = run_method_subprocess("sift+refine", synth_dataset.root, tmp_path / "b", conf, tmp_path / "b.json")
    if "skipped" in ref and "OpenGL" in ref["skipped"]:
        pytest.skip(ref["skipped"])
    assert "rows" in ref, ref
    mb, _ = evaluate_results(base["rows"], synth_dataset)
    mr, _ = evaluate_results(ref["rows"], synth_dataset)
    for k, v in mb["recall"].items():
        assert mr["recall"][k] >= v, (k, mb["recall"], mr["recall"])
    assert all("t_refine_s" in r for r in ref["rows"])


def test_photos_estimated_with_sift_refine(synth_dataset, synth_db, tmp_path):
    """The user path: a folder of photos, ``sift+refine`` against a dataset; rows say what refinement did."""
    import shutil

    from ml_backend.estimate import estimate_photos

    photos = tmp_path / "photos"
    photos.mkdir()
    q = synth_dataset.split("query")[0]
    shutil.copy(synth_dataset.path(q.image), photos / "a.png")
    conf = {"dataset": str(synth_dataset.root), "database": str(synth_db), "workdir": str(tmp_path / "w")}
    try:
        rows = estimate_photos(photos, "sift+refine", conf, q.intrinsics.to_dict())
    except Exception as e:  # noqa: BLE001 -- only a missing OpenGL context may skip
        if "OpenGL" in str(e):
            pytest.skip(str(e))
        raise
    assert len(rows) == 1 and rows[0]["success"] and rows[0]["method"] == "sift+refine"
    assert rows[0]["timings"]["refine"] > 0
    t, R = _err(np.asarray(rows[0]["cam_from_world"]), q.cam_from_world)
    assert t < 0.05 and R < 0.5
    try:  # a missing model is named, as an error or as the photo's failure
        bad = estimate_photos(photos, "sift+refine", {"database": str(synth_db)}, q.intrinsics.to_dict())
        assert not bad[0]["success"] and "scene.glb" in bad[0]["message"]
    except FileNotFoundError as e:
        assert "scene.glb" in str(e)
