"""The `localize` job and the `methods.list` request."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest


def test_methods_list_names_every_method_with_its_options(worker):
    from ml_backend.methods import REGISTRY

    res = worker.request("methods.list", {})
    by_name = {m["name"]: m for m in res["methods"]}
    assert set(by_name) == set(REGISTRY)
    sift = by_name["sift"]
    assert sift["kind"] == "matching" and sift["estimate_focal"]
    assert sift["options"]["min_inliers"] == 12 and sift["options"]["hfov_range_deg"] == [15.0, 120.0]


def test_localize_job_writes_poses_in_the_model_frame(worker, synth_dataset, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    q = synth_dataset.split("query")[0]
    shutil.copy(synth_dataset.path(q.image), photos / "a.png")
    (photos / "b.jpg").write_bytes(b"not a jpeg")
    k = q.intrinsics
    job = worker.start_job("localize", dataset=str(synth_dataset.root), photos=str(photos), out=str(tmp_path / "o"),
                           intrinsics=f"{k.fx},{k.fy},{k.cx},{k.cy}")
    st = worker.wait_job(job["id"], timeout=300)
    assert st["state"] == "done", st
    assert st["result"]["summary"]["n_localized"] == 1 and "b" in st["result"]["summary"]["failed"]
    poses = json.loads(Path(st["result"]["poses"]).read_text())
    row = next(r for r in poses["photos"] if r["stem"] == "a")
    assert np.allclose(row["cam_from_world"], q.cam_from_world, atol=0.05)  # identity model_from_world here
    with pytest.raises(Exception, match="exactly one"):
        worker.start_job("localize", photos=str(photos))
