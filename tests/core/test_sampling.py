"""Camera sampler: ranges, layouts, determinism and rejection checks."""
import numpy as np
import pytest

from pose_addon.core.cameras import Intrinsics, camera_center
from pose_addon.core.sampling import (
    SamplerConfig,
    aabb_inside_fn,
    coverage,
    in_band,
    look_at,
    placement_preset,
    sample_cameras,
)

INTR = Intrinsics(640, 480, 500.0, 500.0, 319.5, 239.5)
TARGET = np.array([0.0, 0.0, 5.0])
BOX = np.array([[[-7.5, -5, 0], [7.5, 5, 12]]])
CORNERS = np.array([[x, y, z] for x in (-7.5, 7.5) for y in (-5, 5) for z in (0, 12)], dtype=float)


@pytest.mark.parametrize("layout", ["fibonacci", "rings", "random"])
def test_ranges_and_determinism(layout):
    cfg = SamplerConfig(n=40, layout=layout, distance=(20, 30), elevation_deg=(10, 40), seed=3)
    a = sample_cameras(cfg, TARGET, INTR, CORNERS, aabb_inside_fn(BOX))
    b = sample_cameras(cfg, TARGET, INTR, CORNERS, aabb_inside_fn(BOX))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (40, 4, 4)
    for T in a:
        d = camera_center(T) - TARGET
        r = np.linalg.norm(d)
        assert 20 - 1e-9 <= r <= 30 + 1e-9
        assert 10 - 1e-6 <= np.degrees(np.arcsin(d[2] / r)) <= 40 + 1e-6
        np.testing.assert_allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-12)
    c = sample_cameras(SamplerConfig(n=40, layout=layout, distance=(20, 30), elevation_deg=(10, 40), seed=4),
                       TARGET, INTR, CORNERS)
    if layout != "fibonacci" and layout != "rings":
        assert not np.allclose(a, c)


def test_fibonacci_covers_azimuths_evenly():
    T = sample_cameras(SamplerConfig(n=64, layout="fibonacci", distance=(25, 25)), TARGET, INTR)
    az = np.degrees(np.arctan2(*(np.stack([camera_center(t) for t in T])[:, [1, 0]].T))) % 360
    hist, _ = np.histogram(az, bins=8, range=(0, 360))
    assert hist.min() >= 6


def test_rejects_inside_geometry_and_low_coverage():
    inside = aabb_inside_fn(BOX, margin=0.0)
    T = sample_cameras(SamplerConfig(n=30, layout="random", distance=(2, 40), elevation_deg=(0, 10), seed=1),
                       TARGET, INTR, CORNERS, inside)
    assert not inside(np.stack([camera_center(t) for t in T])).any()
    T = sample_cameras(SamplerConfig(n=10, distance=(20, 200), min_coverage=0.2), TARGET, INTR, CORNERS)
    assert min(coverage(INTR, t, CORNERS) for t in T) >= 0.2
    with pytest.raises(RuntimeError, match="low coverage"):
        sample_cameras(SamplerConfig(n=5, distance=(500, 600), min_coverage=0.5), TARGET, INTR, CORNERS)


def test_roll_and_jitter():
    cfg = SamplerConfig(n=20, layout="random", roll_deg=30, jitter_m=1.0, seed=2)
    T = sample_cameras(cfg, TARGET, INTR)
    # with roll, world up no longer projects onto the image's vertical axis for every camera
    x_axis_z = np.abs(T[:, 0, 2])  # world Z component of the camera x axis
    assert x_axis_z.max() > 0.1


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="layout"):
        sample_cameras(SamplerConfig(layout="spiral"), TARGET, INTR)
    with pytest.raises(ValueError, match="elevation"):
        sample_cameras(SamplerConfig(elevation_deg=(10, 120)), TARGET, INTR)


def test_placement_presets_scale_with_the_building_and_street_stands_at_eye_height():
    lo, hi = np.array([-7.5, -5.0, 0.0]), np.array([7.5, 5.0, 8.0])
    target = (lo + hi) / 2
    street = placement_preset("street", lo, hi, n=24, seed=0)
    T = sample_cameras(street, target, INTR, inside_fn=aabb_inside_fn(np.stack([lo, hi])[None], 0.5))
    centres = np.array([-t[:3, :3].T @ t[:3, 3] for t in T])
    assert np.all((centres[:, 2] >= 1.5) & (centres[:, 2] <= 2.0))
    horiz = np.hypot(centres[:, 0], centres[:, 1])
    assert horiz.min() >= street.distance[0] - 1e-9 and horiz.max() <= street.distance[1] + 1e-9
    assert horiz.max() < 30.0 and horiz.min() > 9.0 + 7.0  # outside the footprint, closer than the orbit shell
    assert all(in_band(street, target, t)[0] for t in T)
    orbit = placement_preset("orbit", lo, hi)
    assert orbit.distance == (25.0, 40.0) and orbit.elevation_deg == (5.0, 35.0)
    big = placement_preset("orbit", lo * 2, hi * 2)
    assert big.distance == (50.0, 80.0)
    aerial = placement_preset("aerial", lo, hi, n=10)
    Ta = sample_cameras(aerial, target, INTR)
    assert not in_band(street, target, Ta[0])[0] and "outside" in in_band(street, target, Ta[0])[1]
    assert aerial.to_dict() == SamplerConfig.from_dict(aerial.to_dict()).to_dict()
    assert "eye_height_m" not in orbit.to_dict()  # digests of shell configs unchanged
    assert SamplerConfig.from_dict(street.to_dict()) == street
    with pytest.raises(ValueError, match="unknown placement preset"):
        placement_preset("drone", lo, hi)


def test_placement_from_user_cameras_covers_their_band():
    from pose_addon.core.sampling import placement_from_cameras

    target = np.array([0.0, 0.0, 5.0])
    user = [look_at(np.array([18 * np.cos(a), 18 * np.sin(a), h]), target)
            for a, h in ((0.2, 1.6), (0.6, 1.8), (1.1, 1.7))]  # three photos from one side, at eye height
    cfg = placement_from_cameras(user, target, 0.0, n=20)
    assert cfg.eye_height_m[0] <= 1.6 and cfg.eye_height_m[1] >= 1.8 and cfg.distance[0] < 18 < cfg.distance[1]
    assert cfg.azimuth_deg[1] - cfg.azimuth_deg[0] < 120  # the empty side is left out
    T = sample_cameras(cfg, target, INTR)
    assert all(in_band(cfg, target, t)[0] for t in T) and all(in_band(cfg, target, u)[0] for u in user)
    with pytest.raises(ValueError, match="no cameras"):
        placement_from_cameras([], target, 0.0)
