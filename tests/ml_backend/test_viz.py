import numpy as np

from ml_backend.viz import draw_edges, draw_model_edges, load_model_edges, plot_recall_curves


def test_recall_plot(tmp_path):
    p = plot_recall_curves({"a": ([0.01, 0.2, np.inf], [0.1, 1.0, np.inf]), "b": ([np.inf], [np.inf])},
                           tmp_path / "r.png")
    assert p.read_bytes()[:4] == b"\x89PNG"


def test_model_edges_overlay(synth_dataset, tmp_path):
    segs = load_model_edges(synth_dataset.root / "scene.glb")
    assert segs.shape[1:] == (2, 3) and len(segs) >= 12  # a box has 12 sharp edges, the ground 4 borders
    q = synth_dataset.split("query")[0]
    out = draw_model_edges(synth_dataset, q, q.cam_from_world, tmp_path / "e.png", draw_ground_truth=False)
    import cv2

    img = cv2.imread(str(out))
    green = (img[..., 1] > 200) & (img[..., 0] < 80) & (img[..., 2] < 80)
    assert green.sum() > 200
    # segments crossing behind the camera are clipped, not wrapped around
    blank = np.zeros((50, 50, 3), np.uint8)
    seg = np.array([[[0.0, 0.0, 5.0], [0.0, 0.0, -5.0]]])
    draw_edges(blank, np.array([[50.0, 0, 25], [0, 50, 25], [0, 0, 1]]), np.eye(4), seg)


def test_depth_culls_hidden_edges(synth_dataset):
    q = synth_dataset.split("query")[0]
    segs = load_model_edges(synth_dataset.root / "scene.glb")
    img = np.zeros((q.intrinsics.height, q.intrinsics.width, 3), np.uint8)
    all_edges = draw_edges(img, q.intrinsics.K, q.cam_from_world, segs)[..., 1] > 100
    culled = draw_edges(img, q.intrinsics.K, q.cam_from_world, segs, depth=synth_dataset.read_depth(q))[..., 1] > 100
    assert culled.sum() < all_edges.sum() and culled.sum() > 0.5 * all_edges.sum()
    assert not (culled & ~all_edges).sum() > 0.05 * culled.sum()
