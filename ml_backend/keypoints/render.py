"""Training renders for the keypoint detector: many views of the scene at low resolution, randomized lighting.

The views are rendered through Blender (:mod:`ml_backend.blender_runner`) into a cached dataset whose splits are
``train`` and ``val`` (different random viewpoints: the split is by viewpoint), beside the bench's own
``reference`` (also used for training) and ``query`` (held out for testing) splits.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from pose_addon.core.dataset import Dataset
from pose_addon.core.render_config import LightingConfig, RenderConfig, RenderGroup
from pose_addon.core.sampling import SamplerConfig

from ..scenes import DEFAULT_LONGEST_M, parse_scene

__all__ = ["training_render_config", "ensure_training_renders"]

#: Lighting sampled per frame, wider than the bench's references and queries so the model sees many renderings.
WIDE_LIGHTING = LightingConfig(sun_elevation_deg=(15.0, 75.0), sun_azimuth_deg=(0.0, 360.0), sun_strength=(2.0, 5.0),
                               world_strength=(0.25, 0.8), world_color=(0.85, 0.87, 0.97))


def training_render_config(longest_side_m: float = DEFAULT_LONGEST_M, n_train: int = 400, n_val: int = 40,
                           width: int = 320, height: int = 240, engine: str = "CYCLES",
                           samples: int = 16) -> RenderConfig:
    """Random views 22-45 m out (scaled with the building), elevations 3-40 deg, wide lighting, sensor noise.

    The lens matches the bench's (30 mm on 36 mm), so 320x240 renders have the field of view of 640x480 queries.
    """
    f = longest_side_m / DEFAULT_LONGEST_M
    groups = [RenderGroup("train", SamplerConfig(n=n_train, layout="random", distance=(22.0 * f, 45.0 * f),
                                                 elevation_deg=(3.0, 40.0), jitter_m=1.0 * f, seed=11),
                          WIDE_LIGHTING, noise_std=2.0)]
    if n_val > 0:
        groups.append(RenderGroup("val", SamplerConfig(n=n_val, layout="random", distance=(24.0 * f, 42.0 * f),
                                                       elevation_deg=(5.0, 36.0), seed=12),
                                  WIDE_LIGHTING, noise_std=3.0))
    cfg = RenderConfig(groups=groups, width=width, height=height, engine=engine, samples=samples)
    cfg.validate()
    return cfg


def ensure_training_renders(dataset: Dataset, cache: Path, n_train: int = 400, n_val: int = 40, width: int = 320,
                            height: int = 240, samples: int = 16, progress: bool = True) -> Optional[Path]:
    """Render (or reuse) the training views of ``dataset``'s scene; None when the scene cannot be re-rendered.

    The scene spec comes from the manifest's ``scene["source"]`` (``procedural:SEED`` or a mesh path) and
    ``scene["scale"]``; the dataset folder is cached under ``cache/datasets`` by content like the bench's.
    """
    from ..bench import ensure_dataset

    src = dataset.scene.get("source")
    if not src or n_train <= 0:
        return None
    spec = parse_scene(str(src), dataset.scene.get("scale") if not str(src).startswith("procedural") else None)
    cfg = training_render_config(spec.longest_side_m(), n_train, n_val, width, height, samples=samples)
    return ensure_dataset(spec, cfg, Path(cache), progress)
