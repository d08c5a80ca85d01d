"""Camera samplers around a target (pure numpy, deterministic per seed).

Cameras are placed on a shell around ``target`` (distance, elevation and azimuth ranges; a hemisphere is
elevation 0..90, a full shell -90..90) with one of three layouts:

* ``fibonacci`` -- an even spiral over the band of the sphere (good reference coverage);
* ``rings`` -- ``rings`` elevation rings with evenly spaced azimuths;
* ``random`` -- uniform on the band's area (good for queries that fall *between* references).

Each camera looks at the target (plus ``jitter_m`` of random offset) with world +Z up, then is rolled about
its optical axis by up to ``roll_deg``. Candidates inside geometry (``inside_fn``) or where the target covers
less than ``min_coverage`` of the frame are rejected and replaced.

With ``eye_height_m`` set, cameras stand at that height above ``ground_z`` instead of on the shell: ``distance`` is
then the horizontal distance from the target and only the azimuth of the layout is used (street-level photos).

:func:`placement_preset` gives scale-aware configs from a model's bounding box: ``orbit`` (a shell 25-40 m away
for a 15 m building, 5-35 deg up), ``street`` (eye height 1.5-2 m, close enough to frame the facades) and
``aerial`` (40-70 deg up, farther away).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np

from .cameras import Intrinsics, project_points
from .model_frame import DEFAULT_LONGEST_SIDE_M
from .poses import axis_angle_to_matrix, make_pose

__all__ = ["SamplerConfig", "look_at", "sample_cameras", "coverage", "aabb_inside_fn", "placement_preset",
           "PRESETS", "in_band", "placement_from_cameras"]

LAYOUTS = ("fibonacci", "rings", "random")
#: camera placement presets of :func:`placement_preset`
PRESETS = ("orbit", "street", "aerial")
#: the building size the fixed distances of the ``orbit`` and ``aerial`` presets were chosen for (longest side, m)
REFERENCE_SIZE_M = DEFAULT_LONGEST_SIDE_M


@dataclass
class SamplerConfig:
    """Parameters of :func:`sample_cameras`. Angles in degrees, distances in metres."""

    n: int = 100
    layout: str = "fibonacci"
    distance: tuple = (25.0, 40.0)
    elevation_deg: tuple = (5.0, 35.0)
    azimuth_deg: tuple = (0.0, 360.0)
    roll_deg: float = 0.0
    jitter_m: float = 0.0
    rings: int = 3
    min_coverage: float = 0.05
    seed: int = 0
    eye_height_m: tuple = ()  # (lo, hi) above ground_z: cameras at eye height, distance horizontal; () = shell
    ground_z: float = 0.0  # world z of the ground the eye height is measured from

    #: fields added after the first release: left out of ``to_dict`` at their defaults so digests stay stable
    _OPTIONAL = {"eye_height_m": (), "ground_z": 0.0}

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: v for k, v in d.items() if k not in self._OPTIONAL or v != self._OPTIONAL[k]}

    @classmethod
    def from_dict(cls, d: dict) -> SamplerConfig:
        d = dict(d)
        for k in ("distance", "elevation_deg", "azimuth_deg", "eye_height_m"):
            if k in d:
                d[k] = tuple(float(x) for x in d[k])
        return cls(**d)

    def validate(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"unknown layout {self.layout!r}; choose one of {', '.join(LAYOUTS)}")
        if self.n < 1:
            raise ValueError("n must be at least 1")
        if not (0 < self.distance[0] <= self.distance[1]):
            raise ValueError(f"distance range must be positive and ordered, got {self.distance}")
        if not (-90 <= self.elevation_deg[0] <= self.elevation_deg[1] <= 90):
            raise ValueError(f"elevation range must lie in [-90, 90] and be ordered, got {self.elevation_deg}")
        if self.eye_height_m and not (len(self.eye_height_m) == 2 and self.eye_height_m[0] <= self.eye_height_m[1]):
            raise ValueError(f"eye_height_m must be an ordered (lo, hi) pair, got {self.eye_height_m}")


def placement_preset(name: str, bounds_min, bounds_max, n: int = 100, seed: int = 0,
                     layout: str = "fibonacci", eye_height_m: tuple = (1.5, 2.0)) -> SamplerConfig:
    """A scale-aware :class:`SamplerConfig` for a building with world bounding box ``bounds_min..bounds_max`` ``[3]``.

    * ``orbit``: a shell 25-40 m away for a building whose longest side is 15 m (scaled with it), 5-35 deg up;
    * ``street``: eye height ``eye_height_m`` above the bounding box's floor, around the building, horizontally
      ``r`` + 0.5 to ``r`` + 1.3 longest sides from its centre (``r``: radius of the footprint circle), where a
      facade fills a 60 deg view as it does in a photo taken from across the street;
    * ``aerial``: 40-70 deg up, 30-50 m away for a 15 m building (scaled).

    The cameras look at the bounding box's centre (pass it as ``target`` to :func:`sample_cameras`).
    """
    lo, hi = np.asarray(bounds_min, np.float64), np.asarray(bounds_max, np.float64)
    ext = hi - lo
    if ext.shape != (3,) or not np.all(np.isfinite(ext)) or ext.max() <= 0:
        raise ValueError(f"bounds must be two ordered 3D points, got {bounds_min}, {bounds_max}")
    longest = float(ext.max())
    f = longest / REFERENCE_SIZE_M
    if name == "orbit":
        return SamplerConfig(n=n, layout=layout, distance=(25.0 * f, 40.0 * f), elevation_deg=(5.0, 35.0), seed=seed)
    if name == "aerial":
        return SamplerConfig(n=n, layout=layout, distance=(30.0 * f, 50.0 * f), elevation_deg=(40.0, 70.0),
                             seed=seed)
    if name == "street":
        r = 0.5 * float(np.hypot(ext[0], ext[1]))
        return SamplerConfig(n=n, layout=layout, distance=(r + 0.5 * longest, r + 1.3 * longest),
                             elevation_deg=(0.0, 0.0), seed=seed, eye_height_m=tuple(float(x) for x in eye_height_m),
                             ground_z=float(lo[2]))
    raise ValueError(f"unknown placement preset {name!r}; choose one of {', '.join(PRESETS)}")


def placement_from_cameras(cams_from_world, target, ground_z: float, n: int = 100, seed: int = 0,
                           layout: str = "fibonacci") -> SamplerConfig:
    """A :class:`SamplerConfig` at eye height around ``target`` covering the band of cameras a user placed
    (``cams_from_world [M, 4, 4]``, world frame): their horizontal distances (+-15%), heights above ``ground_z``
    (+-0.25 m) and azimuths (the whole circle unless they leave a gap over 90 deg, which stays out, 15 deg kept
    on either side)."""
    T = np.asarray(cams_from_world, np.float64).reshape(-1, 4, 4)
    if len(T) == 0:
        raise ValueError("no cameras to seed the references from")
    centres = np.array([-t[:3, :3].T @ t[:3, 3] for t in T])
    v = centres - np.asarray(target, np.float64)
    dist = np.hypot(v[:, 0], v[:, 1])
    height = centres[:, 2] - float(ground_z)
    az = np.sort(np.mod(np.degrees(np.arctan2(v[:, 1], v[:, 0])), 360.0))
    gaps = np.diff(np.concatenate([az, az[:1] + 360.0]))
    k = int(np.argmax(gaps))
    azimuth = (0.0, 360.0)
    if len(az) > 1 and gaps[k] > 90.0:  # leave out the largest empty sector
        start = az[(k + 1) % len(az)] - 15.0
        azimuth = (start, start + 360.0 - gaps[k] + 30.0)
    elif len(az) == 1:
        azimuth = (az[0] - 45.0, az[0] + 45.0)
    return SamplerConfig(n=n, layout=layout, distance=(max(0.5, 0.85 * dist.min()), 1.15 * dist.max()),
                         elevation_deg=(0.0, 0.0), azimuth_deg=azimuth, seed=seed,
                         eye_height_m=(max(0.0, height.min() - 0.25), height.max() + 0.25), ground_z=float(ground_z))


def in_band(cfg: SamplerConfig, target, cam_from_world: np.ndarray, margin: float = 0.25) -> tuple[bool, str]:
    """Whether a camera lies in the band ``cfg`` samples (distance, and elevation or eye height, widened by
    ``margin`` of each range's width plus a little); returns ``(inside, reason when outside)``."""
    T = np.asarray(cam_from_world, np.float64)
    centre = -T[:3, :3].T @ T[:3, 3]
    v = centre - np.asarray(target, np.float64)

    def check(value: float, rng: tuple, what: str, unit: str) -> str:
        pad = margin * (rng[1] - rng[0]) + margin * max(abs(rng[0]), abs(rng[1]), 1.0) * 0.2
        if value < rng[0] - pad or value > rng[1] + pad:
            return f"{what} {value:.1f}{unit} outside the references' {rng[0]:.1f}-{rng[1]:.1f}{unit}"
        return ""

    if cfg.eye_height_m:
        why = check(float(np.hypot(v[0], v[1])), cfg.distance, "horizontal distance", " m") or \
            check(float(centre[2] - cfg.ground_z), cfg.eye_height_m, "height", " m")
    else:
        dist = float(np.linalg.norm(v))
        el = float(np.degrees(np.arcsin(np.clip(v[2] / max(dist, 1e-9), -1, 1))))
        why = check(dist, cfg.distance, "distance", " m") or check(el, cfg.elevation_deg, "elevation", " deg")
    return (not why, why)


def look_at(eye: np.ndarray, target: np.ndarray, up: tuple | np.ndarray = (0.0, 0.0, 1.0),
            roll_deg: float = 0.0) -> np.ndarray:
    """``cam_from_world`` (OpenCV axes) of a camera at ``eye`` looking at ``target`` with world ``up`` up.

    ``roll_deg`` rotates the camera about its optical axis (positive = image content turns clockwise).
    """
    eye = np.asarray(eye, dtype=np.float64)
    z = np.asarray(target, dtype=np.float64) - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, np.asarray(up, dtype=np.float64))
    if np.linalg.norm(x) < 1e-9:  # looking straight up or down: pick any right vector
        x = np.cross(z, np.array([0.0, 1.0, 0.0]))
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R_world_from_cam = np.stack([x, y, z], axis=1)
    if roll_deg:
        R_world_from_cam = R_world_from_cam @ axis_angle_to_matrix(np.array([0.0, 0.0, np.radians(roll_deg)]))
    R = R_world_from_cam.T
    return make_pose(R, -R @ eye)


