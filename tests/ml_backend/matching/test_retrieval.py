import numpy as np

from ml_backend.matching.database import FeatureDatabase
from ml_backend.matching.extractors import load_image_gray
from ml_backend.matching.retrieval import global_descriptor, top_k
from pose_addon.core.cameras import camera_center


def test_top_k_order():
    db = np.eye(5, dtype=np.float32)
    q = np.array([0.1, 0.9, 0.0, 0.5, 0.0], np.float32)
    idx, sim = top_k(q, db, 3)
    assert idx.tolist() == [1, 3, 0] and np.all(np.diff(sim) <= 0)
    assert len(top_k(q, db, 10)[0]) == 5
    assert len(top_k(q, np.zeros((0, 5)), 3)[0]) == 0


def test_descriptor_normalized_and_lighting_robust():
    rng = np.random.default_rng(0)
    img = (rng.random((240, 320)) * 255).astype(np.uint8)
    d = global_descriptor(img)
    assert d.dtype == np.float32 and abs(np.linalg.norm(d) - 1) < 1e-5
    darker = np.clip(img * 0.7 + 10, 0, 255).astype(np.uint8)
    assert float(d @ global_descriptor(darker)) > 0.98


def test_queries_retrieve_a_near_reference(synth_dataset, synth_db):
    with FeatureDatabase(synth_db) as db:
        centres = np.stack([camera_center(f.cam_from_world) for f in db])
        for q in synth_dataset.split("query"):
            idx, _ = top_k(global_descriptor(load_image_gray(synth_dataset.path(q.image))),
                           db.global_descriptors, 3)
            dist = np.linalg.norm(centres - camera_center(q.cam_from_world), axis=1)
            assert np.argmin(dist) in idx or dist[idx[0]] < 1.5 * dist.min()


def test_voting_index_finds_nearest_reference(synth_dataset, synth_db):
    from ml_backend.matching.extractors.sift import extract

    with FeatureDatabase(synth_db) as db:
        index = db.voting_index()
        centres = np.stack([camera_center(f.cam_from_world) for f in db])
        for q in synth_dataset.split("query"):
            f = extract(load_image_gray(synth_dataset.path(q.image)))
            idx, votes = index.query(f.descriptors, 3)
            assert len(idx) == 3 and np.all(np.diff(votes) <= 0) and votes[0] > 20
            dist = np.linalg.norm(centres - camera_center(q.cam_from_world), axis=1)
            assert np.argsort(dist)[:3].tolist().count(idx[0]) == 1  # top-1 among the 3 nearest references


def test_voting_index_edge_cases():
    from ml_backend.matching.retrieval import VotingIndex

    rng = np.random.default_rng(0)
    refs = [rng.random((n, 16)).astype(np.float32) for n in (3, 0, 5)]
    index = VotingIndex(refs, {"knn": 20})  # more neighbours asked than descriptors exist
    idx, votes = index.query(refs[2][:2] + 1e-4, 5)
    assert idx[0] == 2 and len(idx) == 3 and votes.tolist() == [2, 0, 0]
    assert index.votes(np.zeros((0, 16), np.float32)).tolist() == [0, 0, 0]
    empty = VotingIndex([])
    assert len(empty.query(refs[0], 3)[0]) == 0


def test_efficientnet_global_index(synth_dataset, tmp_path):
    from ml_backend.matching.retrieval import GlobalIndex, build_global_index, top_k_diverse

    p = build_global_index(synth_dataset.root, tmp_path / "g.h5")
    idx = GlobalIndex.load(p)
    assert idx.descriptors.shape == (16, 1280) and len(idx.ids) == 16
    assert np.allclose(np.linalg.norm(idx.descriptors, axis=1), 1, atol=1e-4)
    assert build_global_index(synth_dataset.root, p) == p  # cached
    sim = np.array([0.9, 0.8, 0.7])
    centers = np.array([[0, 0, 0], [0.1, 0, 0], [5, 0, 0]], float)
    assert top_k_diverse(sim, centers, 2, 1.0).tolist() == [0, 2]
