"""What a dataset render is asked to do: resolution, engine, and groups of views (one per split).

The config is plain JSON (``RenderConfig.to_dict``) so the worker can write it and the Blender-side headless
entry can read it. Its hash keys caches: the same scene + config renders the same dataset.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from .cameras import BlenderCameraSettings, Intrinsics, intrinsics_from_blender
from .sampling import SamplerConfig

__all__ = ["LightingConfig", "PhotoStyle", "RenderGroup", "RenderConfig", "ENGINES", "ENGINE_LABELS", "GROUND_STYLES",
           "QUERY_STYLES"]

#: Blender's render engines a dataset can use: identifier -> (label, description) for the panels
ENGINE_LABELS: dict[str, tuple[str, str]] = {
    "CYCLES": ("Cycles", "Path tracing (on the GPU when one is set in Preferences > System)"),
    "BLENDER_EEVEE": ("EEVEE", "Rasterized, slower headless"),
    "BLENDER_WORKBENCH": ("Workbench", "Fast, flat shading, no procedural textures"),
}
ENGINES = tuple(ENGINE_LABELS)
#: ground under a loaded scene: procedural texture (default), one flat colour (feature-poor), or none
GROUND_STYLES = ("textured", "plain", "none")
#: how queries are rendered: like the references (``render``) or like photos (``photo``, see :class:`PhotoStyle`)
QUERY_STYLES = ("render", "photo")


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
    def from_dict(cls, d: dict) -> LightingConfig:
        kw: dict[str, Any] = {k: (tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in d.items()}
        return cls(**kw)


@dataclass
class PhotoStyle:
    """How a group's frames differ from the references the way photos differ from a model. Ranges are drawn
    uniformly per frame from a generator seeded by (group seed, ``seed``, frame index); every frame's drawn values
    are recorded in the manifest (frame ``photo``), its lens distortion in its intrinsics (``dist = [k1, k2, 0,
    0]``, which every method undistorts).

    Attributes:
        seed: seed of the draws (besides the group's).
        color_jitter: each material's base colour scaled per channel by ``U(1 - j, 1 + j)``.
        roughness_jitter: each material's roughness shifted by ``U(-j, j)``.
        dirt: range of the strength (0..1) of procedural grime (noise-driven darkening and streaks) on every
            material.
        environment: ``sky`` (a physical sky texture lit by the same sun, instead of a uniform colour) or
            ``uniform`` (the group's lighting only).
        k1, k2: ranges of the radial lens distortion (OpenCV model, normalised coordinates).
        defocus_px: range of the Gaussian defocus blur (sigma, pixels).
        motion_px: range of the motion blur length (pixels, random direction).
        vignetting: range of the relative darkening at the image corners.
        exposure_ev: range of the exposure shift in stops.
        white_balance: red and blue gains each ``U(1 - w, 1 + w)``.
        jpeg_quality: range of the JPEG quality (the query image is stored as JPEG); ``(0, 0)`` = PNG.
        occluders: range of the number of occluders (trees, cars, people, poles) between camera and building.
        occluder_cover: the largest share of the building's image area the occluders may hide together.
    """

    seed: int = 0
    color_jitter: float = 0.15
    roughness_jitter: float = 0.2
    dirt: tuple = (0.2, 0.6)
    environment: str = "sky"
    k1: tuple = (-0.12, 0.04)
    k2: tuple = (-0.02, 0.02)
    defocus_px: tuple = (0.0, 1.0)
    motion_px: tuple = (0.0, 2.0)
    vignetting: tuple = (0.0, 0.35)
    exposure_ev: tuple = (-0.7, 0.7)
    white_balance: float = 0.08
    jpeg_quality: tuple = (70, 92)
    occluders: tuple = (0, 4)
    occluder_cover: float = 0.33

    ENVIRONMENTS = ("sky", "uniform")

    def validate(self) -> None:
        if self.environment not in self.ENVIRONMENTS:
            raise ValueError(f"photo environment {self.environment!r}: choose one of {', '.join(self.ENVIRONMENTS)}")
        for name in ("dirt", "k1", "k2", "defocus_px", "motion_px", "vignetting", "exposure_ev", "jpeg_quality",
                     "occluders"):
            r = getattr(self, name)
            if len(r) != 2 or r[0] > r[1]:
                raise ValueError(f"photo {name} must be a range (low, high), got {r}")
        if min(self.dirt[0], self.defocus_px[0], self.motion_px[0], self.vignetting[0], self.occluders[0]) < 0:
            raise ValueError("photo dirt, defocus, motion blur, vignetting and occluders must be >= 0")
        if self.jpeg_quality != (0, 0) and not (1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100):
            raise ValueError(f"photo jpeg_quality must lie in 1..100 (or be (0, 0)), got {self.jpeg_quality}")
        if not 0 <= self.occluder_cover <= 1 or not 0 <= self.color_jitter < 1 or self.white_balance < 0:
            raise ValueError("photo occluder_cover must lie in 0..1, color_jitter in 0..1, white_balance >= 0")

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> PhotoStyle:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown photo style fields {sorted(unknown)}")
        kw: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}
        return cls(**kw)


@dataclass
class RenderGroup:
    """A set of views rendered into one split (e.g. ``reference`` or ``query``)."""

    split: str
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    lighting: LightingConfig = field(default_factory=LightingConfig)
    noise_std: float = 0.0  # Gaussian sensor noise, standard deviation in 8-bit grey levels
    blur_px: float = 0.0  # Gaussian blur (sigma in pixels) applied before the noise; 0 = sharp
    photo: Optional[PhotoStyle] = None  # photo-like frames (materials, sky, lens, occluders, JPEG); None = renders

    def to_dict(self) -> dict:
        d = {"split": self.split, "sampler": self.sampler.to_dict(), "lighting": self.lighting.to_dict(),
             "noise_std": self.noise_std}
        if self.blur_px:  # added after the first release: absent at its default so digests stay stable
            d["blur_px"] = self.blur_px
        if self.photo is not None:  # likewise
            d["photo"] = self.photo.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RenderGroup:
        return cls(d["split"], SamplerConfig.from_dict(d.get("sampler", {})),
                   LightingConfig.from_dict(d.get("lighting", {})), float(d.get("noise_std", 0.0)),
                   float(d.get("blur_px", 0.0)), PhotoStyle.from_dict(d["photo"]) if d.get("photo") else None)


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
        if (self.normals or self.masks) and any(g.photo is not None for g in self.groups):
            raise ValueError("photo-style groups have no normal or instance-mask passes")
        if (self.normals or self.masks) and self.engine != "CYCLES":
            raise ValueError("normal and instance-mask passes are rendered with CYCLES only")
        if self.width < 16 or self.height < 16:
            raise ValueError(f"resolution {self.width}x{self.height} is too small")
        splits = [g.split for g in self.groups]
        if len(set(splits)) != len(splits):
            raise ValueError(f"each group needs its own split name, got {splits}")
        if sum(int(getattr(g.sampler, "n", 1)) for g in self.groups) <= 0:
            raise ValueError("nothing to render: the render config has no cameras (every group has n = 0)")
        for g in self.groups:
            g.sampler.validate()
            if g.photo is not None:
                g.photo.validate()
            if g.noise_std < 0 or g.blur_px < 0:
                raise ValueError(f"group {g.split!r}: noise_std and blur_px must be >= 0, got {g.noise_std}, "
                                 f"{g.blur_px}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["groups"] = [g.to_dict() for g in self.groups]
        return {k: v for k, v in d.items() if k not in self._OPTIONAL or v != self._OPTIONAL[k]}

    @classmethod
    def from_dict(cls, d: dict) -> RenderConfig:
        d = dict(d)
        d["groups"] = [RenderGroup.from_dict(g) for g in d.get("groups", [])]
        return cls(**d)

    def digest(self, scene_key: str = "") -> str:
        """Short stable hash of scene key + config (for cache folders)."""
        blob = json.dumps({"scene": scene_key, "config": self.to_dict()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]
