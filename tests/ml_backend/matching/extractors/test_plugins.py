"""Local feature extractors are plugins: one module each in ml_backend.matching.extractors, COLMAP's SIFT too."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from ml_backend.matching.extractors import extract_features, merge_any_conf, names, plugin


def _textured(h=240, w=320, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 128, np.uint8)
    for _ in range(60):
        c = tuple(int(v) for v in rng.integers(0, 255, 3))
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        cv2.rectangle(img, (x, y), (x + int(rng.integers(5, 40)), y + int(rng.integers(5, 40))), c, -1)
    return img


def test_every_extractor_is_a_plugin_with_its_defaults():
    assert {"sift", "colmap_sift", "aliked", "disk", "xfeat", "superpoint"} <= set(names())
    assert "base" not in names()
    for name in names():
        module = plugin(name)
        assert callable(module.extract) and callable(module.merge_conf), name
        assert module.default_conf["name"] == name
        assert merge_any_conf({"name": name})["name"] == name
    assert merge_any_conf(None)["name"] == "sift"
    with pytest.raises(ValueError, match="unknown extractor 'orb'"):
        merge_any_conf({"name": "orb"})
    with pytest.raises(ValueError, match="unknown colmap_sift options"):
        merge_any_conf({"name": "colmap_sift", "ratio": 0.8})


def test_colmap_sift_through_the_registry():
    rgb = _textured()
    f = extract_features(rgb, {"name": "colmap_sift", "max_keypoints": 300})
    g = extract_features(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), {"name": "colmap_sift", "max_keypoints": 300})
    assert 50 <= len(f) <= 300 and f.image_size == (320, 240)
    np.testing.assert_allclose(f.keypoints, g.keypoints)  # grey or RGB in, same features
    assert (f.keypoints >= -0.5).all() and (f.keypoints[:, 0] <= 319.5).all() and (f.keypoints[:, 1] <= 239.5).all()
    np.testing.assert_allclose(np.linalg.norm(f.descriptors, axis=1), 1.0, atol=1e-5)
    # where both detectors find a corner they agree without bias: both report OpenCV's pixel convention (an
    # uncorrected COLMAP keypoint sits 0.5 px right and down)
    s = extract_features(rgb, {"name": "sift", "max_keypoints": 300})
    diff = f.keypoints[:, None] - s.keypoints[None]
    dist = np.linalg.norm(diff, axis=2)
    near = dist.min(1) < 1.5
    offset = diff[np.arange(len(f)), dist.argmin(1)][near]
    assert near.sum() >= 30 and (np.abs(offset.mean(0)) < 0.15).all(), (near.sum(), offset.mean(0))
