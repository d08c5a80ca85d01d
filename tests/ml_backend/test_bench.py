import json
import os
import subprocess
import sys

import pytest

from ml_backend.bench import BenchOptions, make_render_config, run_bench, run_method_subprocess
from ml_backend.blender_runner import REPO_ROOT
from ml_backend.scenes import parse_scene


def test_render_config_groups():
    cfg = make_render_config(parse_scene("procedural"), 100, 60, 640, 480)
    ref, q = cfg.groups
    assert (ref.split, q.split) == ("reference", "query")
    assert ref.sampler.layout == "fibonacci" and q.sampler.layout == "random" and ref.sampler.seed != q.sampler.seed
    assert ref.sampler.distance == (25.0, 40.0) and q.noise_std == 3.0 and ref.noise_std == 0.0
    assert q.lighting != ref.lighting


def test_bench_renders_once_and_writes_results(fake_blender, tmp_path):
    opts = BenchOptions(scene="procedural", out=tmp_path / "out", n_references=10, n_queries=3, width=320,
                        height=240, cache=tmp_path / "cache", progress=False)
    res = run_bench(opts)
    text = (tmp_path / "out" / "results.json").read_text()
    assert "Infinity" not in text and json.loads(text) == res
    assert set(res) == {"scene", "n_references", "n_queries", "methods", "ground", "query_blur_px", "query_style",
                        "band", "render_s_per_frame"}
    assert (res["ground"], res["query_blur_px"], res["query_style"], res["band"]) == \
        ("textured", 0.0, "render", "orbit")
    assert (res["scene"], res["n_references"], res["n_queries"]) == ("procedural", 10, 3)
    assert set(res["methods"]) == {"retrieval_nn", "sift"}
    s = res["methods"]["sift"]
    assert set(s) == {"recall", "median_t_m", "median_R_deg", "localized", "ms_per_query"}
    assert list(s["recall"]) == ["0.05m,1deg", "0.25m,2deg", "0.5m,5deg", "5m,10deg"]
    assert s["recall"]["0.25m,2deg"] == 1.0 and s["median_t_m"] < 0.02
    assert (tmp_path / "out" / "recall.png").is_file()
    run_bench(opts)  # second run: dataset and database come from the cache
    assert len(fake_blender.read_text().splitlines()) == 1


def test_missing_mesh_fails_before_blender(fake_blender, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run([sys.executable, "-m", "ml_backend", "bench", "--scene", str(tmp_path / "no.glb"),
                           "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c")],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 1 and "scene mesh not found" in proc.stderr
    assert not fake_blender.exists()


def test_unknown_and_failing_methods(synth_dataset, tmp_path):
    with pytest.raises(ValueError, match="unknown methods"):
        run_bench(BenchOptions(methods=("nope",), out=tmp_path / "o"), synth_dataset.root)
    res = run_method_subprocess("sift", synth_dataset.root, tmp_path / "w", {"database": str(tmp_path / "x.h5")},
                                tmp_path / "rows.json")
    assert res["exit_code"] == 1 and "feature database not found" in res["failed"], res


def test_photo_queries_and_street_band_in_the_render_config():
    from ml_backend.scenes import parse_scene

    spec = parse_scene("procedural")
    cfg = make_render_config(spec, 10, 4, 320, 240, query_style="photo", photo_seed=9, band="street")
    ref, q = cfg.groups
    assert ref.photo is None and q.photo is not None and q.photo.seed == 9
    assert ref.sampler.eye_height_m and q.sampler.eye_height_m and ref.sampler.elevation_deg == (0.0, 0.0)
    plain = make_render_config(spec, 10, 4, 320, 240)
    assert plain.groups[1].photo is None and "photo" not in json.dumps(plain.to_dict())
    with pytest.raises(ValueError, match="query style"):
        make_render_config(spec, 10, 4, 320, 240, query_style="painting")


def test_bench_plot_of_two_runs(tmp_path):
    from ml_backend.bench import plot_runs

    for style in ("render", "photo"):
        d = tmp_path / style
        d.mkdir()
        (d / "results.json").write_text(json.dumps({"scene": "s", "query_style": style, "band": "orbit"}))
        errors = {"sift": {"t_err_m": [0.01, None, 0.3], "R_err_deg": [0.1, None, 1]}}
        (d / "errors.json").write_text(json.dumps(errors))
    out = plot_runs([tmp_path / "render", tmp_path / "photo"], tmp_path / "both.png")
    assert out.is_file() and out.stat().st_size > 1000
