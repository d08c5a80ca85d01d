"""The Ray backend on a local 2-CPU Ray instance started here (no dashboard): sharded render, database
and localization equal to the single-machine results; a task whose worker is killed is retried and resumes."""
from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

ray = pytest.importorskip("ray")

from ml_backend import blender_runner, distributed  # noqa: E402
from ml_backend.distributed import compare  # noqa: E402
from ml_backend.distributed import features as dfeatures  # noqa: E402
from ml_backend.distributed import localize as dlocalize  # noqa: E402
from ml_backend.distributed import render as drender  # noqa: E402
from ml_backend.localize_photos import LocalizeOptions, localize_photos  # noqa: E402
from ml_backend.paths import REPO_ROOT  # noqa: E402
from pose_addon.core.dataset import Dataset, DatasetError, atomic_write_json  # noqa: E402

HAVE_BLENDER = (REPO_ROOT / ".venv-blender" / "bin" / "python").is_file() or \
    bool(os.environ.get("POSE_BLENDER"))
needs_blender = pytest.mark.skipif(not HAVE_BLENDER, reason="no Blender environment (.venv-blender or POSE_BLENDER)")
BAKE = ["--bake-resolution", "64"]


@pytest.fixture(scope="module")
def cluster():
    """A local Ray instance with 2 CPUs (2 one-CPU workers)."""
    distributed.connect("local", num_cpus=2, task=distributed.TaskResources(num_cpus=1, max_retries=3))
    assert ray.cluster_resources().get("CPU") == 2
    yield
    distributed.shutdown()


@pytest.fixture(scope="module")
def small_render(tmp_path_factory):
    """A 6-reference + 4-query render config (160x120, 4 samples) and its single-machine render."""
    from ml_backend.bench import make_render_config
    from ml_backend.scenes import parse_scene

    if not HAVE_BLENDER:
        pytest.skip("no Blender environment")
    root = tmp_path_factory.mktemp("render")
    cfg = make_render_config(parse_scene("procedural"), 6, 4, 160, 120, samples=4)
    atomic_write_json(root / "render.json", cfg.to_dict())
    blender_runner.render_dataset("procedural:0", root / "render.json", root / "single", root / "cache",
                                  progress=False, extra=BAKE)
    return root


