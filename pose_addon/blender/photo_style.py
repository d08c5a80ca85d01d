"""Photo-like frames (:class:`~pose_addon.core.render_config.PhotoStyle`): what changes in the scene for one
frame, and what happens to its render afterwards.

:func:`prepare_frame` varies the building's materials (copies with jittered colour and roughness and procedural
grime; the originals are never edited), replaces the uniform sky colour by a horizon-to-zenith gradient, adds
occluders (trees, cars, people, poles) between the camera and the building, and enlarges the camera's frame for
the lens distortion's overscan; it returns a function that undoes all of it. :func:`finish_image` turns the
render into the photo (:func:`pose_addon.core.photo_effects.apply_camera_effects`, then the group's noise),
:func:`write_photo` stores it (JPEG at the drawn quality, or PNG).
"""
from __future__ import annotations

import math
import zlib
from collections.abc import Callable

import bpy
import numpy as np

from ..core import photo_effects
from ..core.cameras import Intrinsics
from ..core.render_config import PhotoStyle

__all__ = ["sample_params", "prepare_frame", "finish_image", "write_photo", "OCCLUDER_COLLECTION"]

OCCLUDER_COLLECTION = "Photo Occluders"


def sample_params(style: PhotoStyle, group_seed: int, index: int, split: str, intr: Intrinsics) -> dict:
    """One frame's drawn photo parameters (JSON-safe, recorded in the manifest), with its overscan margin."""
    rng = np.random.default_rng([int(group_seed) & 0xFFFFFFFF, int(style.seed) & 0xFFFFFFFF, int(index),
                                 zlib.crc32(split.encode()), 37])
    p = photo_effects.sample_photo_params(style, rng)
    p["margin_px"] = photo_effects.distortion_margin_px(intr.width, intr.height, intr.fx, intr.fy, intr.cx, intr.cy,
                                                        p["k1"], p["k2"]) if (p["k1"] or p["k2"]) else 0
    return p


# ----------------------------------------------------------------------------------------------- materials
def _sock(sockets, identifier: str):
    """A node socket by identifier (the Mix node's inputs share names across data types)."""
    return next(x for x in sockets if x.identifier == identifier)


def _vary_material(mat, rng: np.random.Generator, p: dict):
    m = mat.copy()
    m.name = f"{mat.name} (photo)"
    nt = m.node_tree
    if nt is None:
        return m
    for bsdf in [n for n in nt.nodes if n.type == "BSDF_PRINCIPLED"]:
        rough = bsdf.inputs["Roughness"]
        if not rough.is_linked:
            rough.default_value = float(np.clip(rough.default_value + rng.uniform(-1, 1) * p["roughness_jitter"],
                                                0.05, 1.0))
        base = bsdf.inputs["Base Color"]
        jitter = nt.nodes.new("ShaderNodeMix")
        jitter.data_type, jitter.blend_type = "RGBA", "MULTIPLY"
        _sock(jitter.inputs, "Factor_Float").default_value = 1.0
        jc = 1.0 + rng.uniform(-1, 1, 3) * p["color_jitter"]
        _sock(jitter.inputs, "B_Color").default_value = (*[float(c) for c in jc], 1.0)
        if base.is_linked:
            nt.links.new(base.links[0].from_socket, _sock(jitter.inputs, "A_Color"))
        else:
            _sock(jitter.inputs, "A_Color").default_value = base.default_value[:]
        # grime: large-scale noise (stains) times vertical streaks, darkening towards a brown-grey
        coord = nt.nodes.new("ShaderNodeTexCoord")
        noise = nt.nodes.new("ShaderNodeTexNoise")
        noise.noise_dimensions = "4D"
        noise.inputs["W"].default_value = float(p["material_seed"] % 1000) / 10.0
        noise.inputs["Scale"].default_value = 0.35
        noise.inputs["Detail"].default_value = 6.0
        nt.links.new(coord.outputs["Object"], noise.inputs["Vector"])
        ramp = nt.nodes.new("ShaderNodeValToRGB")
        ramp.color_ramp.elements[0].position, ramp.color_ramp.elements[1].position = 0.45, 0.75
        nt.links.new(noise.outputs["Fac"], ramp.inputs["Fac"])
        amount = nt.nodes.new("ShaderNodeMath")
        amount.operation = "MULTIPLY"
        amount.inputs[1].default_value = float(p["dirt"])
        nt.links.new(ramp.outputs["Color"], amount.inputs[0])
        dirt = nt.nodes.new("ShaderNodeMix")
        dirt.data_type, dirt.blend_type = "RGBA", "MULTIPLY"
        _sock(dirt.inputs, "B_Color").default_value = (0.35, 0.32, 0.28, 1.0)
        nt.links.new(amount.outputs["Value"], _sock(dirt.inputs, "Factor_Float"))
        nt.links.new(_sock(jitter.outputs, "Result_Color"), _sock(dirt.inputs, "A_Color"))
        nt.links.new(_sock(dirt.outputs, "Result_Color"), base)
    return m


