"""Render a dataset (RGB + planar depth + poses) of a scene with Blender, resumable.

:func:`render_dataset` writes the folder layout of :mod:`..core.dataset`: every frame's PNG and depth appear
only complete (temporary name + rename), the manifest is saved after every frame, and a rerun with the same
scene and config renders only what is missing.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import bpy
import numpy as np

from ..core import dataset as core_dataset
from ..core.dataset import Dataset, DatasetError, Frame
from ..core.model_frame import DEFAULT_LONGEST_SIDE_M
from ..core.render_config import LightingConfig, RenderConfig
from ..core.sampling import aabb_inside_fn, sample_cameras
from . import camera as bcam
from . import scene_io

__all__ = ["DatasetMismatchError", "DatasetRender", "render_dataset", "setup_render", "setup_lighting",
           "sample_lighting", "render_frame", "load_oiio", "scene_key"]

GLTF_NAME = "scene.glb"
BACKGROUND_DEPTH = 1e9  # Blender writes 1e10 where no surface is hit
Progress = Optional[Callable[[int, int, str], None]]


class DatasetMismatchError(ValueError):
    """The output folder holds a dataset of another scene or config."""


# ----------------------------------------------------------------------------------------------- OpenImageIO
_OIIO = None


def load_oiio():
    """OpenImageIO as shipped inside Blender / the bpy wheel (imported from its file, ``sys.path`` untouched)."""
    global _OIIO
    if _OIIO is not None:
        return _OIIO
    try:
        import OpenImageIO as oiio  # a real Blender has it on its path
    except ImportError:
        pkg = Path(bpy.utils.resource_path("LOCAL")) / "python" / "lib" / \
            f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages" / "OpenImageIO"
        init = pkg / "__init__.py"
        if not init.is_file():
            raise RuntimeError(f"OpenImageIO not found (looked for {init}); it ships with Blender 4.x/5.x") from None
        spec = importlib.util.spec_from_file_location("OpenImageIO", init, submodule_search_locations=[str(pkg)])
        oiio = importlib.util.module_from_spec(spec)
        sys.modules["OpenImageIO"] = oiio
        try:
            spec.loader.exec_module(oiio)
        except BaseException:
            del sys.modules["OpenImageIO"]
            raise
    _OIIO = oiio
    return oiio


def _read_png(path: str) -> np.ndarray:
    oiio = load_oiio()
    inp = oiio.ImageInput.open(path)
    if inp is None:
        raise RuntimeError(f"cannot read {path}: {oiio.geterror()}")
    try:
        return np.asarray(inp.read_image("uint8"))
    finally:
        inp.close()


def _write_png(path: str, img: np.ndarray) -> None:
    oiio = load_oiio()
    h, w, c = img.shape
    out = oiio.ImageOutput.create(path)
    if out is None:
        raise RuntimeError(f"cannot write {path}: {oiio.geterror()}")
    try:
        out.open(path, oiio.ImageSpec(w, h, c, "uint8"))
        out.write_image(np.ascontiguousarray(img))
    finally:
        out.close()


def _read_exr_passes(path: str) -> dict:
    """Channels of a multilayer EXR by pass: ``{"Depth.Z": [H, W], "Normal.X": ..., "IndexOB.X": ...}``
    (Blender 5 names the object-index layer "Object Index", older versions "IndexOB")."""
    oiio = load_oiio()
    inp = oiio.ImageInput.open(path)
    if inp is None:
        raise RuntimeError(f"cannot read {path}: {oiio.geterror()}")
    out = {}
    try:
        sub = 0
        while inp.seek_subimage(sub, 0):
            names = list(inp.spec().channelnames)
            data = None
            for i, n in enumerate(names):
                key = ".".join(n.split(".")[-2:]).replace("Object Index.", "IndexOB.")  # "ViewLayer.Depth.Z"
                if key in ("Depth.Z", "Normal.X", "Normal.Y", "Normal.Z", "IndexOB.X"):
                    if data is None:
                        data = np.asarray(inp.read_image(sub, 0, 0, len(names), "float"))
                        data = data.reshape(data.shape[0], data.shape[1], -1)
                    out[key] = data[..., i].astype(np.float32)
            sub += 1
    finally:
        inp.close()
    return out


def _clean_depth(d: np.ndarray) -> np.ndarray:
    d = d.copy()
    d[~np.isfinite(d) | (d >= BACKGROUND_DEPTH) | (d < 0)] = 0.0
    return d


# ----------------------------------------------------------------------------------------------- setup
def cycles_gpu_configured() -> bool:
    """Whether the user chose a GPU backend for Cycles in Preferences > System and enabled one of its devices."""
    addon = bpy.context.preferences.addons.get("cycles")
    cp = getattr(addon, "preferences", None)
    if cp is None or getattr(cp, "compute_device_type", "NONE") in ("NONE", ""):
        return False
    return any(d.use and d.type != "CPU" for d in getattr(cp, "devices", ()))


def setup_render(config: RenderConfig, scene=None) -> bpy.types.Object:
    """Engine, colour management, passes and the dataset camera; returns the camera object."""
    scene = scene or bpy.context.scene
    r = scene.render
    r.engine = config.engine
    if config.engine == "CYCLES":
        c = scene.cycles
        c.device = "GPU" if cycles_gpu_configured() else "CPU"
        c.samples = int(config.samples)
        c.use_denoising = False
        c.use_adaptive_sampling = False
        c.filter_width = 1.0
        c.seed = 0
        c.max_bounces = 4
        c.diffuse_bounces = 2
        c.glossy_bounces = 2
        c.transmission_bounces = 2
        c.transparent_max_bounces = 4
        c.caustics_reflective = False
        c.caustics_refractive = False
    elif config.engine == "BLENDER_EEVEE":
        scene.eevee.taa_render_samples = int(config.samples)
    else:  # workbench: show material colours, flat studio light
        scene.display.shading.light = "STUDIO"
        scene.display.shading.color_type = "MATERIAL"
        scene.display.shading.show_shadows = True
    r.film_transparent = False
    r.use_compositing = False
    r.use_sequencer = False
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure = 0.0
    scene.view_settings.gamma = 1.0
    scene.display_settings.display_device = "sRGB"
    scene.view_layers[0].use_pass_z = bool(config.depth)
    scene.view_layers[0].use_pass_normal = bool(config.normals)
    scene.view_layers[0].use_pass_object_index = bool(config.masks)
    r.resolution_x, r.resolution_y, r.resolution_percentage = config.width, config.height, 100

    cam_obj = scene.objects.get("DatasetCamera")  # never another scene's object of that name
    if cam_obj is None or cam_obj.type != "CAMERA":
        cam_obj = bpy.data.objects.new("DatasetCamera", bpy.data.cameras.new("DatasetCamera"))
        scene.collection.objects.link(cam_obj)
    cam_obj.data.clip_start = 0.05
    cam_obj.data.clip_end = 1000.0
    bcam.apply_settings(cam_obj, scene, config.camera())
    scene.camera = cam_obj
    return cam_obj


def assign_instance_ids(scene) -> dict:
    """Give every mesh object a distinct ``pass_index`` (1..N, by name) for the instance-mask pass; returns
    ``{object name: index}`` (0 in a mask = no object)."""
    ids = {}
    for i, obj in enumerate(sorted((o for o in scene.objects if o.type == "MESH"), key=lambda o: o.name), 1):
        obj.pass_index = i
        ids[obj.name] = i
    return ids


def sample_lighting(cfg: LightingConfig, seed: int, index: int, split: str = "") -> dict:
    """Deterministic lighting of frame ``index`` of a group (seeded by group seed, split name and index)."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(index), zlib.crc32(split.encode()), 11])
    out = {
        "sun_elevation_deg": float(rng.uniform(*cfg.sun_elevation_deg)),
        "sun_azimuth_deg": float(rng.uniform(*cfg.sun_azimuth_deg)),
        "sun_strength": float(rng.uniform(*cfg.sun_strength)),
        "world_strength": float(rng.uniform(*cfg.world_strength)),
        "world_color": [float(c) for c in cfg.world_color],
    }
    if cfg.world_color_jitter > 0:  # drawn after the original fields so old datasets keep their lighting
        j = cfg.world_color_jitter
        out["world_color"] = [float(np.clip(c * rng.uniform(1 - j, 1 + j), 0, 1)) for c in cfg.world_color]
    if cfg.hdri_dir:
        maps = sorted(p for p in Path(cfg.hdri_dir).expanduser().glob("*") if p.suffix.lower() in (".hdr", ".exr"))
        if not maps:
            raise FileNotFoundError(f"no .hdr/.exr environment maps in HDRI folder {cfg.hdri_dir}")
        out["hdri"] = str(maps[int(rng.integers(len(maps)))])
        out["hdri_rotation_deg"] = float(rng.uniform(0, 360))
    return out


