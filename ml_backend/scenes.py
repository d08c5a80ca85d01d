"""SCENE specs as the Blender side's headless entry takes them, checked before any Blender process starts.

Specs: ``procedural`` (seed 0), ``procedural:SEED``, or a mesh path (``.glb``, ``.gltf``, ``.obj``, ``.ply``).
Mesh files are turned upright by their ``up_axis`` and scaled by Blender to ``scale_longest`` metres on their
longest side unless an explicit ``scale`` is given. Cache keys include a hash of the mesh file's bytes, so an
edited file never reuses old renders.
``ground`` is the Blender side's ground style: ``textured`` (default), ``plain`` (one flat colour: a flat-coloured
model stays feature-poor) or ``none``.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from pose_addon.core.model_frame import (
    DEFAULT_LONGEST_SIDE_M,
    default_up_axis,
    up_axis_rotation,
    world_from_model_matrix,
)
from pose_addon.core.render_config import GROUND_STYLES

__all__ = ["SceneSpecError", "SceneSpec", "parse_scene", "MESH_EXTENSIONS", "DEFAULT_LONGEST_M", "GROUND_STYLES"]

MESH_EXTENSIONS = (".glb", ".gltf", ".obj", ".ply")
DEFAULT_LONGEST_M = DEFAULT_LONGEST_SIDE_M  # Blender side's --scale-longest default


class SceneSpecError(ValueError):
    """A SCENE spec that cannot be rendered (message says why and what is accepted)."""


@dataclass(frozen=True)
class SceneSpec:
    """A parsed SCENE spec. ``path`` is absolute for meshes, None for the procedural building."""

    kind: str  # "procedural" or "mesh"
    seed: int = 0
    path: Optional[Path] = None
    scale: Optional[float] = None
    ground: str = "textured"
    up_axis: Optional[str] = None  # the mesh file's up axis; None = the format's default (see core.model_frame)

    @property
    def spec(self) -> str:
        """The string handed to Blender's ``--scene``."""
        return f"procedural:{self.seed}" if self.kind == "procedural" else str(self.path)

    @property
    def name(self) -> str:
        return f"procedural-{self.seed}" if self.kind == "procedural" else self.path.stem

    def key(self) -> str:
        """Cache key: the spec, the mesh file's content hash, the scale and a non-default ground."""
        ground = "" if self.ground == "textured" else f"|ground={self.ground}"
        if self.kind == "procedural":
            return f"procedural:{self.seed}{ground}"
        h = hashlib.sha256()
        with open(self.path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        up = "" if self.up_axis is None or self.up_axis == default_up_axis(str(self.path)) else f"|up={self.up_axis}"
        return f"mesh:{self.path.name}:{h.hexdigest()[:16]}|scale={self.scale}{ground}{up}"

    def world_from_model(self) -> np.ndarray:
        """``[4, 4]`` similarity from the mesh file's frame to the render world, as Blender's import will apply it
        (turned upright, scaled, x/y centre of the box at the origin, floor at z = 0; see
        :mod:`pose_addon.core.model_frame`), computed with trimesh before any render; identity for procedural."""
        if self.kind == "procedural":
            return np.eye(4)
        import trimesh

        try:
            pts = np.asarray(trimesh.load(self.path, force="scene").bounds, np.float64)
        except Exception as e:  # trimesh raises a zoo of types on bad files
            raise SceneSpecError(f"cannot read mesh {self.path} to size the cameras: {e}") from e
        up = self.up_axis or default_up_axis(str(self.path))
        corners = np.array([[x, y, z] for x in pts[:, 0] for y in pts[:, 1] for z in pts[:, 2]])
        c = corners @ up_axis_rotation(up).T
        lo, hi = c.min(0), c.max(0)
        f = float(self.scale) if self.scale is not None else DEFAULT_LONGEST_M / float((hi - lo).max())
        centre = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
        return world_from_model_matrix(f, -f * centre, up)

    def world_bounds(self) -> tuple:
        """(lo, hi) ``[3]`` of the building in the render world (turned upright, scaled, centred, on z = 0), read
        with trimesh before any render; the procedural building's nominal box for ``procedural``."""
        if self.kind == "procedural":
            return (np.array([-7.5, -5.0, 0.0]), np.array([7.5, 5.0, 12.0]))
        import trimesh

        try:
            mesh = trimesh.load(self.path, force="scene")
            pts = np.asarray(mesh.bounds, np.float64)
        except Exception as e:  # trimesh raises a zoo of types on bad files
            raise SceneSpecError(f"cannot read mesh {self.path} to size the cameras: {e}") from e
        corners = np.array([[x, y, z] for x in pts[:, 0] for y in pts[:, 1] for z in pts[:, 2]])
        R = up_axis_rotation(self.up_axis or default_up_axis(str(self.path)))
        c = corners @ R.T
        ext = c.max(0) - c.min(0)
        f = float(self.scale) if self.scale is not None else DEFAULT_LONGEST_M / float(ext.max())
        ext = ext * f
        return (np.array([-ext[0] / 2, -ext[1] / 2, 0.0]), np.array([ext[0] / 2, ext[1] / 2, ext[2]]))

    def longest_side_m(self) -> float:
        """Approximate longest bounding-box side in metres after Blender's scaling (for camera distances).

        With an explicit ``scale``, the mesh is read with trimesh (axis order does not change the longest side).
        """
        if self.kind == "procedural" or self.scale is None:
            return DEFAULT_LONGEST_M
        import trimesh

        try:
            mesh = trimesh.load(self.path, force="scene")
            extent = float((mesh.bounds[1] - mesh.bounds[0]).max())
        except Exception as e:  # trimesh raises a zoo of types on bad files
            raise SceneSpecError(f"cannot read mesh {self.path} to size the cameras: {e}") from e
        return extent * float(self.scale)


def parse_scene(spec: str, scale: Optional[float] = None, ground: str = "textured",
                up_axis: Optional[str] = None) -> SceneSpec:
    """Parse and check a SCENE spec; a mesh file must exist and have a supported extension.

    Raises:
        SceneSpecError: unknown form, bad seed, missing or unsupported mesh file, non-positive scale, unknown
            ground or up axis.
    """
    s = (spec or "").strip()
    if up_axis is not None:
        up_axis = up_axis.strip().upper().lstrip("+")
        try:
            up_axis_rotation(up_axis)
        except ValueError as e:
            raise SceneSpecError(str(e)) from None
    if scale is not None and not scale > 0:
        raise SceneSpecError(f"--scale must be positive, got {scale}")
    if ground not in GROUND_STYLES:
        raise SceneSpecError(f"unknown ground {ground!r}: use one of {', '.join(GROUND_STYLES)}")
    if s == "procedural":
        return SceneSpec("procedural", 0, ground=ground)
    if s.startswith("procedural:"):
        try:
            return SceneSpec("procedural", int(s.split(":", 1)[1]), ground=ground)
        except ValueError:
            raise SceneSpecError(f"bad scene spec {spec!r}: expected procedural:SEED with an integer seed") from None
    if not s:
        raise SceneSpecError("empty scene spec: use 'procedural', 'procedural:SEED' or a mesh path")
    path = Path(s).expanduser()
    if path.suffix.lower() not in MESH_EXTENSIONS:
        raise SceneSpecError(f"unsupported scene {spec!r}: use 'procedural', 'procedural:SEED' or a mesh file "
                             f"({', '.join(MESH_EXTENSIONS)})")
    if not path.is_file():
        raise SceneSpecError(f"scene mesh not found: {path}")
    return SceneSpec("mesh", 0, path.resolve(), scale, ground, up_axis)