def _vary_materials(objects: list, p: dict) -> Callable[[], None]:
    rng = np.random.default_rng(p["material_seed"])
    copies, saved = {}, []
    for obj in objects:
        for i, slot in enumerate(obj.material_slots):
            if slot.material is None:
                continue
            if slot.material.name not in copies:
                copies[slot.material.name] = _vary_material(slot.material, rng, p)
            saved.append((obj, i, slot.link, slot.material))
            slot.material = copies[slot.material.name]

    def restore() -> None:
        for obj, i, link, mat in saved:
            obj.material_slots[i].link = link
            obj.material_slots[i].material = mat
        for m in copies.values():
            bpy.data.materials.remove(m)

    return restore


# ----------------------------------------------------------------------------------------------- sky
def _gradient_sky(scene, lighting: dict) -> Callable[[], None]:
    """World colour from the horizon (bright, slightly warm) to the zenith (the group's sky colour, deeper)."""
    nt = scene.world.node_tree
    bg = next(n for n in nt.nodes if n.type == "BACKGROUND")
    old_links = [link.from_socket for link in bg.inputs["Color"].links]
    coord = nt.nodes.new("ShaderNodeTexCoord")
    sep = nt.nodes.new("ShaderNodeSeparateXYZ")
    ramp = nt.nodes.new("ShaderNodeValToRGB")
    nt.links.new(coord.outputs["Generated"], sep.inputs["Vector"])
    nt.links.new(sep.outputs["Z"], ramp.inputs["Fac"])
    wc = lighting["world_color"]
    e0, e1 = ramp.color_ramp.elements[0], ramp.color_ramp.elements[1]
    e0.position, e1.position = 0.0, 0.8
    e0.color = (min(1.0, wc[0] * 1.15 + 0.1), min(1.0, wc[1] * 1.1 + 0.08), min(1.0, wc[2] * 1.0 + 0.05), 1.0)
    e1.color = (wc[0] * 0.45, wc[1] * 0.6, wc[2], 1.0)
    nt.links.new(ramp.outputs["Color"], bg.inputs["Color"])
    added = [coord, sep, ramp]

    def restore() -> None:
        for n in added:
            nt.nodes.remove(n)
        for s in old_links:
            nt.links.new(s, bg.inputs["Color"])

    return restore


# ----------------------------------------------------------------------------------------------- occluders
_KINDS = ("tree", "car", "person", "pole")


def _occluder(kind: str, rng: np.random.Generator, coll, mats: dict) -> list:
    """Primitive meshes of one occluder at the origin (metres, standing on z = 0)."""
    import bmesh

    parts = []

    def add(name, fill, verts_fn, loc, mat):
        me = bpy.data.meshes.new(name)
        bm = bmesh.new()
        verts_fn(bm)
        bm.to_mesh(me)
        bm.free()
        ob = bpy.data.objects.new(name, me)
        ob.location = loc
        me.materials.append(mat)
        coll.objects.link(ob)
        parts.append(ob)

    if kind == "tree":
        h = rng.uniform(4.0, 8.0)
        add("trunk", 0, lambda bm: bmesh.ops.create_cone(bm, cap_ends=True, segments=8, radius1=0.2, radius2=0.15,
                                                         depth=h * 0.5), (0, 0, h * 0.25), mats["bark"])
        add("crown", 0, lambda bm: bmesh.ops.create_icosphere(bm, subdivisions=2, radius=h * 0.3),
            (0, 0, h * 0.7), mats["leaves"])
    elif kind == "car":
        L, W, H = rng.uniform(3.8, 4.8), rng.uniform(1.7, 1.9), rng.uniform(1.3, 1.6)
        add("body", 0, lambda bm: bmesh.ops.create_cube(bm, size=1.0), (0, 0, H * 0.3), mats["car"])
        parts[-1].scale = (L, W, H * 0.6)
        add("cabin", 0, lambda bm: bmesh.ops.create_cube(bm, size=1.0), (0, 0, H * 0.8), mats["glass"])
        parts[-1].scale = (L * 0.55, W * 0.9, H * 0.4)
    elif kind == "person":
        h = rng.uniform(1.6, 1.9)
        add("body", 0, lambda bm: bmesh.ops.create_cone(bm, cap_ends=True, segments=8, radius1=0.22, radius2=0.18,
                                                        depth=h * 0.85), (0, 0, h * 0.425), mats["cloth"])
        add("head", 0, lambda bm: bmesh.ops.create_icosphere(bm, subdivisions=2, radius=0.11),
            (0, 0, h * 0.93), mats["skin"])
    else:
        h = rng.uniform(5.0, 8.0)
        add("pole", 0, lambda bm: bmesh.ops.create_cone(bm, cap_ends=True, segments=8, radius1=0.1, radius2=0.08,
                                                        depth=h), (0, 0, h / 2), mats["metal"])
    return parts


