"""The extension's Method menu comes from the worker's ``methods.list`` (one source of method names)."""
from __future__ import annotations

import sys

from ml_backend.methods import BENCHMARK_ONLY, REGISTRY
from pose_addon.worker.methods import FALLBACK_METHODS, method_items, method_number
from pose_addon.worker.supervisor import Supervisor


def test_menu_before_any_worker_says_so():
    items = method_items(None)
    assert [i[0] for i in items] == list(FALLBACK_METHODS)
    assert all("worker not running" in i[2] for i in items)
    assert set(FALLBACK_METHODS) <= set(REGISTRY)  # the fallback names are methods the worker knows


def test_supervisor_asks_the_worker_and_the_menu_follows(tmp_path):
    sup = Supervisor()
    sup.start(python=sys.executable, log_path=tmp_path / "worker.log", data_dir=str(tmp_path))
    try:
        assert sup.wait_until(lambda: sup.methods is not None, 60), sup.message
        items = method_items(sup.methods, running=True)
    finally:
        sup.stop()
        sup.wait_until(lambda: sup.state == "stopped", 15)
    names = [i[0] for i in items]
    offered = [n for n in REGISTRY if n.removesuffix("+refine") not in BENCHMARK_ONLY]
    assert sorted(names) == sorted(offered) and "keypoints_oracle" not in names
    assert names[0] == "sift" and items[0][1] == "Matching: sift"  # matching methods first
    assert len({i[3] for i in items}) == len(items) and items[0][3] == method_number("sift")
    assert not any("not running" in i[2] for i in items)
    # the worker gone: its last list stays, each entry marked
    assert sup.methods is not None and all("not running" in i[2] for i in method_items(sup.methods, False))
