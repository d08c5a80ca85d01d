import json
import math

import numpy as np
import pytest

from ml_backend.evaluation import THRESHOLDS, evaluate_results, pose_error, summarize, write_metrics
from pose_addon.core.poses import axis_angle_to_matrix, make_pose
from pose_addon.core.sampling import look_at


def test_pose_error_uses_centres_and_geodesic_angle():
    gt = look_at(np.array([10.0, 0.0, 2.0]), np.zeros(3))
    R = axis_angle_to_matrix(np.array([0.0, 0.0, np.radians(3.0)])) @ gt[:3, :3]
    c = np.array([10.0, 0.3, 2.4])  # 0.5 m from the true centre
    est = make_pose(R, -R @ c)
    dt, dr = pose_error(est, gt)
    assert dt == pytest.approx(0.5) and dr == pytest.approx(3.0)
    assert pose_error(None, gt) == (math.inf, math.inf)
    assert pose_error(np.full((4, 4), np.nan), gt) == (math.inf, math.inf)


def test_summarize_hand_computed():
    t = [0.01, 0.1, 0.3, 2.0, math.inf]
    r = [0.5, 1.5, 4.0, 8.0, math.inf]
    m = summarize(t, r, [0.1, 0.2, 0.3, 0.4, 0.5])
    assert m["recall"] == {"0.05m,1deg": 0.2, "0.25m,2deg": 0.4, "0.5m,5deg": 0.6, "5m,10deg": 0.8}
    assert list(m["recall"]) == ["0.05m,1deg", "0.25m,2deg", "0.5m,5deg", "5m,10deg"]
    assert m["median_t_m"] == pytest.approx(0.3) and m["median_R_deg"] == pytest.approx(4.0)
    assert m["localized"] == pytest.approx(0.8) and m["ms_per_query"] == pytest.approx(300.0)
    # rotation within threshold but translation not: no recall
    assert summarize([0.3], [0.1])["recall"]["0.25m,2deg"] == 0.0


def test_null_medians_and_json_safety(tmp_path):
    inf = math.inf
    m = summarize([0.1, inf, inf], [1.0, inf, inf])
    assert m["median_t_m"] is None and m["median_R_deg"] is None and m["localized"] == pytest.approx(1 / 3)
    assert m["ms_per_query"] is None
    half = summarize([0.1, 0.2, inf, inf], [1.0, 2.0, inf, inf])  # exactly half: lower median
    assert half["median_t_m"] == pytest.approx(0.2)
    none = summarize([], [])
    assert none["localized"] is None and none["recall"]["5m,10deg"] is None
    p = tmp_path / "m.json"
    write_metrics(p, {"a": m, "raw": [inf, -inf, float("nan")]})
    text = p.read_text()
    assert "Infinity" not in text and "NaN" not in text
    assert json.loads(text)["raw"] == [None, None, None]
    assert len(THRESHOLDS) == 4


def test_evaluate_results(synth_dataset):
    qs = synth_dataset.split("query")
    results = [{"id": qs[0].id, "cam_from_world": qs[0].cam_from_world.tolist(), "time_s": 0.2},
               {"id": qs[1].id, "cam_from_world": None, "time_s": 0.4}]
    metrics, rows = evaluate_results(results, synth_dataset)
    assert len(rows) == len(qs) and rows[0]["t_err_m"] == pytest.approx(0.0, abs=1e-9)
    assert metrics["localized"] == pytest.approx(1 / len(qs))
    assert metrics["recall"]["0.05m,1deg"] == pytest.approx(1 / len(qs))
    assert metrics["ms_per_query"] == pytest.approx(300.0)