def _flat_material(name: str, rgb, roughness: float = 0.7):
    m = bpy.data.materials.new(name)
    bsdf = next((n for n in m.node_tree.nodes if n.type == "BSDF_PRINCIPLED"), None) if m.node_tree else None
    if bsdf is None:
        m.use_nodes = True
        bsdf = next(n for n in m.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    bsdf.inputs["Base Color"].default_value = (*rgb, 1.0)
    bsdf.inputs["Roughness"].default_value = roughness
    return m


def _add_occluders(scene, p: dict, cam_from_world: np.ndarray, target: np.ndarray, boxes: np.ndarray,
                   building_points: np.ndarray, intr: Intrinsics) -> tuple[Callable[[], None], float]:
    """Up to ``p["occluders"]`` occluders on the ground between the camera and the building, each kept only
    while the estimated share of the building's image area they hide stays below ``p["occluder_cover"]``.
    Returns the undo function and that share (from the occluders' projected bounding boxes against the
    building's projected points)."""
    rng = np.random.default_rng(p["occluder_seed"])
    coll = bpy.data.collections.new(OCCLUDER_COLLECTION)
    scene.collection.children.link(coll)
    mats = {k: _flat_material(f"occluder {k}", c) for k, c in (
        ("bark", (0.25, 0.17, 0.1)), ("leaves", (0.12, 0.3, 0.08)), ("car", tuple(rng.uniform(0.05, 0.8, 3))),
        ("glass", (0.05, 0.07, 0.1)), ("cloth", tuple(rng.uniform(0.05, 0.6, 3))), ("skin", (0.7, 0.5, 0.4)),
        ("metal", (0.4, 0.4, 0.42)))}
    R, t = cam_from_world[:3, :3], cam_from_world[:3, 3]
    eye = -R.T @ t
    ground_z = float(np.min(boxes[:, 0, 2])) if len(boxes) else 0.0

    def proj(X):
        Xc = X @ R.T + t
        z = np.maximum(Xc[:, 2], 1e-6)
        return np.stack([intr.fx * Xc[:, 0] / z + intr.cx, intr.fy * Xc[:, 1] / z + intr.cy], 1), Xc[:, 2]

    uv, _ = proj(building_points)
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < intr.width) & (uv[:, 1] >= 0) & (uv[:, 1] < intr.height)
    covered = np.zeros(len(uv), bool)
    share = 0.0
    n_pts = max(1, int(inside.sum()))
    for _ in range(int(p["occluders"])):
        kind = _KINDS[int(rng.integers(len(_KINDS)))]
        parts = _occluder(kind, rng, coll, mats)
        aim = building_points[int(rng.integers(len(building_points)))]
        frac = rng.uniform(0.35, 0.8)  # of the way from the camera to the building
        pos = eye + frac * (aim - eye)
        pos[2] = ground_z
        if np.any([(b[0, 0] - 1 <= pos[0] <= b[1, 0] + 1) and (b[0, 1] - 1 <= pos[1] <= b[1, 1] + 1) for b in boxes]):
            _remove(parts)
            continue
        for ob in parts:
            ob.location = (ob.location[0] + pos[0], ob.location[1] + pos[1], ob.location[2] + pos[2])
            ob.rotation_euler[2] = float(rng.uniform(0, 2 * math.pi)) if kind == "car" else 0.0
        bpy.context.view_layer.update()
        corners = np.array([ob.matrix_world @ _v(c) for ob in parts for c in ob.bound_box])
        cuv, cz = proj(corners)
        if np.any(cz <= 0.1):
            _remove(parts)
            continue
        lo, hi = cuv.min(0), cuv.max(0)
        eye_d = np.linalg.norm(pos - eye)
        hides = inside & (uv[:, 0] >= lo[0]) & (uv[:, 0] <= hi[0]) & (uv[:, 1] >= lo[1]) & (uv[:, 1] <= hi[1]) & \
            (np.linalg.norm(building_points - eye, axis=1) > eye_d)
        new_share = float((covered | hides).sum()) / n_pts
        if new_share > p["occluder_cover"]:
            _remove(parts)
            continue
        covered |= hides
        share = new_share

    def restore() -> None:
        _remove(list(coll.all_objects))
        bpy.data.collections.remove(coll)
        for m in mats.values():
            bpy.data.materials.remove(m)

    return restore, share