def test_shard_ranges_cover_the_plan_once():
    assert drender.shard_ranges(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert drender.shard_ranges(3, 8) == [(0, 3)]
    with pytest.raises(ValueError):
        drender.shard_ranges(3, 0)


@needs_blender
def test_sharded_render_equals_single_machine(cluster, small_render):
    out = small_render / "sharded"
    drender.render_dataset("procedural:0", small_render / "render.json", out, small_render / "cache",
                           progress=False, extra=BAKE, frames_per_task=3)
    assert compare.dataset_differences(small_render / "single", out) == []
    ds = Dataset.load(out)
    assert ds.complete and "shard" not in ds.manifest and len(ds.frames) == 10
    assert not out.with_name(out.name + ".shards").exists()
    # a rerun finds the complete dataset and starts no task
    before = (out / "manifest.json").stat().st_mtime_ns
    drender.render_dataset("procedural:0", small_render / "render.json", out, small_render / "cache",
                           progress=False, extra=BAKE, frames_per_task=3)
    assert (out / "manifest.json").stat().st_mtime_ns == before


def _blender_of(marker: str):
    """(pid, parent pid) of a running Blender whose command line holds ``marker``, else None."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if "blender_launcher.py" in cmd and marker in cmd:
            return int(pid), int(stat.rsplit(")", 1)[1].split()[1])
    return None


@needs_blender
def test_killed_task_is_retried_and_resumes(cluster, small_render):
    """SIGKILL the Ray worker running a shard and its Blender after the shard's first frame: Ray retries the
    task, the retry renders only the missing frames, and the merged dataset equals the single-machine one."""
    out = small_render / "killed"
    shard = out.with_name(out.name + ".shards") / "frames-000000-000005"
    killed = {}

    def killer():
        deadline = time.time() + 240
        while time.time() < deadline and not killed:
            try:
                n = len(json.loads((shard / "manifest.json").read_text())["frames"])
            except (OSError, ValueError, KeyError):
                n = 0
            found = _blender_of(str(shard)) if n >= 1 else None
            if found:
                pid, worker = found
                first = shard / "images" / "reference_0000.png"
                killed.update(mtime=first.stat().st_mtime_ns, n=n)
                for p in (worker, pid):
                    os.kill(p, signal.SIGKILL)
            time.sleep(0.05)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    drender.render_dataset("procedural:0", small_render / "render.json", out, small_render / "cache",
                           progress=False, extra=BAKE, frames_per_task=5)
    t.join(timeout=5)
    assert killed, "the shard's Blender was never seen running"
    assert killed["n"] < 5
    assert compare.dataset_differences(small_render / "single", out) == []
    # the frame finished before the kill was kept, not rendered again
    assert (out / "images" / "reference_0000.png").stat().st_mtime_ns == killed["mtime"]


def test_sharded_database_equals_single_machine(cluster, synth_dataset, synth_db, tmp_path):
    path = dfeatures.build_database(synth_dataset.root, tmp_path, "sift", progress=False, frames_per_task=5)
    assert path.name == synth_db.name
    assert compare.database_differences(synth_db, path) == []
    assert not list(tmp_path.glob("*.shard-*")) and not list(tmp_path.glob("*.partial"))


def test_database_merge_refuses_a_shard_of_other_references(cluster, synth_dataset, tmp_path):
    from ml_backend.matching.database import resolve_conf

    conf = resolve_conf("sift")
    conf["split"] = synth_dataset.reference_splits(None)
    digest = synth_dataset.digest(synth_dataset.reference_frames())
    ids = [f.id for f in synth_dataset.reference_frames()]
    shard = tmp_path / "db.h5.shard-000000-000002"
    dfeatures.build_shard(str(synth_dataset.root), str(shard), conf, digest, ids[:2])
    with h5py.File(shard, "a") as f:
        f.attrs["dataset_digest"] = "0123456789abcdef"
    with pytest.raises(DatasetError, match="0123456789abcdef"):
        dfeatures.merge_database_shards([shard], tmp_path / "db.h5", conf, digest, ids, str(synth_dataset.root))
    assert not (tmp_path / "db.h5").exists()


def test_render_merge_refuses_a_shard_of_another_config(tmp_path, synth_dataset):
    a, b = tmp_path / "a", tmp_path / "b"
    for d, (start, stop), digest in ((a, (0, 10), "x"), (b, (10, 20), "y")):
        shutil.copytree(synth_dataset.root, d)
        ds = Dataset.load(d)
        ds.frames = ds.frames[start:stop]
        ds.manifest.update(shard={"start": start, "stop": stop, "of": 20}, render={"digest": digest})
        ds.save()
    with pytest.raises(DatasetError, match="another config"):
        drender.merge_shards([a, b], tmp_path / "merged")
    assert not (tmp_path / "merged" / "manifest.json").exists()


def test_sharded_localize_equals_single_machine(cluster, synth_dataset, tmp_path):
    queries = synth_dataset.split("query")
    k = queries[0].intrinsics
    photos = [str(synth_dataset.path(f.image)) for f in queries]

    def opts(out):
        return LocalizeOptions(photos=photos, out=tmp_path / out, dataset=str(synth_dataset.root),
                               intrinsics=f"{k.fx},{k.fy},{k.cx},{k.cy}", cache=tmp_path / "cache", progress=False)

    sharded = dlocalize.localize_photos(opts("sharded"), photos_per_task=1)
    single = localize_photos(opts("single"))
    assert compare.localize_differences(tmp_path / "single", tmp_path / "sharded") == []
    assert sharded["summary"]["n_localized"] == single["summary"]["n_localized"] >= 3
    assert not (tmp_path / "sharded" / ".chunks").exists()
    for q, row in zip(queries, sharded["photos"]):  # the render world is the model frame here
        if row["status"] == "ok":
            assert np.allclose(row["cam_from_world"], q.cam_from_world, atol=0.05)


@pytest.mark.slow
def test_ray_train_regression_matches_one_process_and_resumes_there(cluster, tmp_path):
    """Two Ray Train workers (gloo) train like one process (no dropout: same gradients up to rounding), and the
    single-machine trainer resumes their checkpoint (about 3 minutes on 2 shared cores)."""
    import torch

    from ml_backend.distributed.train import train_regression
    from ml_backend.regression.train import load_checkpoint, train

    from .regression.test_regression import _cfg

    train_regression(_cfg(tmp_path, "ray", epochs=3, dropout=0.0), num_workers=2)
    ray_ck = load_checkpoint(tmp_path / "ray" / "last.pt")
    one = load_checkpoint(train(_cfg(tmp_path, "one", epochs=3, dropout=0.0)).with_name("last.pt"))
    assert ray_ck["epoch"] == one["epoch"] == 2
    for k in one["model"]:
        assert torch.allclose(one["model"][k], ray_ck["model"][k], atol=1e-4), k
    resumed = load_checkpoint(train(_cfg(tmp_path, "ray", epochs=5, dropout=0.0), resume=True).with_name("last.pt"))
    assert resumed["epoch"] == 4 and [h["epoch"] for h in resumed["history"]] == [0, 1, 2, 3, 4]


@pytest.mark.slow
@needs_blender
def test_scale_bench_forty_frames_twenty_photos(tmp_path, capsys):
    """The command users run: 40 frames rendered and 20 photos localized on one machine and on a local 2-worker Ray
    instance, each result equal, the throughput table printed (about 10 minutes on 2 shared cores)."""
    from ml_backend.__main__ import main

    if distributed.active():
        distributed.shutdown()
    rc = main(["scale-bench", "--frames", "40", "--photos", "20", "--workers", "2", "--out", str(tmp_path / "scale")])
    table = capsys.readouterr().out
    res = json.loads((tmp_path / "scale" / "results.json").read_text())
    assert rc == 0, table
    ray2 = res["rows"]["Ray, 2 workers"]
    assert ray2["identical"] == {"render": True, "database": True, "localize": True}
    assert ray2["frames"] == 40 and ray2["photos"] == 20
    assert "render frames/min" in table and "localize photos/min" in table


def test_a_task_error_names_the_shard_and_is_not_retried(cluster, synth_dataset, tmp_path):
    from ml_backend.distributed.cluster import ShardError, run_tasks
    from ml_backend.matching.database import resolve_conf

    conf = resolve_conf("sift")
    conf["split"] = synth_dataset.reference_splits(None)
    item = (str(synth_dataset.root), str(tmp_path / "db.h5.shard"), conf, "not-the-digest", ("reference_0000",))
    with pytest.raises(ShardError, match=r"task shard-a failed: DatasetError: .*changed since") as e:
        run_tasks(dfeatures.build_shard, [item], ["shard-a"], desc="database shards", progress=False,
                  retry_exceptions=(OSError,))
    assert "retries" not in str(e.value)
