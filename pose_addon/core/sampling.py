"""Camera samplers around a target (pure numpy, deterministic per seed).

Cameras are placed on a shell around ``target`` (distance, elevation and azimuth ranges; a hemisphere is
elevation 0..90, a full shell -90..90) with one of three layouts:

* ``fibonacci`` -- an even spiral over the band of the sphere (good reference coverage);
* ``rings`` -- ``rings`` elevation rings with evenly spaced azimuths;
* ``random`` -- uniform on the band's area (good for queries that fall *between* references).

Each camera looks at the target (plus ``jitter_m`` of random offset) with world +Z up, then is rolled about
its optical axis by up to ``roll_deg``. Candidates inside geometry (``inside_fn``) or where the target covers
less than ``min_coverage`` of the frame are rejected and replaced.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Optional

import numpy as np

from .cameras import Intrinsics, project_points
from .poses import axis_angle_to_matrix, make_pose

__all__ = ["SamplerConfig", "look_at", "sample_cameras", "coverage", "aabb_inside_fn"]

LAYOUTS = ("fibonacci", "rings", "random")


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

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SamplerConfig":
        d = dict(d)
        for k in ("distance", "elevation_deg", "azimuth_deg"):
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


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = np.array([0.0, 0.0, 1.0]),
            roll_deg: float = 0.0) -> np.ndarray:
    """``cam_from_world`` (OpenCV axes) of a camera at ``eye`` looking at ``target`` with world ``up`` up.

    ``roll_deg`` rotates the camera about its optical axis (positive = image content turns clockwise).
    """
    eye = np.asarray(eye, dtype=np.float64)
    z = np.asarray(target, dtype=np.float64) - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
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
        z, az = [], []
        for r, m in enumerate(per):
            zr = z0 + (z1 - z0) * (r + 0.5) / n_rings
            offset = 0.5 * (r % 2)
            z += [zr] * m
            az += list(a0 + (a1 - a0) * (np.arange(m) + offset) / m)
        z, az = np.array(z), np.array(az)
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
