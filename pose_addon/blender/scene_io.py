"""Load the scene to render (procedural building or a mesh file) and export it as a baked glTF.

Scene specs:

* ``procedural`` / ``procedural:SEED`` -- :func:`.building.build_procedural_building` (already in metres);
* a path to ``.glb`` / ``.gltf`` / ``.obj`` / ``.ply`` -- imported in the file's own coordinates, turned so that
  its ``up_axis`` becomes +Z (default ``Y`` for glTF, which is Y-up by specification, ``Z`` otherwise), scaled so
  that the longest side of its bounding box is ``scale_longest`` metres (or by ``scale``), centred in x/y,
  standing on z = 0, with a ground plane added. The info records the whole transform back to the file's frame
  (``model_from_world``, see :mod:`..core.model_frame`).

Vertex colours (PLY/OBJ/glTF colour attributes, 8-bit sRGB in the file) are shown through a material that reads
the colour attribute: Blender stores byte colours as sRGB and hands the shader linear values, which is what
Cycles expects; the bake of ``scene.glb`` carries them into its texture.

The ground is ``textured`` (procedural grass / soil / gravel, the default), ``plain`` (one flat colour, so that a
flat-coloured model stays feature-poor) or ``none`` (the building floats against the sky).

The returned info dict is what the dataset manifest stores under ``scene`` (plus ``boxes`` for the sampler).
"""
from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import bpy
import numpy as np

from ..core.model_frame import DEFAULT_LONGEST_SIDE_M, default_up_axis, up_axis_rotation, world_from_model_matrix
from ..core.render_config import GROUND_STYLES
from ..scene_utils import ensure_collection
from . import building
from .building import BUILDING_COLLECTION, GROUND_COLLECTION

__all__ = ["SceneError", "reset_scene", "load_scene", "import_mesh", "move_into", "building_objects", "ground_objects",
           "building_vertices", "export_scene_gltf", "MESH_EXTENSIONS", "GROUND_STYLES"]

MESH_EXTENSIONS = (".glb", ".gltf", ".obj", ".ply")
BAKE_UV = "BakeUV"


class SceneError(ValueError):
    """A scene spec cannot be loaded (unknown kind, unreadable file)."""


def reset_scene() -> None:
    """Remove every object, mesh, material, light, camera, image and collection from the current file."""
    for coll in (bpy.data.objects, bpy.data.meshes, bpy.data.materials, bpy.data.lights, bpy.data.cameras,
                 bpy.data.images, bpy.data.textures, bpy.data.node_groups):
        for item in list(coll):
            coll.remove(item)
    for c in list(bpy.data.collections):
        bpy.data.collections.remove(c)
    for w in list(bpy.data.worlds):
        bpy.data.worlds.remove(w)


def building_objects() -> list:
    coll = bpy.data.collections.get(BUILDING_COLLECTION)
    return [o for o in coll.all_objects if o.type == "MESH"] if coll else []


def ground_objects() -> list:
    coll = bpy.data.collections.get(GROUND_COLLECTION)
    return [o for o in coll.all_objects if o.type == "MESH"] if coll else []


def building_vertices(max_points: int = 20000) -> np.ndarray:
    """World coordinates ``[N, 3]`` of the building's mesh vertices (evenly subsampled to ``max_points``)."""
    out = []
    for obj in building_objects():
        me = obj.data
        co = np.empty(len(me.vertices) * 3)
        me.vertices.foreach_get("co", co)
        co = co.reshape(-1, 3)
        M = np.array(obj.matrix_world)
        out.append(co @ M[:3, :3].T + M[:3, 3])
    if not out:
        return np.zeros((0, 3))
    pts = np.concatenate(out)
    if len(pts) > max_points:
        pts = pts[np.linspace(0, len(pts) - 1, max_points).astype(int)]
    return pts


def _world_aabb(obj) -> np.ndarray:
    M = np.array(obj.matrix_world)
    c = np.array([list(v) for v in obj.bound_box])
    w = c @ M[:3, :3].T + M[:3, 3]
    return np.stack([w.min(0), w.max(0)])