def _v(c):
    import mathutils

    return mathutils.Vector(c)


def _remove(objs: list) -> None:
    for ob in objs:
        me = ob.data
        bpy.data.objects.remove(ob)
        if me is not None and me.users == 0:
            bpy.data.meshes.remove(me)


# ----------------------------------------------------------------------------------------------- frame
def prepare_frame(scene, cam_obj, p: dict, lighting: dict, cam_from_world: np.ndarray, intr: Intrinsics,
                  building: list, target: np.ndarray, boxes: np.ndarray,
                  building_points: np.ndarray) -> tuple[Callable[[], None], dict]:
    """Apply one frame's photo parameters to the scene; returns the undo function and facts to record
    (``occluded_share``)."""
    undo = [_vary_materials(building, p)]
    try:
        if p["environment"] == "sky" and scene.world is not None and scene.world.node_tree is not None:
            undo.append(_gradient_sky(scene, lighting))
        r, share = _add_occluders(scene, p, np.asarray(cam_from_world, np.float64), np.asarray(target),
                                  np.asarray(boxes, np.float64).reshape(-1, 2, 3), building_points, intr)
        undo.append(r)
        m = int(p["margin_px"])
        if m:
            rs, cam = scene.render, cam_obj.data
            saved = (rs.resolution_x, rs.resolution_y, cam.sensor_width, cam.sensor_height)
            # same focal length in pixels, centred principal point: widen the sensor with the frame
            rs.resolution_x, rs.resolution_y = intr.width + 2 * m, intr.height + 2 * m
            cam.sensor_width = saved[2] * (intr.width + 2 * m) / intr.width
            cam.sensor_height = saved[3] * (intr.height + 2 * m) / intr.height

            def unscan() -> None:
                rs.resolution_x, rs.resolution_y, cam.sensor_width, cam.sensor_height = saved

            undo.append(unscan)
    except BaseException:
        for u in reversed(undo):
            u()
        raise

    def restore() -> None:
        for u in reversed(undo):
            u()

    return restore, {"occluded_share": round(share, 4)}


def finish_image(img: np.ndarray, p: dict, intr: Intrinsics, blur_px: float, noise_std: float,
                 noise_seed) -> np.ndarray:
    """The photo ``[H, W, 3]`` uint8 of an overscanned render ``img`` (see :func:`prepare_frame`)."""
    out = photo_effects.apply_camera_effects(img[..., :3], p, intr.fx, intr.fy, intr.cx, intr.cy,
                                             int(p["margin_px"]))
    if blur_px > 0:
        out = photo_effects._gaussian(out, blur_px)
    rng = np.random.default_rng(noise_seed)
    return np.clip(np.round(out + rng.normal(0.0, noise_std, out.shape)), 0, 255).astype(np.uint8)


def finish_depth(depth: np.ndarray, p: dict, intr: Intrinsics) -> np.ndarray:
    """The planar depth of every pixel of the photo (nearest lookup through the same distortion)."""
    m = int(p["margin_px"])
    if not (p["k1"] or p["k2"]):
        return depth[m:m + intr.height, m:m + intr.width] if m else depth
    mx, my = photo_effects.distortion_source_map(intr.width, intr.height, intr.fx, intr.fy, intr.cx, intr.cy,
                                                 p["k1"], p["k2"])
    return photo_effects.remap_nearest(depth, mx + m, my + m).astype(np.float32)


def write_photo(path, img: np.ndarray, quality: int) -> None:
    """Write ``img`` as JPEG at ``quality`` (1..100), or PNG when ``quality`` is 0 (OpenImageIO, as Blender has)."""
    from .render import load_oiio

    oiio = load_oiio()
    h, w, c = img.shape
    out = oiio.ImageOutput.create(str(path))
    if out is None:
        raise RuntimeError(f"cannot write {path}: {oiio.geterror()}")
    spec = oiio.ImageSpec(w, h, c, "uint8")
    if quality:
        spec.attribute("Compression", f"jpeg:{int(quality)}")
    try:
        out.open(str(path), spec)
        out.write_image(np.ascontiguousarray(img))
    finally:
        out.close()