def coverage(intr: Intrinsics, cam_from_world: np.ndarray, points_world: np.ndarray) -> float:
    """Share of the image inside the 2D bounding box of the visible projections of ``points_world [N, 3]``."""
    uv, z = project_points(intr.K, cam_from_world, points_world)
    uv = uv[z > 1e-6]
    if len(uv) == 0:
        return 0.0
    lo = np.clip(uv.min(0), [0, 0], [intr.width, intr.height])
    hi = np.clip(uv.max(0), [0, 0], [intr.width, intr.height])
    return float(np.prod(hi - lo) / (intr.width * intr.height))


def aabb_inside_fn(boxes: np.ndarray, margin: float = 0.5) -> Callable[[np.ndarray], np.ndarray]:
    """Occupancy test from axis-aligned boxes ``[B, 2, 3]`` (min, max corners), grown by ``margin`` metres."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 2, 3)

    def inside(points: np.ndarray) -> np.ndarray:
        p = np.atleast_2d(points)[:, None, :]
        hit = np.all((p >= boxes[None, :, 0] - margin) & (p <= boxes[None, :, 1] + margin), axis=-1)
        return hit.any(axis=1)

    return inside


def _directions(cfg: SamplerConfig, count: int, rng: np.random.Generator, layout: str) -> np.ndarray:
    """Unit directions ``[count, 3]`` from target to camera within the elevation/azimuth band."""
    e0, e1 = np.radians(cfg.elevation_deg)
    a0, a1 = np.radians(cfg.azimuth_deg)
    z0, z1 = np.sin(e0), np.sin(e1)  # uniform in z = uniform in area on the sphere band
    if layout == "random":
        z = rng.uniform(z0, z1, count)
        az = rng.uniform(a0, a1, count)
    elif layout == "fibonacci":
        i = np.arange(count) + 0.5
        z = z0 + (z1 - z0) * i / count
        golden = np.pi * (3.0 - np.sqrt(5.0))
        az = a0 + np.mod(i * golden, 2 * np.pi) * (a1 - a0) / (2 * np.pi)
    else:  # rings
        n_rings = max(1, min(cfg.rings, count))
        per = np.full(n_rings, count // n_rings)
        per[: count % n_rings] += 1
        zs: list[float] = []
        azs: list[float] = []
        for ring, m in enumerate(per):
            zr = z0 + (z1 - z0) * (ring + 0.5) / n_rings
            offset = 0.5 * (ring % 2)
            zs += [zr] * m
            azs += list(a0 + (a1 - a0) * (np.arange(m) + offset) / m)
        z, az = np.array(zs), np.array(azs)
    r = np.sqrt(np.clip(1 - z * z, 0, None))
    return np.stack([r * np.cos(az), r * np.sin(az), z], axis=1)


def sample_cameras(cfg: SamplerConfig, target: np.ndarray, intr: Intrinsics,
                   target_points: Optional[np.ndarray] = None,
                   inside_fn: Optional[Callable[[np.ndarray], np.ndarray]] = None,
                   max_tries: int = 20) -> np.ndarray:
    """Sample ``cfg.n`` cameras; returns ``cam_from_world`` poses ``[n, 4, 4]`` (OpenCV axes).

    Args:
        cfg: sampler parameters (deterministic for a given ``cfg.seed``).
        target: point ``[3]`` (world) the cameras look at.
        intr: intrinsics used for the coverage check.
        target_points: ``[N, 3]`` world points of the geometry of interest (e.g. mesh vertices) for coverage.
        inside_fn: ``points [M, 3] -> bool [M]``, True where a point lies inside geometry.
        max_tries: re-draws of distance/jitter per candidate direction before it is replaced.

    Raises:
        RuntimeError: if fewer than ``cfg.n`` valid cameras are found (say which check rejected them).
    """
    cfg.validate()
    rng = np.random.default_rng(cfg.seed)
    target = np.asarray(target, dtype=np.float64)
    poses: list[np.ndarray] = []
    rejected = {"inside": 0, "coverage": 0}

    def try_direction(d: np.ndarray) -> Optional[np.ndarray]:
        for _ in range(max_tries):
            dist = rng.uniform(*cfg.distance)
            if cfg.eye_height_m:  # standing on the ground: the direction's azimuth, a horizontal distance
                h = np.array([d[0], d[1], 0.0])
                h = h / np.linalg.norm(h) if np.linalg.norm(h) > 1e-9 else np.array([1.0, 0.0, 0.0])
                eye = np.array([target[0], target[1], 0.0]) + h * dist
                eye[2] = cfg.ground_z + rng.uniform(*cfg.eye_height_m)
            else:
                eye = target + d * dist
            aim = target + rng.normal(0, cfg.jitter_m, 3) if cfg.jitter_m > 0 else target
            roll = rng.uniform(-cfg.roll_deg, cfg.roll_deg) if cfg.roll_deg > 0 else 0.0
            if inside_fn is not None and bool(inside_fn(eye[None])[0]):
                rejected["inside"] += 1
                continue
            T = look_at(eye, aim, roll_deg=roll)
            if target_points is not None and cfg.min_coverage > 0 and \
                    coverage(intr, T, target_points) < cfg.min_coverage:
                rejected["coverage"] += 1
                continue
            return T
        return None

    for d in _directions(cfg, cfg.n, rng, cfg.layout):
        T = try_direction(d)
        if T is not None:
            poses.append(T)
    refill = 0
    while len(poses) < cfg.n and refill < 50 * cfg.n:
        refill += 1
        T = try_direction(_directions(cfg, 1, rng, "random")[0])
        if T is not None:
            poses.append(T)
    if len(poses) < cfg.n:
        raise RuntimeError(f"only {len(poses)} of {cfg.n} cameras passed the checks "
                           f"(rejected: {rejected['inside']} inside geometry, {rejected['coverage']} low coverage); "
                           "widen the distance/elevation ranges or lower min_coverage")
    return np.stack(poses)