def _parse_spec(spec: str):
    s = spec.strip()
    if s == "procedural":
        return "procedural", 0
    if s.startswith("procedural:"):
        try:
            return "procedural", int(s.split(":", 1)[1])
        except ValueError:
            raise SceneError(f"bad scene spec {spec!r}: expected procedural:SEED with an integer seed") from None
    return "file", s


def import_mesh(path: Path, file_import_axes: bool = False) -> list:
    """Import a mesh file; returns the new objects (SceneError naming the file when it cannot be read or holds no
    mesh). OBJ and PLY keep the file's own axes, unless ``file_import_axes``: then every importer uses the axes
    File > Import uses (OBJ turned from Y-up to Z-up too); glTF is always turned from Y-up to Z-up."""
    ext = path.suffix.lower()
    before = set(bpy.data.objects)
    own = {} if file_import_axes else {"forward_axis": "Y", "up_axis": "Z"}
    try:
        if ext in (".glb", ".gltf"):  # the importer turns glTF's +Y up to +Z (see _IMPORT_UP)
            res = bpy.ops.import_scene.gltf(filepath=str(path))
        elif ext == ".obj":
            res = bpy.ops.wm.obj_import(filepath=str(path), **own)
        else:
            res = bpy.ops.wm.ply_import(filepath=str(path), import_colors="SRGB", **own)
    except Exception as e:  # importer errors arrive as RuntimeError with Blender's report text
        msg = str(e).strip().splitlines()
        raise SceneError(f"cannot read mesh file {path}: {msg[-1] if msg else type(e).__name__}") from None
    if "FINISHED" not in res:
        raise SceneError(f"cannot read mesh file {path}: the importer returned {sorted(res)}")
    new = [o for o in bpy.data.objects if o not in before]
    if not any(o.type == "MESH" for o in new):
        raise SceneError(f"mesh file {path} holds no mesh")
    return new


def move_into(objects: list, matrix, collection) -> None:
    """Move imported ``objects`` by ``matrix`` (a 4x4 ``mathutils.Matrix``, applied to their roots) into
    ``collection`` alone."""
    for o in objects:
        if o.parent is None or o.parent not in objects:
            o.matrix_world = matrix @ o.matrix_world
        for c in list(o.users_collection):
            c.objects.unlink(o)
        collection.objects.link(o)
    bpy.context.view_layer.update()


def _import_up(path: Path) -> str:
    """The up axis Blender's importer already turned to +Z: glTF's ``Y``, nothing (``Z``) for PLY/OBJ as imported
    by :func:`_import_mesh`."""
    return "Y" if path.suffix.lower() in (".glb", ".gltf") else "Z"


def _vertex_colour_materials(meshes: list) -> int:
    """Give meshes that have a colour attribute but no material one that shows it; returns how many."""
    n = 0
    for o in meshes:
        me = o.data
        if not me.color_attributes or any(m is not None for m in me.materials):
            continue
        attr = me.color_attributes.active_color or me.color_attributes[0]
        mat = bpy.data.materials.new(f"{o.name}.vertex_colour")
        nt = mat.node_tree
        bsdf = next(nd for nd in nt.nodes if nd.type == "BSDF_PRINCIPLED")
        bsdf.inputs["Roughness"].default_value = 0.9
        col = nt.nodes.new("ShaderNodeVertexColor")
        col.layer_name = attr.name
        nt.links.new(col.outputs["Color"], bsdf.inputs["Base Color"])
        me.materials.append(mat)
        n += 1
    return n


