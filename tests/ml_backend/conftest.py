"""Shared fixtures: one synthetic dataset (no Blender) and its feature database per test session."""
from __future__ import annotations

import pytest

from ml_backend.matching.database import build_database

from .synthetic import build_dataset


@pytest.fixture(scope="session")
def synth_dataset(tmp_path_factory):
    """A rendered-like dataset: 16 references, 4 queries, 320x240, exact planar depth."""
    return build_dataset(tmp_path_factory.mktemp("synth") / "dataset", n_ref=16, n_query=4)


@pytest.fixture(scope="session")
def synth_db(synth_dataset, tmp_path_factory):
    """Path of the complete feature database of ``synth_dataset``."""
    return build_database(synth_dataset.root, tmp_path_factory.mktemp("db"), "sift", progress=False)


@pytest.fixture
def fake_blender(tmp_path, monkeypatch):
    """``POSE_BLENDER`` pointing at :mod:`.fake_blender`; returns the path of its call log."""
    import sys
    from pathlib import Path

    script = tmp_path / "blender"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).parent / "fake_blender.py"}" "$@"\n')
    script.chmod(0o755)
    log = tmp_path / "blender_calls.jsonl"
    monkeypatch.setenv("POSE_BLENDER", str(script))
    monkeypatch.setenv("FAKE_BLENDER_LOG", str(log))
    return log
