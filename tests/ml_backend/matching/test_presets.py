import numpy as np
import pytest

from ml_backend.matching.presets import confs, get_matcher, resolve
from ml_backend.matching.weights import MissingWeightsError


def _pair(synth_dataset):
    import cv2

    q = synth_dataset.split("query")[0]
    r = synth_dataset.split("reference")[0]
    rd = lambda f: cv2.cvtColor(cv2.imread(str(synth_dataset.path(f.image))), cv2.COLOR_BGR2RGB)  # noqa: E731
    return rd(q), rd(r)


def test_presets_resolve():
    for name in confs:
        c = resolve(name)
        assert c["name"] == name and c["matcher"]["name"]
    with pytest.raises(ValueError, match="unknown matcher"):
        resolve("orb")
    with pytest.raises(ValueError, match="unknown nn matcher options"):
        resolve({"name": "sift", "matcher": {"ratioo": 0.7}})


@pytest.mark.parametrize("name", ["sift", "sift-mutual", "colmap",
                                  {"name": "xfeat+lighterglue", "features": {"max_keypoints": 256}}])
def test_matchers_with_shipped_weights(synth_dataset, name):
    a, b = _pair(synth_dataset)
    m = get_matcher(name)
    fa, fb = m.extract(a), m.extract(b)
    pairs = m.match(fa, fb)
    assert pairs.ndim == 2 and pairs.shape[1] == 2 and len(pairs) > 10
    assert pairs[:, 0].max() < len(fa) and pairs[:, 1].max() < len(fb)


def test_missing_user_weights_name_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(MissingWeightsError, match="superpoint_lightglue.pth"):
        get_matcher("superpoint+lightglue")
    with pytest.raises(MissingWeightsError, match="superpoint_v1.pth"):
        get_matcher({"name": "superpoint+lightglue", "matcher": {"random_weights_for_tests": True}}).extract(
            np.zeros((64, 64), np.uint8))
    with pytest.raises(MissingWeightsError, match="loftr_outdoor.ckpt"):
        get_matcher({"name": "loftr", "matcher": {"resize_max": 64}})
    with pytest.raises(MissingWeightsError, match=str(tmp_path)):
        get_matcher({"name": "superpoint+lightglue",
                     "features": {"random_weights_for_tests": True}})  # the LightGlue file is missing too


def test_random_weight_code_paths(synth_dataset):
    a, b = _pair(synth_dataset)
    m = get_matcher({"name": "superpoint+lightglue", "features": {"random_weights_for_tests": True,
                                                                   "max_keypoints": 128, "resize_max": 160},
                     "matcher": {"random_weights_for_tests": True}})
    fa = m.extract(a)
    assert fa.descriptors.shape[1] == 256 and len(fa) <= 128
    assert m.match(fa, m.extract(b)).shape[1] == 2
    d = get_matcher({"name": "loftr", "matcher": {"random_weights_for_tests": True, "resize_max": 96,
                                                  "confidence": 0.0}})
    xq, xr = d.match_images(a[..., 0], b[..., 0])
    assert d.dense and xq.shape == xr.shape and xq.shape[1] == 2


def test_learned_matcher_estimates_single_photos(synth_dataset, tmp_path):
    """xfeat+lighterglue on a photo outside the dataset, against the dataset's references (estimate job path)."""
    import shutil

    from ml_backend.estimate import estimate_photos
    from pose_addon.core.cameras import camera_center

    q = synth_dataset.split("query")[0]
    shutil.copy(synth_dataset.path(q.image), tmp_path / "photo.png")
    rows = estimate_photos(tmp_path / "photo.png", "xfeat+lighterglue",
                           {"dataset": str(synth_dataset.root), "workdir": str(tmp_path / "work"), "progress": False},
                           q.intrinsics.to_dict())
    assert rows[0]["success"], rows[0]["message"]
    err = np.linalg.norm(camera_center(np.array(rows[0]["cam_from_world"])) - camera_center(q.cam_from_world))
    assert err < 0.2


def test_presets_name_plugins_and_are_the_matching_methods():
    from ml_backend.matching import extractors, matchers
    from ml_backend.matching.presets import method_presets
    from ml_backend.methods import MATCHING_METHODS, REGISTRY

    for name, c in confs.items():
        assert c["matcher"]["name"] in matchers.names(), name
        assert c["features"] is None or c["features"]["name"] in extractors.names(), name
    methods = method_presets()
    assert "sift" in methods and "loftr" in methods and "sift-mutual" not in methods
    assert MATCHING_METHODS == (*methods, "ensemble")
    for name in MATCHING_METHODS:
        assert name in REGISTRY and f"{name}+refine" in REGISTRY
    assert not any(c.get("variant") for n, c in confs.items() if n in methods)
