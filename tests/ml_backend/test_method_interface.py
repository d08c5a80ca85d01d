"""The method interface: opened once with options, ``estimate(image, intrinsics)`` image after image, the
acceptance rule, focal-length estimation for the matching methods and the ensemble."""
import pytest

from ml_backend.evaluation import pose_error
from ml_backend.methods.interface import MatchingOptions, accept, describe_methods, open_method
from pose_addon.core.cameras import Intrinsics


def _guess(k: Intrinsics, factor: float) -> Intrinsics:
    return Intrinsics(k.width, k.height, k.fx * factor, k.fx * factor, k.cx, k.cy)


@pytest.mark.parametrize("name", ["sift", pytest.param("ensemble", marks=pytest.mark.slow)])  # xfeat on CPU
def test_known_and_estimated_focal(name, synth_dataset, tmp_path):
    with open_method(name, synth_dataset, tmp_path / "work") as m:
        for q in synth_dataset.split("query")[:2]:
            img = str(synth_dataset.path(q.image))
            e = m.estimate(img, q.intrinsics)
            assert e.success and not e.reason and e.confidence > 0.5 and 0 < e.inlier_ratio <= 1
            assert pose_error(e.cam_from_world, q.cam_from_world)[0] < 0.05
            f = m.estimate(img, _guess(q.intrinsics, 0.6), estimate_focal=True)  # a 40% wrong starting guess
            assert f.success, f.reason
            assert f.intrinsics.fx == pytest.approx(q.intrinsics.fx, rel=0.01)
            assert pose_error(f.cam_from_world, q.cam_from_world)[1] < 0.5


def test_acceptance_rule_reports_reasons(synth_dataset, tmp_path):
    q = synth_dataset.split("query")[0]
    img = str(synth_dataset.path(q.image))
    with open_method("sift", synth_dataset, tmp_path / "work", {"hfov_range_deg": (80.0, 120.0)}) as m:
        e = m.estimate(img, q.intrinsics)
    assert not e.success and e.cam_from_world is None and "implausible focal length" in e.reason
    with open_method("sift", synth_dataset, tmp_path / "work", {"min_inliers": 100000}) as m:
        e = m.estimate(img, q.intrinsics)
    assert not e.success and "inliers" in e.reason
    k = q.intrinsics
    opts = MatchingOptions()
    assert accept(100, 200, 0.5, k, opts, False)[0] == ""
    assert "inlier ratio" in accept(100, 10000, 0.5, k, opts, False)[0]
    assert "reprojection error" in accept(100, 200, 9.0, k, opts, False)[0]
    assert "too bunched" in accept(30, 60, 0.5, k, opts, False, coverage=0.05)[0]
    assert accept(100, 200, 0.5, k, opts, False, coverage=0.05)[0] == ""  # many inliers: trusted anyway
    assert "with the focal length solved" in accept(20, 30, 0.5, k, opts, True)[0]
    with pytest.raises(ValueError, match="unknown options"):
        open_method("sift", synth_dataset, tmp_path / "work", {"nope": 1})


def test_describe_methods_lists_options_with_defaults():
    d = {m["name"]: m for m in describe_methods()}
    assert d["ensemble"]["estimate_focal"] and d["ensemble"]["options"]["min_inliers_focal"] == 25
    assert d["regression"]["kind"] == "other"