def setup_lighting(lighting: dict, scene=None) -> None:
    """A sun lamp from (elevation, azimuth) and a uniform world background colour."""
    import mathutils

    scene = scene or bpy.context.scene
    sun = scene.objects.get("DatasetSun")
    if sun is None or sun.type != "LIGHT":
        sun = bpy.data.objects.new("DatasetSun", bpy.data.lights.new("DatasetSun", "SUN"))
        scene.collection.objects.link(sun)
    sun.data.energy = lighting["sun_strength"]
    sun.data.angle = math.radians(1.0)
    el, az = math.radians(lighting["sun_elevation_deg"]), math.radians(lighting["sun_azimuth_deg"])
    towards_sun = mathutils.Vector((math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)))
    # a sun lamp shines down its local -Z: point local +Z at the sun
    sun.rotation_mode = "QUATERNION"
    sun.rotation_quaternion = towards_sun.to_track_quat("Z", "Y")
    world = scene.world or bpy.data.worlds.new("World")
    scene.world = world
    nt = world.node_tree
    bg = next((n for n in nt.nodes if n.type == "BACKGROUND"), None)
    if bg is None:
        bg = nt.nodes.new("ShaderNodeBackground")
        out = next((n for n in nt.nodes if n.type == "OUTPUT_WORLD"), None) or nt.nodes.new("ShaderNodeOutputWorld")
        nt.links.new(bg.outputs["Background"], out.inputs["Surface"])
    env = next((n for n in nt.nodes if n.type == "TEX_ENVIRONMENT"), None)
    if lighting.get("hdri"):
        if env is None:
            env = nt.nodes.new("ShaderNodeTexEnvironment")
            mapping = nt.nodes.new("ShaderNodeMapping")
            coord = nt.nodes.new("ShaderNodeTexCoord")
            nt.links.new(coord.outputs["Generated"], mapping.inputs["Vector"])
            nt.links.new(mapping.outputs["Vector"], env.inputs["Vector"])
        env.image = bpy.data.images.load(lighting["hdri"], check_existing=True)
        mapping = env.inputs["Vector"].links[0].from_node
        mapping.inputs["Rotation"].default_value[2] = math.radians(lighting.get("hdri_rotation_deg", 0.0))
        nt.links.new(env.outputs["Color"], bg.inputs["Color"])
    else:
        for link in list(bg.inputs["Color"].links):
            nt.links.remove(link)
        bg.inputs["Color"].default_value = (*lighting["world_color"][:3], 1.0)
    bg.inputs["Strength"].default_value = lighting["world_strength"]


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of an [H, W, C] float image (kernel radius 3 sigma, edges replicated)."""
    r = max(1, int(np.ceil(3.0 * sigma)))
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    k /= k.sum()
    out = img.astype(np.float64)
    for axis in (0, 1):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (r, r)
        p = np.pad(out, pad, mode="edge")
        n = out.shape[axis]
        out = sum(w * np.take(p, np.arange(i, i + n), axis=axis) for i, w in enumerate(k))
    return out.astype(np.float32)


def render_frame(scene, png_path: Path, depth_path: Optional[Path], noise_std: float = 0.0,
                 noise_seed=None, normals_path: Optional[Path] = None, mask_path: Optional[Path] = None,
                 blur_px: float = 0.0, photo: Optional[tuple] = None) -> None:
    """Render the scene's camera; write an 8-bit RGB PNG (view transform applied; Gaussian blur of ``blur_px``
    then noise of ``noise_std`` grey levels when asked), planar depth and, when asked, world-space normals and the
    instance mask (object ``pass_index``), all atomically. ``photo`` = ``(parameters, intrinsics)`` of a
    photo-like frame (:mod:`.photo_style`): the overscanned render becomes the photo, written to ``png_path``
    (a ``.jpg`` when it is JPEG-compressed), and its depth follows the lens distortion."""
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_png = png_path.parent / f".{png_path.stem}.part.png"
    tmp_noisy = png_path.parent / f".{png_path.stem}.noisy.part.png"
    ims = scene.render.image_settings
    try:
        with tempfile.TemporaryDirectory(prefix="pose_render_") as tmp_dir:
            bpy.ops.render.render(write_still=False)
            result = bpy.data.images["Render Result"]
            passes = {}
            if depth_path is not None or normals_path is not None or mask_path is not None:
                exr = os.path.join(tmp_dir, "frame.exr")
                ims.media_type = "MULTI_LAYER_IMAGE"
                ims.file_format = "OPEN_EXR_MULTILAYER"
                ims.color_depth = "32"
                ims.exr_codec = "ZIP"
                result.save_render(exr, scene=scene)
                passes = _read_exr_passes(exr)
                if depth_path is not None:
                    if "Depth.Z" not in passes:
                        raise RuntimeError(f"{exr} holds no Depth pass (is view_layer.use_pass_z on?)")
                    depth = _clean_depth(passes["Depth.Z"])
            ims.media_type = "IMAGE"
            ims.file_format = "PNG"
            ims.color_mode = "RGB"
            ims.color_depth = "8"
            ims.compression = 15
            result.save_render(str(tmp_png), scene=scene)
        if photo is not None:
            from . import photo_style

            tmp_photo = png_path.parent / f".{png_path.stem}.photo.part{png_path.suffix}"
            try:
                photo_style.write_photo(tmp_photo, photo_style.finish_image(_read_png(str(tmp_png)), photo[0],
                                                                            photo[1], blur_px, noise_std,
                                                                            noise_seed), photo[0]["jpeg_quality"])
                os.replace(tmp_photo, png_path)
            finally:
                tmp_photo.unlink(missing_ok=True)
            tmp_png.unlink()
            if depth_path is not None:
                depth = photo_style.finish_depth(depth, photo[0], photo[1])
        elif noise_std > 0 or blur_px > 0:
            img = _read_png(str(tmp_png)).astype(np.float32)
            if blur_px > 0:
                img = gaussian_blur(img, blur_px)
            rng = np.random.default_rng(noise_seed)
            img = np.clip(np.round(img + rng.normal(0.0, noise_std, img.shape)), 0, 255).astype(np.uint8)
            _write_png(str(tmp_noisy), img)
            os.replace(tmp_noisy, png_path)
            tmp_png.unlink()
        else:
            os.replace(tmp_png, png_path)
        if depth_path is not None:
            core_dataset.write_depth(depth_path, depth)
        if normals_path is not None:
            n = np.stack([passes["Normal.X"], passes["Normal.Y"], passes["Normal.Z"]], axis=-1)
            core_dataset.write_array(normals_path, "normals", n.astype(np.float16))
        if mask_path is not None:
            core_dataset.write_array(mask_path, "mask", np.round(passes["IndexOB.X"]).astype(np.uint16))
    finally:
        for p in (tmp_png, tmp_noisy):
            if p.exists():
                p.unlink()


# ----------------------------------------------------------------------------------------------- datasets
def scene_key(scene_spec: str, scale: Optional[float], scale_longest: float, ground: str = "textured",
              up_axis: Optional[str] = None) -> str:
    """What identifies the scene in the config digest (a mesh path counts by its absolute path; the default
    ground and up axis are left out so that older datasets keep their digest)."""
    from ..core.model_frame import default_up_axis

    spec = scene_spec.strip()
    up = ""
    if not spec.startswith("procedural"):
        spec = str(Path(spec).expanduser().resolve())
        if up_axis and up_axis.strip().upper().lstrip("+") != default_up_axis(spec):
            up = f"|up={up_axis.strip().upper().lstrip('+')}"
    return f"{spec}|scale={scale}|longest={scale_longest}" + ("" if ground == "textured" else f"|ground={ground}") \
        + up


class DatasetRender:
    """A resumable dataset render of the scene currently in Blender, one frame per :meth:`step`.

    The modal "Render Dataset" operator calls :meth:`step` from a timer so Blender stays responsive;
    :func:`render_dataset` (headless) loops over it.

    Args:
        config: resolution, engine, samples and groups (one split each).
        out_dir: dataset folder (created; resumed if it holds the same scene key and config).
        scene_info: manifest ``scene`` entry; needs ``target`` ``[3]`` and ``boxes`` ``[B, 2, 3]`` (world).
        key: scene identity that enters the config digest.
        target_points: ``[N, 3]`` world points of the building, for the coverage check.
        gltf: ``(building objects, ground objects)`` to bake into ``scene.glb``, or None to skip the export.
        frames: ``(start, stop)``: render only these entries of the plan (the groups' cameras in order, stop
            exclusive) into a shard folder whose manifest records ``shard`` = ``{"start", "stop", "of"}``; the
            shard is ``complete`` when its frames are. Shards of one config merge into the full dataset.

    Raises:
        DatasetMismatchError: ``out_dir`` holds a dataset rendered from another scene or config (or another
            shard range).
    """

    def __init__(self, config: RenderConfig, out_dir, scene_info: dict, key: str, target_points: np.ndarray,
                 gltf: Optional[tuple] = None, bake_resolution: int = 1024, progress: Progress = None,
                 frames: Optional[tuple] = None):
        config.validate()
        self.config, self.out, self.progress = config, Path(out_dir), progress
        digest = config.digest(key)
        ds = self._open_existing(digest)
        n_plan = sum(g.sampler.n for g in config.groups)
        shard = None
        if frames is not None:
            start, stop = int(frames[0]), min(int(frames[1]), n_plan)
            if not 0 <= start < stop:
                raise ValueError(f"frame range {frames[0]}:{frames[1]} is empty or outside the plan of {n_plan} "
                                 "frames")
            shard = {"start": start, "stop": stop, "of": n_plan}
        if ds is not None and ds.manifest.get("shard") != shard:
            raise DatasetMismatchError(f"folder {self.out} holds frames {ds.manifest.get('shard') or 'all'}, "
                                       f"not {shard or 'all'}; choose another --out or delete it")
        self.out.mkdir(parents=True, exist_ok=True)
        for stale in [*self.out.glob(".*.part*"), *self.out.glob("images/.*.part*"), *self.out.glob("depth/.*.part*")]:
            stale.unlink()
        scene = bpy.context.scene
        if gltf is not None and not (self.out / GLTF_NAME).is_file():
            if progress:
                progress(0, 0, "baking textures and exporting scene.glb")
            scene_io.export_scene_gltf(self.out / GLTF_NAME, bake_resolution=bake_resolution,
                                       building=gltf[0], ground=gltf[1])
        self.scene = scene
        self.cam_obj = setup_render(config, scene)
        if config.masks:
            scene_info = dict(scene_info, instances=assign_instance_ids(scene))
        self.intr = config.intrinsics()
        info = dict(scene_info, key=key)
        if (self.out / GLTF_NAME).is_file():
            info.update(gltf=GLTF_NAME, gltf_up="Z")
        render_info = {"digest": digest, "config": config.to_dict(), "engine": config.engine,
                       "blender": bpy.app.version_string, "view_transform": scene.view_settings.view_transform}
        if ds is None:
            ds = Dataset.create(self.out, info, render_info, {g.split: g.sampler.n for g in config.groups})
            if shard is not None:
                ds.manifest["shard"] = shard
            ds.save()
        self.ds = ds
        target = np.asarray(scene_info["target"], dtype=np.float64)
        self.target, self.boxes, self.target_points = target, np.asarray(scene_info["boxes"]), target_points
        inside = aabb_inside_fn(np.asarray(scene_info["boxes"]), margin=0.5)
        self.plan = []
        for g in config.groups:
            poses = sample_cameras(g.sampler, target, self.intr, target_points=target_points, inside_fn=inside)
            self.plan += [(g, i, T) for i, T in enumerate(poses)]
        if shard is not None:
            self.plan = self.plan[shard["start"]:shard["stop"]]
        self.todo = [p for p in self.plan if not ds.has_frame_files(self.frame_id(p[0], p[1]))]
        if progress:
            progress(self.done, self.total, f"{len(self.todo)} frames to render")

    def _open_existing(self, digest: str) -> Optional[Dataset]:
        if not (self.out / core_dataset.MANIFEST).is_file():
            return None
        try:
            ds = Dataset.load(self.out)
        except DatasetError as e:
            raise DatasetMismatchError(f"{self.out} holds an unreadable dataset ({e}); choose another --out or "
                                       "delete it") from None
        old = ds.manifest.get("render", {}).get("digest")
        if old != digest:
            raise DatasetMismatchError(f"folder {self.out} holds a different dataset (config digest {old}, this "
                                       f"render {digest}); choose another --out or delete it")
        return ds

    @staticmethod
    def frame_id(group, index: int) -> str:
        return f"{group.split}_{index:04d}"

    @property
    def total(self) -> int:
        return len(self.plan)

    @property
    def done(self) -> int:
        return len(self.plan) - len(self.todo)

    def step(self) -> Optional[str]:
        """Render the next missing frame (atomically) and save the manifest; None when nothing is left."""
        if not self.todo:
            return None
        g, i, T = self.todo[0]
        fid = self.frame_id(g, i)
        t1 = time.time()
        lighting = sample_lighting(g.lighting, g.sampler.seed, i, g.split)
        setup_lighting(lighting, self.scene)
        bcam.set_cam_from_world(self.cam_obj, T)
        photo, intr, undo_photo, photo_facts = None, self.intr, None, {}
        if g.photo is not None:
            from . import photo_style

            photo = photo_style.sample_params(g.photo, g.sampler.seed, i, g.split, self.intr)
            undo_photo, photo_facts = photo_style.prepare_frame(
                self.scene, self.cam_obj, photo, lighting, T, self.intr, scene_io.building_objects(),
                self.target, self.boxes, self.target_points)
            intr = dataclasses.replace(self.intr, dist=(photo["k1"], photo["k2"], 0.0, 0.0))
        image_rel = f"images/{fid}.{'jpg' if photo and photo['jpeg_quality'] else 'png'}"
        depth_rel = f"depth/{fid}.npz" if self.config.depth else None
        normals_rel = f"normals/{fid}.npz" if self.config.normals else None
        mask_rel = f"masks/{fid}.npz" if self.config.masks else None
        noise_seed = [int(g.sampler.seed) & 0xFFFFFFFF, i, zlib.crc32(g.split.encode()), 23]
        try:
            render_frame(self.scene, self.out / image_rel, self.out / depth_rel if depth_rel else None, g.noise_std,
                         noise_seed, self.out / normals_rel if normals_rel else None,
                         self.out / mask_rel if mask_rel else None, g.blur_px, (photo, intr) if photo else None)
        finally:
            if undo_photo is not None:
                undo_photo()
        extras = {"group": g.split, "index": i, "lighting": lighting, "noise_std": g.noise_std,
                  "render_s": round(time.time() - t1, 3)}
        if photo is not None:
            extras["photo"] = {**photo, **photo_facts}
        extras.update({k: v for k, v in (("normals", normals_rel), ("mask", mask_rel), ("blur_px", g.blur_px)) if v})
        self.ds.add_frame(Frame(fid, g.split, image_rel, depth_rel, intr, T, extras))
        self.ds.save()
        self.todo.pop(0)
        msg = f"{fid} rendered in {time.time() - t1:.2f} s"
        if self.progress:
            self.progress(self.done, self.total, msg)
        return msg

    def finish(self) -> Dataset:
        """Mark the dataset complete (only when every planned frame exists)."""
        if not self.todo:
            self.ds.manifest["complete"] = True
            self.ds.save()
        return self.ds


def render_dataset(scene_spec: str, config: RenderConfig, out_dir, progress: Progress = None,
                   scale: Optional[float] = None, scale_longest: float = DEFAULT_LONGEST_SIDE_M,
                   bake_resolution: int = 1024, ground: str = "textured", up_axis: Optional[str] = None,
                   frames: Optional[tuple] = None) -> Dataset:
    """Load ``scene_spec`` and render ``config``'s groups into ``out_dir``; resumes a matching partial dataset.

    Args:
        scene_spec: ``procedural``, ``procedural:SEED`` or a mesh path (see :func:`.scene_io.load_scene`).
        config: resolution, engine, samples and groups (one split each).
        out_dir: dataset folder (created).
        progress: ``progress(done, total, message)`` after every frame (and once at the start).
        scale: explicit scale factor for a mesh file (default: longest side -> ``scale_longest`` metres).
        ground: ``textured``, ``plain`` or ``none`` (see :func:`.scene_io.load_scene`).
        up_axis: the mesh file's up axis (default per format, see :mod:`..core.model_frame`).
        frames: ``(start, stop)`` of the plan to render into a shard folder (see :class:`DatasetRender`); only
            the shard starting at frame 0 exports ``scene.glb``.

    Raises:
        DatasetMismatchError: ``out_dir`` holds a dataset rendered from another scene or config.
        FileNotFoundError / ValueError: the scene cannot be loaded.
    """
    config.validate()
    if out_dir is None or not str(out_dir).strip():
        raise ValueError("no output folder given: choose the dataset folder to render into")
    key = scene_key(scene_spec, scale, scale_longest, ground, up_axis)
    out = Path(out_dir)
    if (out / core_dataset.MANIFEST).is_file():  # refuse a mismatching folder before the slow scene load
        DatasetRender._open_existing(type("_", (), {"out": out})(), config.digest(key))
    t0 = time.time()
    info = scene_io.load_scene(scene_spec, scale_longest=scale_longest, scale=scale, ground=ground, up_axis=up_axis)
    scene_info = {k: info[k] for k in ("name", "source", "scale", "bounds", "target", "boxes", "up_axis",
                                       "model_from_world") if k in info}
    if ground != "textured":
        scene_info["ground"] = ground
    if "params" in info:
        scene_info["params"] = info["params"]
    export = frames is None or int(frames[0]) == 0
    job = DatasetRender(config, out, scene_info, key, scene_io.building_vertices(),
                        gltf=(scene_io.building_objects(), scene_io.ground_objects()) if export else None,
                        bake_resolution=bake_resolution, progress=progress, frames=frames)
    if progress:
        progress(job.done, job.total, f"scene ready in {time.time() - t0:.1f} s")
    while job.step() is not None:
        pass
    return job.finish()
