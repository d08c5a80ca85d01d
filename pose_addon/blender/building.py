"""A deterministic procedural building (seeded) with feature-rich procedural materials.

:func:`build_procedural_building` adds to the current scene:

* ``Building`` (mesh object in the collection ``Building``): storeys with recessed windows (reveals, frames,
  sills, mullions, glass), doors with steps, storey bands, cornice, stone plinth, gable or hip roof, chimney;
* ``Ground`` (mesh object in the collection ``Ground``): an 80 m square at z = 0.

The building stands on the ground (min z = 0), centred on the world origin, its longest side along world X.
Every face carries a UV map ``WorldUV`` in metres; the materials read it explicitly, so texture scale is
physical (contrast at 0.3-3 m, which is what feature detectors need at 20-40 m) and a second UV map can be
added for baking without changing the look.

Same seed -> same geometry and materials (only :class:`random.Random` seeded with ``seed`` is used).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

import bmesh
import bpy
import numpy as np

from ..scene_utils import ensure_collection

__all__ = ["build_procedural_building", "add_ground", "ground_material", "WORLD_UV", "BUILDING_COLLECTION",
           "GROUND_COLLECTION"]

WORLD_UV = "WorldUV"
BUILDING_COLLECTION = "Building"
GROUND_COLLECTION = "Ground"
GROUND_SIZE = 80.0


# ----------------------------------------------------------------------------------------------- geometry
class _MeshBuilder:
    """Accumulates polygons with per-corner UVs (metres) and a material slot index each."""

    def __init__(self) -> None:
        self.verts: list[tuple] = []
        self.faces: list[list[int]] = []
        self.uvs: list[list[tuple]] = []
        self.mats: list[int] = []

    def poly(self, pts, uv, mat: int, facing=None) -> None:
        pts = [np.asarray(p, dtype=np.float64) for p in pts]
        uv = list(uv)
        if facing is not None:
            n = np.cross(pts[1] - pts[0], pts[2] - pts[0])
            if len(pts) > 3 and np.linalg.norm(n) < 1e-12:
                n = np.cross(pts[2] - pts[0], pts[3] - pts[0])
            if float(np.dot(n, facing)) < 0:
                pts, uv = pts[::-1], uv[::-1]
        base = len(self.verts)
        self.verts.extend(tuple(float(c) for c in p) for p in pts)
        self.faces.append(list(range(base, base + len(pts))))
        self.uvs.append([(float(a), float(b)) for a, b in uv])
        self.mats.append(mat)

    def box(self, lo, hi, mat: int, skip_bottom: bool = True) -> None:
        """Axis-aligned box; UVs are the two world axes spanning each face (metres)."""
        lo = np.asarray(lo, dtype=np.float64)
        hi = np.asarray(hi, dtype=np.float64)
        for axis in range(3):
            for side, val in ((-1, lo[axis]), (1, hi[axis])):
                if axis == 2 and side == -1 and skip_bottom:
                    continue
                a, b = [i for i in range(3) if i != axis]
                corners = []
                for ca, cb in ((lo[a], lo[b]), (hi[a], lo[b]), (hi[a], hi[b]), (lo[a], hi[b])):
                    p = np.zeros(3)
                    p[axis], p[a], p[b] = val, ca, cb
                    corners.append(p)
                facing = np.zeros(3)
                facing[axis] = side
                uv = [(p[a] if axis != 2 else p[0], p[b] if axis != 2 else p[1]) for p in corners]
                self.poly(corners, uv, mat, facing)

    def to_object(self, name: str, materials: list, collection) -> bpy.types.Object:
        mesh = bpy.data.meshes.new(name)
        mesh.from_pydata(self.verts, [], self.faces)
        uv_layer = mesh.uv_layers.new(name=WORLD_UV)
        flat_uv = [c for face in self.uvs for uvc in face for c in uvc]
        uv_layer.data.foreach_set("uv", flat_uv)
        mesh.polygons.foreach_set("material_index", self.mats)
        for m in materials:
            mesh.materials.append(m)
        # merge coincident corners so that ray tracing sees closed edges (UVs stay per corner)
        bm = bmesh.new()
        bm.from_mesh(mesh)
        bmesh.ops.remove_doubles(bm, verts=bm.verts, dist=1e-5)
        bm.to_mesh(mesh)
        bm.free()
        mesh.update()
        obj = bpy.data.objects.new(name, mesh)
        collection.objects.link(obj)
        return obj


def _wall(mb: _MeshBuilder, p0, u, n, length: float, height: float, openings, mat: int, z0: float,
          u_offset: float) -> None:
    """A planar wall from ``p0`` along ``u`` (outward normal ``n``), with rectangular holes ``(a0, a1, b0, b1)``."""
    p0, u, n = (np.asarray(v, dtype=np.float64) for v in (p0, u, n))
    z = np.array([0.0, 0.0, 1.0])
    xs = sorted({0.0, length, *[o[0] for o in openings], *[o[1] for o in openings]})
    zs = sorted({0.0, height, *[o[2] for o in openings], *[o[3] for o in openings]})
    for i in range(len(xs) - 1):
        for j in range(len(zs) - 1):
            ca, cb = 0.5 * (xs[i] + xs[i + 1]), 0.5 * (zs[j] + zs[j + 1])
            if any(o[0] <= ca <= o[1] and o[2] <= cb <= o[3] for o in openings):
                continue
            quad = [(xs[i], zs[j]), (xs[i + 1], zs[j]), (xs[i + 1], zs[j + 1]), (xs[i], zs[j + 1])]
            pts = [p0 + a * u + b * z for a, b in quad]
            mb.poly(pts, [(a + u_offset, b + z0) for a, b in quad], mat, n)


def _ring(mb: _MeshBuilder, rect, out: float, zlo: float, zhi: float, mat: int) -> None:
    """A band ``out`` metres thick around the footprint ``rect = (x0, y0, x1, y1)`` (four boxes, no hidden top)."""
    x0, y0, x1, y1 = rect
    mb.box((x0 - out, y0 - out, zlo), (x1 + out, y0, zhi), mat)
    mb.box((x0 - out, y1, zlo), (x1 + out, y1 + out, zhi), mat)
    mb.box((x0 - out, y0, zlo), (x0, y1, zhi), mat)
    mb.box((x1, y0, zlo), (x1 + out, y1, zhi), mat)


def _opening(mb: _MeshBuilder, p0, u, n, o, depth: float, wall_mat: int, frame_mat: int, fill_mat: int,
             z0: float, u_offset: float, door: bool) -> None:
    """Reveals, frame, sill and glass/door panel of one opening ``o = (a0, a1, b0, b1)`` in a wall."""
    p0, u, n = (np.asarray(v, dtype=np.float64) for v in (p0, u, n))
    z = np.array([0.0, 0.0, 1.0])
    a0, a1, b0, b1 = o

    def P(a, b, d=0.0):
        return p0 + a * u + b * z - d * n

    # reveals (facing into the opening)
    mb.poly([P(a0, b0), P(a1, b0), P(a1, b0, depth), P(a0, b0, depth)],
            [(a0 + u_offset, 0), (a1 + u_offset, 0), (a1 + u_offset, depth), (a0 + u_offset, depth)],
            frame_mat if not door else wall_mat, z)
    mb.poly([P(a0, b1), P(a1, b1), P(a1, b1, depth), P(a0, b1, depth)],
            [(a0 + u_offset, 0), (a1 + u_offset, 0), (a1 + u_offset, depth), (a0 + u_offset, depth)], wall_mat, -z)
    for a, facing in ((a0, u), (a1, -u)):
        mb.poly([P(a, b0), P(a, b1), P(a, b1, depth), P(a, b0, depth)],
                [(0, b0 + z0), (0, b1 + z0), (depth, b1 + z0), (depth, b0 + z0)], wall_mat, facing)
    # the pane (glass or door leaf) at the back of the recess
    mb.poly([P(a0, b0, depth), P(a1, b0, depth), P(a1, b1, depth), P(a0, b1, depth)],
            [(a0 + u_offset, b0 + z0), (a1 + u_offset, b0 + z0), (a1 + u_offset, b1 + z0),
             (a0 + u_offset, b1 + z0)], fill_mat, n)

    def wbox(al, ah, bl, bh, dl, dh, mat):
        """Box in wall coordinates (a along, b up, d outward) -> world AABB (walls are axis aligned)."""
        c = [p0 + a * u + b * z + d * n for a in (al, ah) for b in (bl, bh) for d in (dl, dh)]
        c = np.array(c)
        mb.box(c.min(0), c.max(0), mat)

    f = 0.08  # frame width
    if door:
        wbox(a0 - f, a0, b0, b1 + f, -0.01, 0.05, frame_mat)
        wbox(a1, a1 + f, b0, b1 + f, -0.01, 0.05, frame_mat)
        wbox(a0 - f, a1 + f, b1, b1 + f, -0.01, 0.05, frame_mat)
        # door leaf panels: two raised rectangles
        w = a1 - a0
        wbox(a0 + 0.12 * w, a0 + 0.45 * w, b0 + 0.2, b1 - 0.3, -depth, -depth + 0.03, frame_mat)
        wbox(a0 + 0.55 * w, a0 + 0.88 * w, b0 + 0.2, b1 - 0.3, -depth, -depth + 0.03, frame_mat)
    else:
        wbox(a0 - f, a0, b0, b1, -0.01, 0.04, frame_mat)
        wbox(a1, a1 + f, b0, b1, -0.01, 0.04, frame_mat)
        wbox(a0 - f, a1 + f, b1, b1 + f, -0.01, 0.04, frame_mat)
        wbox(a0 - f - 0.06, a1 + f + 0.06, b0 - 0.07, b0, -0.01, 0.12, frame_mat)  # sill
        # mullion cross inside the recess
        am = 0.5 * (a0 + a1)
        bm = b0 + 0.62 * (b1 - b0)
        wbox(am - 0.03, am + 0.03, b0, b1, -depth, -depth + 0.05, frame_mat)
        wbox(a0, a1, bm - 0.03, bm + 0.03, -depth, -depth + 0.05, frame_mat)


# ----------------------------------------------------------------------------------------------- materials
class _Nodes:
    """Tiny helper to build shader graphs readably."""

    def __init__(self, mat) -> None:
        self.nt = mat.node_tree
        self.nt.nodes.clear()
        self.out = self.nt.nodes.new("ShaderNodeOutputMaterial")
        self.bsdf = self.nt.nodes.new("ShaderNodeBsdfPrincipled")
        self.nt.links.new(self.bsdf.outputs["BSDF"], self.out.inputs["Surface"])

    def node(self, kind: str, **inputs):
        n = self.nt.nodes.new(kind)
        for k, v in inputs.items():
            self.set(n.inputs[k], v)
        return n

    def set(self, socket, v) -> None:
        if hasattr(v, "is_output") or (hasattr(v, "links") and hasattr(v, "node")):
            self.nt.links.new(v, socket)
        elif isinstance(v, (tuple, list)) and len(v) == 3 and socket.type == "RGBA":
            socket.default_value = (*v, 1.0)
        else:
            socket.default_value = v

    def uv(self, offset):
        uvn = self.nt.nodes.new("ShaderNodeUVMap")
        uvn.uv_map = WORLD_UV
        m = self.node("ShaderNodeMapping", Vector=uvn.outputs["UV"])
        m.inputs["Location"].default_value = offset
        return m.outputs["Vector"]

    def noise(self, vec, scale, detail=4.0, roughness=0.55):
        n = self.node("ShaderNodeTexNoise", Vector=vec, Scale=scale, Detail=detail, Roughness=roughness)
        n.noise_dimensions = "2D"  # UVs are planar: 2D noise is cheaper and looks the same
        return n.outputs["Fac"]

    def ramp(self, fac, stops):
        r = self.node("ShaderNodeValToRGB", Fac=fac)
        els = r.color_ramp.elements
        while len(els) > 2:
            els.remove(els[-1])
        for i, (pos, col) in enumerate(stops):
            e = els[i] if i < 2 else els.new(pos)
            e.position = pos
            e.color = (*col, 1.0)
        return r.outputs["Color"]

    def mix(self, a, b, fac=1.0, blend="MULTIPLY"):
        m = self.nt.nodes.new("ShaderNodeMix")
        m.data_type = "RGBA"
        m.blend_type = blend
        ins = {i.identifier: i for i in m.inputs}
        self.set(ins["Factor_Float"], fac)
        self.set(ins["A_Color"], a)
        self.set(ins["B_Color"], b)
        return next(o for o in m.outputs if o.identifier == "Result_Color")

    def brick(self, vec, c1, c2, mortar, width, row, mortar_size=0.015, bias=0.0):
        b = self.node("ShaderNodeTexBrick", Vector=vec, Color1=c1, Color2=c2, Mortar=mortar, Scale=1.0,
                      **{"Mortar Size": mortar_size, "Brick Width": width, "Row Height": row, "Bias": bias})
        b.offset = 0.5
        b.squash = 1.0
        return b.outputs["Color"]

    def cells(self, vec, scale, lo, hi):
        """Sharp-edged cells (~1/scale m) of random brightness in [lo, hi]: blobs and corners for detectors."""
        vor = self.node("ShaderNodeTexVoronoi", Vector=vec, Scale=scale)
        vor.voronoi_dimensions = "2D"
        bw = self.node("ShaderNodeRGBToBW", Color=vor.outputs["Color"])
        return self.ramp(bw.outputs["Val"], [(0.3, (lo,) * 3), (0.7, (hi,) * 3)])

    def grime(self, vec, big=(0.45, 1.05), small=(0.7, 1.0), big_scale=0.6, small_scale=2.5, cells=(0.45, 1.25),
              cell_scale=1.6):
        """Brightness modulation at ~1.5 m and ~0.4 m plus random-brightness cells (multiplied into a colour)."""
        g1 = self.ramp(self.noise(vec, big_scale, 3.0, 0.6), [(0.3, (big[0],) * 3), (0.7, (big[1],) * 3)])
        g2 = self.ramp(self.noise(vec, small_scale, 2.0, 0.5), [(0.35, (small[0],) * 3), (0.65, (small[1],) * 3)])
        g = self.mix(g1, g2)
        if cells is not None:
            g = self.mix(g, self.cells(vec, cell_scale, *cells))
        return g

    def finish(self, color, roughness=0.8, metallic=0.0):
        self.set(self.bsdf.inputs["Base Color"], color)
        self.bsdf.inputs["Roughness"].default_value = roughness
        self.bsdf.inputs["Metallic"].default_value = metallic


def _jitter(rng: random.Random, col, amount=0.08):
    return tuple(min(1.0, max(0.0, c * (1.0 + rng.uniform(-amount, amount)))) for c in col)


def _make_materials(seed: int, rng: random.Random) -> dict:
    def new(name):
        key = f"{name}.{seed}"
        old = bpy.data.materials.get(key)
        if old is not None:
            bpy.data.materials.remove(old)
        m = bpy.data.materials.new(key)
        m["building_pose_material"] = name
        return m, _Nodes(m)

    def off():
        return (rng.uniform(0, 100), rng.uniform(0, 100), rng.uniform(0, 100))

    mats = {}
    # brick: individually varying bricks, mortar joints, grime at two scales
    m, g = new("brick")
    v = g.uv(off())
    c1 = _jitter(rng, (0.42, 0.15, 0.08))
    c2 = _jitter(rng, (0.20, 0.07, 0.04))
    col = g.brick(v, c1, c2, (0.55, 0.53, 0.50), width=0.30, row=0.125, mortar_size=0.018, bias=0.0)
    # larger-scale brick-course banding (dark headers every few rows)
    band = g.brick(v, (1.0, 1.0, 1.0), (0.55, 0.55, 0.55), (1.0, 1.0, 1.0), width=1.2, row=0.75,
                   mortar_size=0.0, bias=0.0)
    g.finish(g.mix(g.mix(col, band), g.grime(v, big=(0.35, 1.1))), 0.85)
    m.diffuse_color = (*c1, 1.0)  # what Workbench and the viewport show
    mats["brick"] = m

    # plaster: rusticated blocks + stains + grime
    m, g = new("plaster")
    v = g.uv(off())
    base = _jitter(rng, rng.choice([(0.78, 0.70, 0.55), (0.70, 0.72, 0.70), (0.80, 0.62, 0.50)]))
    dark = tuple(c * 0.75 for c in base)
    col = g.brick(v, base, dark, tuple(c * 0.35 for c in base), width=1.1, row=0.42, mortar_size=0.025,
                  bias=0.0)
    vor = g.node("ShaderNodeTexVoronoi", Vector=v, Scale=0.8)
    stains = g.ramp(vor.outputs["Distance"], [(0.05, (0.55,) * 3), (0.45, (1.0,) * 3)])
    g.finish(g.mix(g.mix(col, stains), g.grime(v, big=(0.4, 1.05))), 0.9)
    m.diffuse_color = (*base, 1.0)
    mats["plaster"] = m

    # stone plinth: large ashlar blocks
    m, g = new("stone")
    v = g.uv(off())
    col = g.brick(v, _jitter(rng, (0.38, 0.37, 0.35)), _jitter(rng, (0.16, 0.16, 0.16)), (0.6, 0.6, 0.58),
                  width=0.65, row=0.3, mortar_size=0.02)
    g.finish(g.mix(col, g.grime(v, big=(0.5, 1.1), small_scale=4.0)), 0.9)
    m.diffuse_color = (0.3, 0.3, 0.29, 1.0)
    mats["stone"] = m

    # roof tiles
    m, g = new("roof")
    v = g.uv(off())
    tile = rng.choice([((0.38, 0.11, 0.06), (0.20, 0.06, 0.04)), ((0.20, 0.21, 0.23), (0.09, 0.09, 0.11))])
    col = g.brick(v, _jitter(rng, tile[0]), _jitter(rng, tile[1]), (0.03, 0.03, 0.03), width=0.32, row=0.24,
                  mortar_size=0.02)
    moss = g.ramp(g.noise(v, 0.35, 2.0), [(0.45, (1.0,) * 3), (0.65, (0.45,) * 3)])
    g.finish(g.mix(g.mix(col, moss), g.grime(v, big=(0.55, 1.15))), 0.7)
    m.diffuse_color = (*tile[0], 1.0)
    mats["roof"] = m

    # painted frames / trims
    m, g = new("trim")
    v = g.uv(off())
    paint = _jitter(rng, rng.choice([(0.85, 0.85, 0.82), (0.15, 0.25, 0.18), (0.85, 0.80, 0.65)]))
    g.finish(g.mix(paint, g.grime(v, big=(0.75, 1.0), small=(0.85, 1.0))), 0.5)
    m.diffuse_color = (*paint, 1.0)
    mats["trim"] = m

    # glass: dark, glossy
    m, g = new("glass")
    g.finish((0.04, 0.06, 0.07), roughness=0.08, metallic=0.0)
    g.bsdf.inputs["Specular IOR Level"].default_value = 0.8
    m.diffuse_color = (0.04, 0.06, 0.07, 1.0)
    mats["glass"] = m

    # door: wood grain
    m, g = new("door")
    v = g.uv(off())
    wave = g.node("ShaderNodeTexWave", Vector=v, Scale=2.5, Distortion=6.0, Detail=3.0)
    wave.wave_type = "BANDS"
    wave.bands_direction = "Y"
    wood = g.ramp(wave.outputs["Fac"], [(0.2, _jitter(rng, (0.10, 0.05, 0.02))),
                                         (0.8, _jitter(rng, (0.32, 0.17, 0.07)))])
    g.finish(wood, 0.6)
    m.diffuse_color = (0.2, 0.1, 0.04, 1.0)
    mats["door"] = m

    return mats


def ground_material(seed: int = 0):
    """The procedural ground material (grass / soil / gravel with strong brightness variation)."""
    rng = random.Random(10_000 + int(seed))
    key = f"ground.{seed}"
    old = bpy.data.materials.get(key)
    if old is not None:
        bpy.data.materials.remove(old)
    m = bpy.data.materials.new(key)
    m["building_pose_material"] = "ground"
    g = _Nodes(m)
    v = g.uv((rng.uniform(0, 100), rng.uniform(0, 100), rng.uniform(0, 100)))
    patches = g.ramp(g.noise(v, 0.15, 2.0), [(0.4, (0.10, 0.17, 0.05)), (0.6, (0.30, 0.25, 0.17))])
    vor = g.node("ShaderNodeTexVoronoi", Vector=v, Scale=3.0)
    pebbles = g.ramp(vor.outputs["Distance"], [(0.0, (0.5,) * 3), (0.5, (1.1,) * 3)])
    g.finish(g.mix(g.mix(patches, pebbles), g.grime(v, big=(0.4, 1.2), small=(0.6, 1.0), big_scale=0.4,
                                                    small_scale=1.5, cells=(0.4, 1.3), cell_scale=0.8)), 0.95)
    m.diffuse_color = (0.15, 0.2, 0.08, 1.0)
    return m


def plain_ground_material():
    """A uniform, untextured grey-green ground (for feature-poor scenes: nothing to match on the ground)."""
    key = "ground.plain"
    m = bpy.data.materials.get(key) or bpy.data.materials.new(key)
    m["building_pose_material"] = "ground"
    g = _Nodes(m)
    g.finish((0.22, 0.24, 0.18, 1.0), 0.95)
    m.diffuse_color = (0.22, 0.24, 0.18, 1.0)
    return m


def add_ground(seed: int = 0, size: float = GROUND_SIZE, name: str | None = None, style: str = "textured"):
    """A ``size`` x ``size`` m ground square at z = 0 (UVs in metres) in the collection ``Ground``.

    ``style``: ``"textured"`` (procedural grass / soil / gravel) or ``"plain"`` (one flat colour).
    """
    if style not in ("textured", "plain"):
        raise ValueError(f"unknown ground style {style!r}: use 'textured' or 'plain'")
    gb = _MeshBuilder()
    s = size / 2
    gb.poly([(-s, -s, 0.0), (s, -s, 0.0), (s, s, 0.0), (-s, s, 0.0)], [(-s, -s), (s, -s), (s, s), (-s, s)], 0,
            (0, 0, 1))
    gname = name or f"Ground.{seed}"
    old = bpy.data.objects.get(gname)
    if old is not None:
        bpy.data.objects.remove(old)
    mat = ground_material(seed) if style == "textured" else plain_ground_material()
    ground = gb.to_object(gname, [mat], ensure_collection(bpy.context, GROUND_COLLECTION))
    ground["building_pose_part"] = "ground"
    return ground


# ----------------------------------------------------------------------------------------------- building
@dataclass
class _Plan:
    """The drawn dimensions of one building (metres, radians); the footprint is centred on the origin."""

    W: float  # along X (longest side)
    D: float
    storeys: int
    h: float  # storey height
    plinth: float
    roof_kind: str  # "gable" or "hip"
    pitch: float
    wall_kind: str  # "brick" or "plaster"
    ground_kind: str  # finish of the ground storey
    win_w: float
    win_h: float
    depth: float  # window reveal depth
    bay_w: float
    sill: float = 0.9
    overhang: float = 0.45

    @property
    def rect(self) -> tuple[float, float, float, float]:
        return -self.W / 2, -self.D / 2, self.W / 2, self.D / 2

    @property
    def top(self) -> float:
        return self.plinth + self.storeys * self.h


def _draw_plan(rng: random.Random) -> _Plan:
    W = rng.uniform(14.0, 16.0)
    D = rng.uniform(9.0, 11.0)
    storeys = rng.randint(3, 5)
    h = rng.uniform(2.9, 3.3)
    plinth = rng.uniform(0.5, 0.8)
    roof_kind = rng.choice(["gable", "hip"])
    pitch = math.radians(rng.uniform(28.0, 40.0))
    wall_kind = rng.choice(["brick", "plaster"])
    ground_kind = rng.choice(["stone", wall_kind])
    win_w = rng.uniform(1.1, 1.5)
    win_h = rng.uniform(1.4, 1.7)
    depth = rng.uniform(0.18, 0.28)
    bay_w = rng.uniform(2.6, 3.2)
    return _Plan(W, D, storeys, h, plinth, roof_kind, pitch, wall_kind, ground_kind, win_w, win_h, depth, bay_w)


#: material slots of the building mesh, in order
_SLOTS = ["brick", "plaster", "stone", "roof", "trim", "glass", "door"]
_IDX = {k: i for i, k in enumerate(_SLOTS)}


def _facade_openings(plan: _Plan, L: float, side: str, rng: random.Random) -> tuple[list, list]:
    """Windows and doors of one wall: ``(a0, a1, b0, b1)`` along the wall and above the plinth (metres)."""
    bays = max(2, int(L / plan.bay_w))
    door_bay = bays // 2 if side == "front" else (rng.randrange(bays) if side == "back" else -1)
    openings, doors = [], []
    for k in range(plan.storeys):
        for i in range(bays):
            c = L * (i + 0.5) / bays
            if k == 0 and i == door_bay:
                dw = rng.uniform(1.1, 1.4) if side == "front" else 1.0
                doors.append((c - dw / 2, c + dw / 2, 0.0, min(2.4, plan.h - 0.3)))
                continue
            if side in ("left", "right") and rng.random() < 0.25:
                continue  # blind bay: breaks the facade's repetition
            b0 = k * plan.h + plan.sill
            openings.append((c - plan.win_w / 2, c + plan.win_w / 2, b0, b0 + plan.win_h))
    return openings, doors


def _build_facades(mb: _MeshBuilder, plan: _Plan, rng: random.Random) -> None:
    """The four walls with their windows, doors and door steps."""
    x0, y0, x1, y1 = plan.rect
    wall_m, ground_floor_m = _IDX[plan.wall_kind], _IDX[plan.ground_kind]
    h, plinth = plan.h, plan.plinth
    # walls counter-clockwise seen from above, so that u x z = outward normal
    walls = [((x0, y0), (1, 0), (0, -1), plan.W, "front"), ((x1, y0), (0, 1), (1, 0), plan.D, "right"),
             ((x1, y1), (-1, 0), (0, 1), plan.W, "back"), ((x0, y1), (0, -1), (-1, 0), plan.D, "left")]
    u_off = 0.0
    for (px, py), (ux, uy), (nx, ny), L, side in walls:
        p0 = np.array([px, py, plinth])
        u = np.array([ux, uy, 0.0])
        n = np.array([nx, ny, 0.0])
        openings, doors = _facade_openings(plan, L, side, rng)
        # the wall itself (ground storey in its own finish), split at the first floor
        ground_ops = [o for o in openings + doors if o[3] <= h]
        upper_ops = [(o[0], o[1], o[2] - h, o[3] - h) for o in openings if o[2] >= h]
        _wall(mb, p0, u, n, L, h, ground_ops, ground_floor_m, plinth, u_off)
        _wall(mb, p0 + np.array([0, 0, h]), u, n, L, plan.storeys * h - h, upper_ops, wall_m, plinth + h, u_off)
        for o in openings:
            _opening(mb, p0, u, n, o, plan.depth, wall_m, _IDX["trim"], _IDX["glass"], plinth, u_off, door=False)
        for o in doors:
            _opening(mb, p0, u, n, o, plan.depth + 0.1, ground_floor_m, _IDX["trim"], _IDX["door"], plinth, u_off,
                     door=True)
            _door_steps(mb, p0, u, n, o, plinth)
        u_off += L


def _door_steps(mb: _MeshBuilder, p0, u, n, o, plinth: float) -> None:
    c = 0.5 * (o[0] + o[1])
    for s in range(2):
        hw = (o[1] - o[0]) / 2 + 0.4 - 0.1 * s
        out = 0.9 - 0.35 * s
        corners = np.array([p0 + a * u + d * n for a in (c - hw, c + hw) for d in (0.0, out)])
        lo, hi = corners.min(0), corners.max(0)
        lo[2], hi[2] = 0.0, plinth * (s + 1) / 2
        mb.box(lo, hi, _IDX["stone"])


def _build_bands(mb: _MeshBuilder, plan: _Plan) -> None:
    """Plinth, storey bands and cornice."""
    _ring(mb, plan.rect, 0.07, 0.0, plan.plinth, _IDX["stone"])
    for k in range(1, plan.storeys):
        zb = plan.plinth + k * plan.h
        _ring(mb, plan.rect, 0.06, zb - 0.08, zb + 0.08, _IDX["trim"])
    _ring(mb, plan.rect, 0.18, plan.top - 0.3, plan.top, _IDX["trim"])


def _build_roof(mb: _MeshBuilder, plan: _Plan) -> float:
    """Gable or hip roof with its ridge along X, soffit and fascia; returns the ridge height."""
    x0, y0, x1, y1 = plan.rect
    o, top, D, pitch = plan.overhang, plan.top, plan.D, plan.pitch
    t = math.tan(pitch)
    z_eave = top - o * t
    z_ridge = top + (D / 2) * t
    yc = 0.0
    slope_len = (D / 2 + o) / math.cos(pitch)
    roof_m = _IDX["roof"]
    xr0, xr1 = (x0 - o, x1 + o) if plan.roof_kind == "gable" else (x0 + D / 2, x1 - D / 2)
    for sgn in (-1, 1):  # front (-y) and back (+y) slopes
        ye = yc + sgn * (D / 2 + o)
        pts = [(x0 - o, ye, z_eave), (x1 + o, ye, z_eave), (xr1, yc, z_ridge), (xr0, yc, z_ridge)]
        uv = [(x0 - o, 0.0), (x1 + o, 0.0), (xr1, slope_len), (xr0, slope_len)]
        mb.poly(pts, uv, roof_m, (0.0, sgn * math.sin(pitch), math.cos(pitch)))
    if plan.roof_kind == "gable":
        for xs, sgn in ((x0, -1), (x1, 1)):
            mb.poly([(xs, y0, top), (xs, y1, top), (xs, yc, z_ridge)], [(y0, top), (y1, top), (yc, z_ridge)],
                    _IDX[plan.wall_kind], (sgn, 0.0, 0.0))
            # verge board
            mb.box((xs + sgn * o - 0.06, y0 - o, z_eave - 0.2), (xs + sgn * o + 0.06, y1 + o, z_eave), _IDX["trim"])
    else:
        for xs, xr, sgn in ((x0 - o, xr0, -1), (x1 + o, xr1, 1)):
            pts = [(xs, y0 - o, z_eave), (xs, y1 + o, z_eave), (xr, yc, z_ridge)]
            mb.poly(pts, [(y0 - o, 0.0), (y1 + o, 0.0), (yc, slope_len)], roof_m,
                    (sgn * math.sin(pitch), 0.0, math.cos(pitch)))
    zs = z_eave - 0.02
    for ax0, ay0, ax1, ay1 in ((x0 - o, y0 - o, x1 + o, y0), (x0 - o, y1, x1 + o, y1 + o), (x0 - o, y0, x0, y1),
                               (x1, y0, x1 + o, y1)):
        mb.poly([(ax0, ay0, zs), (ax1, ay0, zs), (ax1, ay1, zs), (ax0, ay1, zs)],
                [(ax0, ay0), (ax1, ay0), (ax1, ay1), (ax0, ay1)], _IDX["trim"], (0, 0, -1))
    for sgn in (-1, 1):
        ye = sgn * (D / 2 + o)
        mb.box((x0 - o, min(ye, ye + 0.05 * sgn), z_eave - 0.2), (x1 + o, max(ye, ye + 0.05 * sgn), z_eave),
               _IDX["trim"])
    return z_ridge


def _build_chimney(mb: _MeshBuilder, plan: _Plan, z_ridge: float, rng: random.Random) -> list:
    """A chimney through the roof; returns its box ``[[min], [max]]``."""
    x0, _, x1, _ = plan.rect
    cx = rng.uniform(x0 + 2.0, x1 - 2.0)
    cy = rng.uniform(-plan.D / 4, plan.D / 4)
    cw = rng.uniform(0.6, 0.9)
    chim_top = z_ridge + rng.uniform(0.6, 1.2)
    mb.box((cx - cw / 2, cy - cw / 2, plan.top), (cx + cw / 2, cy + cw / 2, chim_top), _IDX["brick"])
    mb.box((cx - cw / 2 - 0.08, cy - cw / 2 - 0.08, chim_top), (cx + cw / 2 + 0.08, cy + cw / 2 + 0.08,
                                                                 chim_top + 0.12), _IDX["stone"])
    return [[cx - cw / 2, cy - cw / 2, plan.top], [cx + cw / 2, cy + cw / 2, chim_top + 0.12]]


def build_procedural_building(seed: int = 0) -> dict:
    """Create the building ``seed`` and a ground plane in the current scene.

    Returns:
        ``{"name": "procedural:SEED", "objects": [...], "ground": name, "bounds": [[min], [max]],
        "target": [x, y, z], "boxes": [[[min], [max]], ...], "params": {...}}`` -- all in world metres.
    """
    seed = int(seed)
    rng = random.Random(seed)  # drawn in a fixed order: plan, materials, facades, chimney
    plan = _draw_plan(rng)
    mats = _make_materials(seed, rng)
    mb = _MeshBuilder()
    _build_facades(mb, plan, rng)
    _build_bands(mb, plan)
    z_ridge = _build_roof(mb, plan)
    chimney = _build_chimney(mb, plan, z_ridge, rng)

    coll = ensure_collection(bpy.context, BUILDING_COLLECTION)
    name = f"Building.{seed}"
    old = bpy.data.objects.get(name)
    if old is not None:
        bpy.data.objects.remove(old)
    obj = mb.to_object(name, [mats[k] for k in _SLOTS], coll)
    obj["building_pose_part"] = "building"
    ground = add_ground(seed)

    verts = np.array([v.co[:] for v in obj.data.vertices])
    lo, hi = verts.min(0), verts.max(0)
    x0, y0, x1, y1 = plan.rect
    body = [[x0 - 0.1, y0 - 0.1, 0.0], [x1 + 0.1, y1 + 0.1, plan.top]]
    roof_box = [[x0, y0, plan.top], [x1, y1, z_ridge]]
    return {
        "name": f"procedural:{seed}",
        "objects": [obj.name],
        "ground": ground.name,
        "bounds": [lo.tolist(), hi.tolist()],
        "target": [0.0, 0.0, float(0.5 * (lo[2] + hi[2]))],
        "boxes": [body, roof_box, chimney],
        "params": {"width": plan.W, "depth": plan.D, "storeys": plan.storeys, "storey_height": plan.h,
                   "plinth": plan.plinth, "roof": plan.roof_kind, "pitch_deg": math.degrees(plan.pitch),
                   "wall": plan.wall_kind, "ground_floor": plan.ground_kind},
    }
