import json

import pytest

from ml_backend import blender_runner
from ml_backend.blender_runner import BlenderError, find_blender, run_headless
from pose_addon.core.dataset import Dataset
from pose_addon.core.render_config import RenderConfig, RenderGroup
from pose_addon.core.sampling import SamplerConfig


def test_find_blender(monkeypatch, tmp_path):
    monkeypatch.setenv("POSE_BLENDER", str(tmp_path / "nope"))
    with pytest.raises(BlenderError, match="not an executable"):
        find_blender()
    monkeypatch.delenv("POSE_BLENDER")
    assert find_blender() == blender_runner.REPO_ROOT / "tools" / "blender"


def test_render_with_events_and_isolated_home(fake_blender, tmp_path):
    cfg = RenderConfig(groups=[RenderGroup("reference", SamplerConfig(n=3)), RenderGroup("query", SamplerConfig(n=2))],
                       width=160, height=120)
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps(cfg.to_dict()))
    events = []
    ev = run_headless(["render-dataset", "--scene", "procedural", "--config", str(cfg_path), "--out",
                       str(tmp_path / "ds")], tmp_path / "cache", progress=False, on_event=events.append)
    assert ev["event"] == "done" and [e["event"] for e in events] == ["progress", "progress", "done"]
    assert len(Dataset.load(tmp_path / "ds").frames) == 5
    call = json.loads(fake_blender.read_text().splitlines()[0])
    assert call["argv"][0] == "render-dataset"
    assert call["home"].startswith(str(tmp_path / "cache")) and call["xdg"].startswith(str(tmp_path / "cache"))


def test_failure_reports_stderr(fake_blender, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_BLENDER_FAIL", "1")
    with pytest.raises(BlenderError) as e:
        run_headless(["render-dataset"], tmp_path / "cache", progress=False)
    msg = str(e.value)
    assert "GPU on fire" in msg and "last stderr lines" in msg and "RuntimeError" in msg
