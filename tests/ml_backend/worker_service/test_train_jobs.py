"""Training jobs report their training's progress: a ``train_keypoints`` job follows the heatmap training."""
from pathlib import Path

TINY_HM = {"size": 64, "width": 8, "batch": 2, "samples_per_epoch": 4, "time_s": 2.0, "pretrained": False,
           "val_views": 2}  # random weights: the code path, not accuracy


def test_train_keypoints_job_reports_training_progress(worker, synth_dataset):
    conf = {"n_keypoints": 8, "gl_views": 0, "heatmap": TINY_HM, "device": "cpu"}
    job = worker.request("job.start", {"kind": "train_keypoints", "subscribe": True,
                                       "params": {"dataset": str(synth_dataset.root), "conf": conf}}, timeout=30)
    st = worker.wait_job(job["id"], timeout=300)
    assert st["state"] == "done", st["error"]
    assert Path(st["result"]["model"]).is_file() and st["result"]["n_keypoints"] == 8
    seen = [e["job"] for e in worker.events if e.get("event") == "job" and e["job"]["id"] == job["id"]]
    training = [s for s in seen if s["state"] == "running" and s["stage"] == "keypoints training"]
    assert any(0 < (s["progress"] or 0) for s in training), [(s["stage"], s["progress"]) for s in seen]
    assert any("epoch" in s["message"] and "loss" in s["message"] for s in training), training[-1:]
