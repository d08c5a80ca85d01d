"""Every method runs in a fresh process after the others' set-up, and a crash is reported as a failure.

The learned methods render training views worker-side (OpenGL) and then import the torch/torchvision/triton stack;
in one process those two LLVMs collide (segfault, exit 139). The renderer therefore lives in its own process
(:mod:`ml_backend.render.process`); these tests run the methods the way the benchmark does, one fresh
``python -m ml_backend run-method`` each, from an empty cache.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from ml_backend.bench import format_table, run_method_subprocess
from ml_backend.blender_runner import REPO_ROOT
from pose_addon.core.dataset import Dataset

ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


def _tiny_conf(regression_dir, db) -> dict:
    conf = {"random_weights": True, "n_gl_views": 6, "n_aug_views": 0, "train": {"epochs": 2, "patience": 2},
            "regression_dir": str(regression_dir), "progress": False, "max_queries": 2}
    return dict(conf, database=str(db)) if db else conf


def test_renderer_beside_the_torch_stack(synth_dataset):
    """A scene renderer exists, then torchvision (-> torch._dynamo -> triton) is imported: no crash, same image."""
    pytest.importorskip("torchvision")
    code = textwrap.dedent(f"""
        import numpy as np
        from pose_addon.core.dataset import Dataset
        from ml_backend.render import SceneRenderer, RendererUnavailable
        ds = Dataset.load({str(synth_dataset.root)!r})
        f = ds.frames[0]
        try:
            r = SceneRenderer(ds.path("scene.glb"))
        except RendererUnavailable as e:
            print("unavailable", e); raise SystemExit(0)
        rgb, depth = r.render(f.cam_from_world, f.intrinsics)
        import torchvision, torch._dynamo  # noqa: F401
        rgb2, depth2 = r.render(f.cam_from_world, f.intrinsics)
        assert (rgb == rgb2).all() and (depth == depth2).all() and (depth > 0).mean() > 0.5
        r.release()
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    if proc.stdout.startswith("unavailable"):
        pytest.skip(proc.stdout)
    assert proc.stdout.strip().endswith("ok")


@pytest.fixture(scope="module")
def scene_dataset(synth_dataset, tmp_path_factory):
    """The synthetic dataset with the scene facts the Blender side records (bounds, boxes, target), which the
    worker-side training views are sampled from."""
    from .synthetic import BOX_MAX, BOX_MIN

    root = tmp_path_factory.mktemp("scene") / "dataset"
    shutil.copytree(synth_dataset.root, root)
    ds = Dataset.load(root)
    ds.manifest["scene"].update(bounds=[BOX_MIN.tolist(), BOX_MAX.tolist()], boxes=[[BOX_MIN.tolist(),
                                BOX_MAX.tolist()]], target=((BOX_MIN + BOX_MAX) / 2).tolist(), gltf="scene.glb")
    ds.save()
    return Dataset.load(root)


def test_each_method_in_a_fresh_process(scene_dataset, tmp_path):
    """From an empty cache: regression (renders GL views, then loads the extractor), then regression+refine and
    retrieval_nn_train reusing that set-up; each in its own process, none crashes."""
    pytest.importorskip("timm")
    conf = _tiny_conf(tmp_path / "regression", None)
    for name in ("regression", "regression+refine", "retrieval_nn_train"):
        res = run_method_subprocess(name, scene_dataset.root, tmp_path / "work" / name, conf,
                                    tmp_path / f"{name}.json")
        if "skipped" in res and "OpenGL" in res["skipped"]:
            pytest.skip(res["skipped"])
        assert "rows" in res, (name, res)
        assert len(res["rows"]) == 2, (name, res)


@pytest.mark.slow
def test_refine_first_from_an_empty_cache(scene_dataset, tmp_path):
    """The other order: regression+refine sets everything up itself (GL views, model, then its own renderer)."""
    pytest.importorskip("timm")
    res = run_method_subprocess("regression+refine", scene_dataset.root, tmp_path / "w",
                                _tiny_conf(tmp_path / "regression", None), tmp_path / "r.json")
    if "skipped" in res and "OpenGL" in res["skipped"]:
        pytest.skip(res["skipped"])
    assert "rows" in res, res


def test_a_crashed_method_is_a_failure_not_skipped(synth_dataset, tmp_path, monkeypatch):
    """A method process killed by a signal is reported with its exit code, in results and in the table."""
    crash = tmp_path / "crash"
    crash.mkdir()
    (crash / "sitecustomize.py").write_text(
        "import os, signal, sys\n"
        "if 'run-method' in sys.argv:\n"
        "    os.kill(os.getpid(), signal.SIGSEGV)\n")
    monkeypatch.setenv("PYTHONPATH", f"{crash}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    res = run_method_subprocess("retrieval_nn", synth_dataset.root, tmp_path / "w", {"progress": False},
                                tmp_path / "o.json")
    assert "skipped" not in res and res["exit_code"] == -11, res
    assert "SIGSEGV" in res["failed"] and "139" in res["failed"]
    table = format_table({"scene": "s", "n_references": 1, "n_queries": 1, "methods": {"retrieval_nn": res}})
    assert "FAILED" in table and "SIGSEGV" in table
