"""What a dataset render is asked to do: resolution, engine, and groups of views (one per split).

The config is plain JSON (``RenderConfig.to_dict``) so the worker can write it and the Blender-side headless
entry can read it. Its hash keys caches: the same scene + config renders the same dataset.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from .cameras import BlenderCameraSettings, Intrinsics, intrinsics_from_blender
from .sampling import SamplerConfig

__all__ = ["LightingConfig", "RenderGroup", "RenderConfig", "ENGINES", "GROUND_STYLES"]

ENGINES = ("CYCLES", "BLENDER_EEVEE", "BLENDER_WORKBENCH")
#: ground under a loaded scene: procedural texture (default), one flat colour (feature-poor), or none
GROUND_STYLES = ("textured", "plain", "none")


@dataclass
class LightingConfig:
    """Ranges sampled uniformly per frame (seeded by the group's seed and the frame index)."""

    sun_elevation_deg: tuple = (35.0, 60.0)
    sun_azimuth_deg: tuple = (0.0, 360.0)
    sun_strength: tuple = (3.0, 4.0)
    world_strength: tuple = (0.4, 0.6)
    world_color: tuple = (0.8, 0.85, 1.0)
    world_color_jitter: float = 0.0  # each sky colour channel scaled by U(1 - j, 1 + j) per frame
    hdri_dir: str = ""  # a folder of .hdr/.exr environment maps: one picked per frame instead of the sky colour

    #: fields added after the first release: left out of ``to_dict`` at their defaults so digests stay stable
    _OPTIONAL = {"world_color_jitter": 0.0, "hdri_dir": ""}

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: v for k, v in d.items() if k not in self._OPTIONAL or v != self._OPTIONAL[k]}

    @classmethod
    def from_dict(cls, d: dict) -> "LightingConfig":
        return cls(**{k: (tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in d.items()})


@dataclass
class RenderGroup:
    """A set of views rendered into one split (e.g. ``reference`` or ``query``)."""

    split: str
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    lighting: LightingConfig = field(default_factory=LightingConfig)
    noise_std: float = 0.0  # Gaussian sensor noise, standard deviation in 8-bit grey levels
    blur_px: float = 0.0  # Gaussian blur (sigma in pixels) applied before the noise; 0 = sharp

    def to_dict(self) -> dict:
        d = {"split": self.split, "sampler": self.sampler.to_dict(), "lighting": self.lighting.to_dict(),
             "noise_std": self.noise_std}
        if self.blur_px:  # added after the first release: absent at its default so digests stay stable
            d["blur_px"] = self.blur_px
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RenderGroup":
        return cls(d["split"], SamplerConfig.from_dict(d.get("sampler", {})),
                   LightingConfig.from_dict(d.get("lighting", {})), float(d.get("noise_std", 0.0)),
                   float(d.get("blur_px", 0.0)))


@dataclass
class RenderConfig:
    """Everything a dataset render depends on besides the scene."""

    groups: list = field(default_factory=list)
    width: int = 640
    height: int = 480
    lens_mm: float = 30.0
    sensor_width_mm: float = 36.0
    engine: str = "CYCLES"
    samples: int = 16
    depth: bool = True
    normals: bool = False  # world-space normals per frame (Cycles): normals/<frame>.npz, key "normals" [H, W, 3]
    masks: bool = False  # instance masks per frame (Cycles): masks/<frame>.npz, key "mask" [H, W] uint16, 0 = none

    #: fields added after the first release: left out of ``to_dict`` at their defaults so digests stay stable
    _OPTIONAL = {"normals": False, "masks": False}

    def camera(self) -> BlenderCameraSettings:
        return BlenderCameraSettings(lens_mm=self.lens_mm, sensor_width_mm=self.sensor_width_mm,
                                     sensor_height_mm=self.sensor_width_mm * self.height / self.width,
                                     sensor_fit="HORIZONTAL", resolution_x=self.width, resolution_y=self.height)

    def intrinsics(self) -> Intrinsics:
        return intrinsics_from_blender(self.camera())

    def validate(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"unknown engine {self.engine!r}; choose one of {', '.join(ENGINES)}")
        if (self.normals or self.masks) and self.engine != "CYCLES":
            raise ValueError("normal and instance-mask passes are rendered with CYCLES only")
        if self.width < 16 or self.height < 16:
            raise ValueError(f"resolution {self.width}x{self.height} is too small")
        splits = [g.split for g in self.groups]
        if len(set(splits)) != len(splits):
            raise ValueError(f"each group needs its own split name, got {splits}")
        for g in self.groups:
            g.sampler.validate()
            if g.noise_std < 0 or g.blur_px < 0:
                raise ValueError(f"group {g.split!r}: noise_std and blur_px must be >= 0, got {g.noise_std}, "
                                 f"{g.blur_px}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["groups"] = [g.to_dict() for g in self.groups]
        return {k: v for k, v in d.items() if k not in self._OPTIONAL or v != self._OPTIONAL[k]}

    @classmethod
    def from_dict(cls, d: dict) -> "RenderConfig":
        d = dict(d)
        d["groups"] = [RenderGroup.from_dict(g) for g in d.get("groups", [])]
        return cls(**d)

    def digest(self, scene_key: str = "") -> str:
        """Short stable hash of scene key + config (for cache folders)."""
        blob = json.dumps({"scene": scene_key, "config": self.to_dict()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]
