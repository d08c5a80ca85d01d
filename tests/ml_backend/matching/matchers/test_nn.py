import numpy as np
import pytest

from ml_backend.matching.matchers.nn import match_descriptors


def _desc(n, seed=0):
    d = np.random.default_rng(seed).random((n, 128)).astype(np.float32)
    return d / np.linalg.norm(d, axis=1, keepdims=True)


@pytest.mark.parametrize("backend", ["bf", "flann"])
def test_permutation_recovered(backend):
    r = _desc(300)
    perm = np.random.default_rng(1).permutation(300)
    q = r[perm] + np.random.default_rng(2).normal(0, 1e-3, (300, 128)).astype(np.float32)
    m = match_descriptors(q, r, {"backend": backend, "mutual": True})
    assert len(m) >= 290
    assert np.all(perm[m[:, 0]] == m[:, 1])


def test_ratio_rejects_ambiguous():
    r = _desc(10)
    twins = np.concatenate([r - 1e-3, r + 1e-3])  # every query lies midway between two references
    m = match_descriptors(r, twins, {"ratio": 0.8})
    assert len(m) == 0
    m = match_descriptors(r, twins, {"ratio": None})
    assert len(m) == 10


def test_mutual_check_and_empty():
    r = _desc(5)
    q = np.repeat(r[:1], 3, axis=0)  # three queries want the same reference
    assert len(match_descriptors(q, r, {"ratio": None, "mutual": True})) == 1
    assert match_descriptors(np.zeros((0, 128), np.float32), r).shape == (0, 2)
    assert match_descriptors(r, np.zeros((0, 128), np.float32)).shape == (0, 2)
    assert len(match_descriptors(r[:2], r[:1])) == 2  # one reference: no ratio test possible
    with pytest.raises(ValueError, match="unknown matcher"):
        match_descriptors(r, r, {"backend": "nope"})