def load_scene(spec: str, scale_longest: float = DEFAULT_LONGEST_SIDE_M, scale: float | None = None,
               ground: str = "textured", up_axis: str | None = None) -> dict:
    """Clear the current file and load ``spec``; returns the scene info (world metres, Z up).

    ``ground``: one of :data:`GROUND_STYLES`. ``up_axis``: the mesh file's up axis (``Z``, ``Y``, ``-Y``, ``X``,
    ...; default ``Y`` for glTF, ``Z`` otherwise). The info's ``model_from_world`` (4x4) maps world points back
    to the file's coordinates.

    Raises:
        FileNotFoundError: a mesh path that does not exist.
        SceneError (a ValueError): an unknown extension or a file the importer cannot read.
    """
    kind, arg = _parse_spec(spec)
    if ground not in GROUND_STYLES:
        raise SceneError(f"unknown ground {ground!r}: use one of {', '.join(GROUND_STYLES)}")
    if kind == "file":
        path = Path(arg).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"scene mesh not found: {path}")
        if path.suffix.lower() not in MESH_EXTENSIONS:
            raise SceneError(f"unsupported mesh file {path}: use one of {', '.join(MESH_EXTENSIONS)}")
    reset_scene()
    scene = bpy.context.scene
    if scene.world is None:
        scene.world = bpy.data.worlds.new("World")
    if kind == "procedural":
        info = building.build_procedural_building(arg)
        info.update({"source": spec, "scale": 1.0})
        if ground != "textured":
            for g in ground_objects():
                bpy.data.objects.remove(g)
            info["ground"] = (None if ground == "none" else
                              building.add_ground(0, name="Ground.0", style="plain").name)
        info.update(up_axis="Z", model_from_world=np.eye(4).tolist())
        return info

    path = path.resolve()
    up = (up_axis or default_up_axis(str(path))).strip().upper().lstrip("+")
    R_fix = up_axis_rotation(up) @ up_axis_rotation(_import_up(path)).T  # checks the name too
    new = import_mesh(path)
    meshes = [o for o in new if o.type == "MESH"]
    _vertex_colour_materials(meshes)
    import mathutils

    F = mathutils.Matrix(np.block([[R_fix, np.zeros((3, 1))], [np.zeros((1, 3)), np.ones((1, 1))]]).tolist())
    for o in new:
        if o.parent is None or o.parent not in new:
            o.matrix_world = F @ o.matrix_world
    bpy.context.view_layer.update()
    boxes = np.stack([_world_aabb(o) for o in meshes])
    lo, hi = boxes[:, 0].min(0), boxes[:, 1].max(0)
    extent = float((hi - lo).max())
    if not math.isfinite(extent) or extent <= 0:
        raise SceneError(f"mesh file {path} has an empty bounding box")
    factor = float(scale) if scale is not None else scale_longest / extent
    centre = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
    world_from_model = world_from_model_matrix(factor, -factor * centre, up)
    M = mathutils.Matrix.Diagonal((factor, factor, factor, 1.0)) @ mathutils.Matrix.Translation(-centre)
    move_into(new, M, ensure_collection(bpy.context, BUILDING_COLLECTION))
    boxes = np.stack([_world_aabb(o) for o in meshes])
    lo, hi = boxes[:, 0].min(0), boxes[:, 1].max(0)
    ground_size = max(building.GROUND_SIZE, 6.0 * float((hi - lo)[:2].max()))
    ground_obj = (None if ground == "none" else
                  building.add_ground(0, size=ground_size, name="Ground", style=ground))
    return {
        "name": path.stem,
        "source": str(path),
        "scale": factor,
        "up_axis": up,
        "translation": (-factor * centre).tolist(),
        "model_from_world": np.linalg.inv(world_from_model).tolist(),
        "objects": [o.name for o in meshes],
        "ground": ground_obj.name if ground_obj is not None else None,
        "bounds": [lo.tolist(), hi.tolist()],
        "target": ((lo + hi) / 2).tolist(),
        "boxes": boxes.tolist(),
    }


# ----------------------------------------------------------------------------------------------- glTF export
def _select_only(objs, active=None) -> None:
    bpy.context.view_layer.update()
    for o in bpy.context.scene.objects:
        if o is not None and o.select_get():
            o.select_set(False)
    for o in objs:
        o.select_set(True)
    bpy.context.view_layer.objects.active = active or (objs[0] if objs else None)


