"""Photo-style config and camera effects (numpy only): digests, distortion against OpenCV, effect parameters."""
import json

import numpy as np
import pytest

from pose_addon.core import photo_effects as pe
from pose_addon.core.render_config import PhotoStyle, RenderConfig, RenderGroup
from pose_addon.core.sampling import SamplerConfig


def test_render_style_digest_unchanged_and_photo_style_round_trips():
    base = RenderConfig(groups=[RenderGroup("query", SamplerConfig(n=5), noise_std=3.0)])
    assert "photo" not in json.dumps(base.to_dict())
    assert base.digest("s") == "a238311bfbb9"  # computed with the render_config.py before photo styles existed
    photo = RenderConfig(groups=[RenderGroup("query", SamplerConfig(n=5), noise_std=3.0, photo=PhotoStyle(seed=4))])
    back = RenderConfig.from_dict(json.loads(json.dumps(photo.to_dict())))
    assert back.groups[0].photo == PhotoStyle(seed=4) and back.digest("s") == photo.digest("s") != base.digest("s")
    other = RenderConfig(groups=[RenderGroup("query", SamplerConfig(n=5), noise_std=3.0, photo=PhotoStyle(seed=5))])
    assert other.digest("s") != photo.digest("s")


@pytest.mark.parametrize("bad", [dict(environment="studio"), dict(k1=(0.1, -0.1)), dict(jpeg_quality=(0, 120)),
                                 dict(occluder_cover=1.5), dict(occluders=(-1, 2))])
def test_bad_photo_style_is_refused(bad):
    with pytest.raises(ValueError):
        RenderConfig(groups=[RenderGroup("query", SamplerConfig(n=2), photo=PhotoStyle(**bad))]).validate()
    with pytest.raises(ValueError, match="unknown photo style"):
        PhotoStyle.from_dict({"sharpness": 1})


def test_parameters_are_seeded_and_in_range():
    style = PhotoStyle()
    a = pe.sample_photo_params(style, np.random.default_rng(3))
    b = pe.sample_photo_params(style, np.random.default_rng(3))
    assert a == b and json.loads(json.dumps(a)) == a
    for k in ("k1", "k2", "defocus_px", "motion_px", "vignetting", "exposure_ev"):
        lo, hi = getattr(style, k)
        assert lo <= a[k] <= hi
    assert 70 <= a["jpeg_quality"] <= 92 and 0 <= a["occluders"] <= 4


def test_distortion_map_inverts_opencv_distortion():
    cv2 = pytest.importorskip("cv2")
    w, h, f, cx, cy, k1, k2 = 160, 120, 140.0, 79.5, 59.5, -0.15, 0.03
    mx, my = pe.distortion_source_map(w, h, f, f, cx, cy, k1, k2)
    K = np.array([[f, 0, cx], [0, f, cy], [0, 0, 1.0]])
    # the pinhole pixel shown at each distorted pixel is what cv2.undistortPoints gives for that distorted pixel
    ys, xs = np.mgrid[0:h:7, 0:w:9]
    pts = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64)
    und = cv2.undistortPoints(pts.reshape(-1, 1, 2), K, np.array([k1, k2, 0, 0.0]), P=K).reshape(-1, 2)
    got = np.stack([mx[ys.ravel(), xs.ravel()], my[ys.ravel(), xs.ravel()]], 1)
    assert np.abs(got - und).max() < 1e-3
    m = pe.distortion_margin_px(w, h, f, f, cx, cy, k1, k2)
    assert m >= max(-mx.min(), mx.max() - (w - 1), -my.min(), my.max() - (h - 1))


def test_camera_effects_keep_the_geometry_and_change_the_photometry():
    w, h, m = 80, 60, 4
    img = np.full((h + 2 * m, w + 2 * m, 3), 128, np.uint8)
    img[:, (w + 2 * m) // 2:] = 60
    p = {"k1": 0.0, "k2": 0.0, "defocus_px": 0.0, "motion_px": 0.0, "vignetting": 0.0, "exposure_ev": 1.0,
         "white_balance": [1.0, 1.0, 1.0]}
    out = pe.apply_camera_effects(img, p, 70.0, 70.0, (w - 1) / 2, (h - 1) / 2, m)
    assert out.shape == (h, w, 3)
    lin = pe.srgb_to_linear(np.array(128 / 255.0))
    assert out[h // 2, 5, 0] == pytest.approx(pe.linear_to_srgb(2 * lin) * 255, abs=0.01)  # +1 EV doubles light
    p.update(exposure_ev=0.0, vignetting=0.3)
    v = pe.apply_camera_effects(img, p, 70.0, 70.0, (w - 1) / 2, (h - 1) / 2, m)
    assert v[0, 0, 0] < v[h // 2, 5, 0] - 5  # darker corners
    k = pe.motion_kernel(5.0, 30.0)
    assert k.sum() == pytest.approx(1.0) and k.shape[0] == k.shape[1]