def _baked_copy(sources: list, name: str, coll, resolution: int, tmp_dir: str):
    """A joined, world-space copy of ``sources`` with one baked diffuse-colour atlas as its only material."""
    copies = []
    for src in sources:
        me = src.data.copy()
        me.transform(src.matrix_world)
        o = bpy.data.objects.new(f"{name}.part", me)
        coll.objects.link(o)
        copies.append(o)
    _select_only(copies)
    if len(copies) > 1:
        bpy.ops.object.join()
    obj = bpy.context.view_layer.objects.active
    obj.name = name
    me = obj.data
    me.name = name
    uv = me.uv_layers.get(BAKE_UV) or me.uv_layers.new(name=BAKE_UV)
    me.uv_layers.active = uv
    bpy.ops.object.mode_set(mode="EDIT")
    bpy.ops.mesh.select_all(action="SELECT")
    bpy.ops.uv.smart_project(angle_limit=math.radians(66.0), island_margin=0.002, area_weight=0.0,
                             correct_aspect=True, scale_to_bounds=False)
    bpy.ops.object.mode_set(mode="OBJECT")

    img = bpy.data.images.new(f"{name}_baked", resolution, resolution, alpha=False)
    nodes_added = []
    mats = [m for m in me.materials if m is not None]
    if not mats:  # nothing to bake from: give the mesh a plain grey material
        m = bpy.data.materials.new(f"{name}.grey")
        me.materials.append(m)
        mats = [m]
    for m in mats:
        nt = m.node_tree
        n = nt.nodes.new("ShaderNodeTexImage")
        n.image = img
        nt.nodes.active = n
        nodes_added.append((nt, n))
    _select_only([obj])
    bpy.ops.object.bake(type="DIFFUSE", pass_filter={"COLOR"}, margin=4, use_clear=True, uv_layer=BAKE_UV)
    for nt, n in nodes_added:
        nt.nodes.remove(n)
    png = os.path.join(tmp_dir, f"{name}_baked.png")
    img.filepath_raw = png
    img.file_format = "PNG"
    img.save()

    baked = bpy.data.materials.new(f"{name}_baked")
    nt = baked.node_tree
    bsdf = next(n for n in nt.nodes if n.type == "BSDF_PRINCIPLED")
    bsdf.inputs["Roughness"].default_value = 0.9
    tex = nt.nodes.new("ShaderNodeTexImage")
    tex.image = img
    uvn = nt.nodes.new("ShaderNodeUVMap")
    uvn.uv_map = BAKE_UV
    nt.links.new(uvn.outputs["UV"], tex.inputs["Vector"])
    nt.links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    me.materials.clear()
    me.materials.append(baked)
    me.polygons.foreach_set("material_index", [0] * len(me.polygons))
    for layer in [uv for uv in me.uv_layers if uv.name != BAKE_UV]:
        me.uv_layers.remove(layer)
    return obj, img, baked


def export_scene_gltf(path, bake_resolution: int = 1024, samples: int = 2, building: list | None = None,
                      ground: list | None = None) -> dict:
    """Write the building and ground as a binary glTF with procedural materials baked into image textures.

    Vertices are written in Blender's world frame as is (``export_yup=False``): a reader such as trimesh gets
    Z-up world metres directly. The file is written atomically (temporary name, then rename).

    Returns:
        ``{"gltf": file name, "gltf_up": "Z", "bake_resolution": N}``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scene = bpy.context.scene
    groups = [(building if building is not None else building_objects(), "building"),
              (ground if ground is not None else ground_objects(), "ground")]
    if not groups[0][0]:
        raise SceneError("nothing to export: the scene has no building (load a scene first)")
    saved = (scene.render.engine, scene.cycles.samples, scene.cycles.device)
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    tmp_coll = bpy.data.collections.new("BakeExport")
    scene.collection.children.link(tmp_coll)
    created = []
    tmp = path.parent / f".{path.stem}.part.glb"
    try:
        with tempfile.TemporaryDirectory() as tmp_dir:
            for sources, name in groups:
                if sources:
                    created.append(_baked_copy(sources, f"{name}", tmp_coll, bake_resolution, tmp_dir))
            _select_only([c[0] for c in created])
            bpy.ops.export_scene.gltf(filepath=str(tmp), export_format="GLB", use_selection=True,
                                      export_yup=False, export_apply=False, export_texcoords=True,
                                      export_normals=True, export_materials="EXPORT", export_image_format="AUTO",
                                      export_cameras=False, export_lights=False, export_extras=False)
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
        for obj, img, mat in created:
            me = obj.data
            bpy.data.objects.remove(obj)
            bpy.data.meshes.remove(me)
            bpy.data.materials.remove(mat)
            bpy.data.images.remove(img)
        bpy.data.collections.remove(tmp_coll)
        scene.render.engine, scene.cycles.samples, scene.cycles.device = saved
    return {"gltf": path.name, "gltf_up": "Z", "bake_resolution": int(bake_resolution)}
