"""Scene settings: one PropertyGroup per panel, gathered under ``Scene.pose_tools`` (saved with the .blend), and
the runtime state of running jobs under ``WindowManager.building_pose`` (the window manager's properties are never
saved: a restart starts clean).

Angles are stored in radians (``subtype="ANGLE"``) and converted to the degrees of the core configs here;
distances are metres shown in the scene's length unit.
"""
import math

import bpy
import numpy as np
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    FloatVectorProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from .core.keypoints import MIN_VIEW_SHARE
from .core.render_config import ENGINE_LABELS, LightingConfig, RenderConfig, RenderGroup
from .core.sampling import SamplerConfig, placement_preset
from .worker.methods import method_number

_deg = math.radians


def _distance(name: str, default: float, description: str, **kw) -> FloatProperty:
    return FloatProperty(name=name, default=default, min=kw.pop("min", 0.0), subtype="DISTANCE", unit="LENGTH",
                         description=description, **kw)


def _angle(name: str, default_deg: float, description: str, lo_deg: float | None = None,
           hi_deg: float | None = None) -> FloatProperty:
    kw = {}
    if lo_deg is not None:
        kw["min"] = _deg(lo_deg)
    if hi_deg is not None:
        kw["max"] = _deg(hi_deg)
    return FloatProperty(name=name, default=_deg(default_deg), subtype="ANGLE", unit="ROTATION",
                         description=description, **kw)


class POSE_PG_sampling(bpy.types.PropertyGroup):
    placement: EnumProperty(
        name="Placement", default="orbit",
        description="Where the cameras go; the presets scale with the size of the selected model",
        items=[("orbit", "Orbit", "A shell around the model, 1.7 to 2.7 times its longest side away, 5-35 deg up"),
               ("street", "Street", "Eye height (1.5-2 m) above the ground, around the model, framing the facades"),
               ("aerial", "Aerial", "High above the model, 40-70 deg up"),
               ("custom", "Custom", "The distances and elevations set below")])
    layout: EnumProperty(name="Layout", default="fibonacci", description="How the cameras spread over the band",
                         items=[("fibonacci", "Fibonacci", "Even spiral over the band of the sphere"),
                                ("rings", "Rings", "Elevation rings with evenly spaced azimuths"),
                                ("random", "Random", "Uniform over the band's area")])
    shape: EnumProperty(name="Shell", default="HEMISPHERE", description="Which elevations a custom placement uses",
                        items=[("HEMISPHERE", "Hemisphere", "Elevations from the elevation range, above the horizon"),
                               ("SHELL", "Full Shell", "Any elevation from -90 to 90 degrees")])
    count: IntProperty(name="Cameras", default=50, min=1, max=100000, description="Number of cameras to sample")
    distance_min: _distance("Min Distance", 25.0, "Nearest camera distance from the model's centre (custom)",
                            min=0.01)
    distance_max: _distance("Max Distance", 40.0, "Farthest camera distance from the model's centre (custom)",
                            min=0.01)
    elevation_min: _angle("Min Elevation", 5.0, "Lowest camera elevation above the horizon (custom)", -90, 90)
    elevation_max: _angle("Max Elevation", 35.0, "Highest camera elevation above the horizon (custom)", -90, 90)
    azimuth_min: _angle("Min Azimuth", 0.0, "Start of the azimuth range, counter-clockwise from +X")
    azimuth_max: _angle("Max Azimuth", 360.0, "End of the azimuth range, counter-clockwise from +X")
    roll: _angle("Roll", 0.0, "Largest random in-plane roll of a camera", 0, 180)
    jitter: _distance("Look-at Jitter", 0.0, "Random offset of the point each camera looks at")
    rings: IntProperty(name="Rings", default=3, min=1, max=50, description="Number of elevation rings")
    min_coverage: FloatProperty(name="Min Coverage", default=0.05, min=0, max=1, subtype="FACTOR",
                                description="Reject cameras where the target covers less of the frame")
    seed: IntProperty(name="Seed", default=0, min=0, description="Random seed: the same seed gives the same cameras")
    output: EnumProperty(name="Output", default="CAMERAS", description="What Sample Cameras creates",
                         items=[("CAMERAS", "Camera Objects", "Camera objects in the 'Sampled Cameras' collection"),
                                ("POSES", "Pose List", "A lightweight list of poses drawn as frustums")])

    def to_config(self, bounds=None) -> SamplerConfig:
        """The sampler config; a placement preset needs the target's world ``bounds`` ``(min [3], max [3])``."""
        if self.placement != "custom":
            if bounds is None:
                raise ValueError("a placement preset needs the model's bounding box")
            cfg = placement_preset(self.placement, bounds[0], bounds[1], n=self.count, seed=self.seed,
                                   layout=self.layout)
            cfg.azimuth_deg = (math.degrees(self.azimuth_min), math.degrees(self.azimuth_max))
            cfg.roll_deg, cfg.jitter_m, cfg.rings = math.degrees(self.roll), self.jitter, self.rings
            cfg.min_coverage = self.min_coverage
            return cfg
        elev = (math.degrees(self.elevation_min), math.degrees(self.elevation_max)) \
            if self.shape == "HEMISPHERE" else (-90.0, 90.0)
        return SamplerConfig(n=self.count, layout=self.layout, distance=(self.distance_min, self.distance_max),
                             elevation_deg=elev, azimuth_deg=(math.degrees(self.azimuth_min),
                                                              math.degrees(self.azimuth_max)),
                             roll_deg=math.degrees(self.roll), jitter_m=self.jitter, rings=self.rings,
                             min_coverage=self.min_coverage, seed=self.seed)


class POSE_PG_pose_item(bpy.types.PropertyGroup):
    """One sampled pose of the lightweight list: ``cam_from_world`` row-major (OpenCV axes)."""

    cam_from_world: FloatVectorProperty(size=16, name="Camera from World",
                                        description="4x4 cam_from_world, row-major, OpenCV camera axes")


class POSE_PG_render(bpy.types.PropertyGroup):
    output_dir: StringProperty(name="Output", subtype="DIR_PATH", default="//pose_dataset",
                               description="Dataset folder ('//' is next to the saved .blend file)")
    width: IntProperty(name="Width", default=640, min=16, max=8192, subtype="PIXEL",
                       description="Image width of the rendered views")
    height: IntProperty(name="Height", default=480, min=16, max=8192, subtype="PIXEL",
                        description="Image height of the rendered views")
    lens: FloatProperty(name="Focal Length", default=30.0, min=1.0, subtype="DISTANCE_CAMERA", unit="CAMERA",
                        description="Focal length of the rendered views on a 36 mm wide sensor")
    engine: EnumProperty(name="Engine", default="CYCLES", description="Render engine of the dataset",
                         items=[(k, label, desc) for k, (label, desc) in ENGINE_LABELS.items()])
    samples: IntProperty(name="Samples", default=16, min=1, max=4096, description="Render samples per pixel")
    depth: BoolProperty(name="Depth", default=True, description="Write planar depth in metres per frame")
    normals: BoolProperty(name="Normals", default=False, description="Write world-space normals per frame (Cycles)")
    masks: BoolProperty(name="Instance Masks", default=False,
                        description="Write per-object instance masks per frame (Cycles)")
    n_train: IntProperty(name="Train", default=100, min=0, description="Number of training views")
    n_val: IntProperty(name="Val", default=20, min=0, description="Number of validation views")
    n_test: IntProperty(name="Test", default=20, min=0, description="Number of test views")
    sun_elevation_min: _angle("Sun Elevation Min", 35.0, "Lowest sun elevation drawn per frame", 0, 90)
    sun_elevation_max: _angle("Sun Elevation Max", 60.0, "Highest sun elevation drawn per frame", 0, 90)
    sun_strength_min: FloatProperty(name="Sun Strength Min", default=3.0, min=0,
                                    description="Weakest sun (W/m²) drawn per frame")
    sun_strength_max: FloatProperty(name="Sun Strength Max", default=4.0, min=0,
                                    description="Strongest sun (W/m²) drawn per frame")
    world_strength_min: FloatProperty(name="Sky Strength Min", default=0.4, min=0,
                                      description="Weakest sky light drawn per frame")
    world_strength_max: FloatProperty(name="Sky Strength Max", default=0.6, min=0,
                                      description="Strongest sky light drawn per frame")
    world_color: FloatVectorProperty(name="Sky Colour", subtype="COLOR", default=(0.8, 0.85, 1.0), min=0, max=1,
                                     description="Colour of the uniform sky")
    world_color_jitter: FloatProperty(name="Sky Colour Jitter", default=0.0, min=0, max=1, subtype="FACTOR",
                                      description="Scale each sky colour channel by up to this share per frame")
    hdri_dir: StringProperty(name="HDRI Folder", subtype="DIR_PATH",
                             description="Optional folder of .hdr/.exr maps: one random map per frame as the sky")
    bake_resolution: IntProperty(name="Texture Size", default=1024, min=16, max=8192, subtype="PIXEL",
                                 description="Size of the baked texture of the scene.glb written with the dataset")
    noise: FloatProperty(name="Sensor Noise", default=0.0, min=0, max=50,
                         description="Standard deviation of the added Gaussian noise, in 8-bit grey levels")

    def to_config(self, sampling: POSE_PG_sampling, bounds=None) -> RenderConfig:
        """The render config; ``bounds`` ``(min [3], max [3])`` of the model for the placement presets."""
        light = LightingConfig(sun_elevation_deg=(math.degrees(self.sun_elevation_min),
                                                  math.degrees(self.sun_elevation_max)),
                               sun_strength=(self.sun_strength_min, self.sun_strength_max),
                               world_strength=(self.world_strength_min, self.world_strength_max),
                               world_color=tuple(self.world_color), world_color_jitter=self.world_color_jitter,
                               hdri_dir=bpy.path.abspath(self.hdri_dir) if self.hdri_dir else "")
        groups = []
        for i, (split, n) in enumerate((("train", self.n_train), ("val", self.n_val), ("test", self.n_test))):
            if n > 0:
                s = sampling.to_config(bounds)
                s.n, s.seed = n, sampling.seed + 1000 * i
                if split != "train":
                    s.layout = "random"  # held-out views fall between the training views
                groups.append(RenderGroup(split, s, light, self.noise))
        return RenderConfig(groups=groups, width=self.width, height=self.height, lens_mm=self.lens,
                            engine=self.engine, samples=self.samples, depth=self.depth, normals=self.normals,
                            masks=self.masks)

    def intrinsics(self):
        """Intrinsics of the dataset views (resolution and focal length only)."""
        return RenderConfig(groups=[], width=self.width, height=self.height, lens_mm=self.lens).intrinsics()


class POSE_PG_keypoint(bpy.types.PropertyGroup):
    """A list entry pointing at a keypoint empty; renaming the entry renames the empty, renaming the empty (in the
    Outliner) renames the entry (see :func:`ops_keypoints.sync_names`)."""

    def _rename(self, context):
        if self.empty and self.empty.name != self.name:
            self.empty.name = self.name
            if self.name != self.empty.name:
                self.name = self.empty.name  # Blender may add a suffix on clashes

    name: StringProperty(name="Name", update=_rename, description="Keypoint name (the name of its empty)")
    empty: PointerProperty(type=bpy.types.Object, name="Empty", description="The empty marking the keypoint")
    views: IntProperty(name="Views", default=-1, min=-1,
                       description="How many views see the keypoint unoccluded (Count Views; -1: not counted)")


class POSE_PG_keypoints(bpy.types.PropertyGroup):
    items: CollectionProperty(type=POSE_PG_keypoint, name="Keypoints",
                              description="Named 3D keypoints, in label order")
    active_index: IntProperty(default=0, name="Active Keypoint", description="Index of the selected keypoint")
    snap_to_vertex: BoolProperty(name="Snap to Vertex", default=False,
                                 description="Snap placed keypoints to the nearest vertex of the hit face")
    json_path: StringProperty(name="JSON", subtype="FILE_PATH", default="//keypoints.json",
                              description="Keypoint file to import or export ('//' is next to the saved .blend)")
    suggest_count: IntProperty(name="Count", default=16, min=4, max=200,
                               description="How many keypoints Suggest Keypoints proposes")
    view_source: EnumProperty(
        name="Views", default="AUTO", description="Which views Count Views counts",
        items=[("AUTO", "Auto", "The dataset in the Dataset panel's output folder when there is one, else the "
                                "sampled cameras"),
               ("DATASET", "Dataset", "The reference views of the dataset in the Dataset panel's output folder "
                                      "(depth-tested where it has depth)"),
               ("CAMERAS", "Sampled Cameras", "The sampled camera objects or pose list (occlusion by ray casting)")])
    min_view_share: FloatProperty(name="Min View Share", default=MIN_VIEW_SHARE, min=0, max=1, subtype="FACTOR",
                                  description="Flag keypoints seen by fewer than this share of the views: too "
                                              "rarely seen to be learned")
    views_total: IntProperty(name="Views Counted", default=0, min=0,
                             description="How many views the last Count Views counted")
    views_source: StringProperty(name="Counted Views", description="What the last Count Views counted")


_method_menu = [None, []]  # (worker's list, running) and its items: Blender needs the item strings kept alive


def _method_items(self, context):
    """The Method menu: the worker's methods (``methods.list``), marked when the worker is not running."""
    from .ops_worker import SUPERVISOR
    from .worker.methods import method_items

    key = (SUPERVISOR.methods, SUPERVISOR.conn is not None and SUPERVISOR.conn.ready)
    if _method_menu[0] is None or _method_menu[0][0] is not key[0] or _method_menu[0][1] != key[1]:
        _method_menu[:] = [key, method_items(*key)]
    return _method_menu[1]


class POSE_PG_estimate(bpy.types.PropertyGroup):
    photo: StringProperty(name="Photo", subtype="FILE_PATH", description="A photo, or a folder of photos")
    method: EnumProperty(name="Method", default=method_number("sift"), items=_method_items,
                         description="How the camera is estimated (the list comes from the worker)")
    database: StringProperty(name="Database", subtype="FILE_PATH", description="Feature database (.h5)")
    dataset: StringProperty(name="Dataset", subtype="DIR_PATH",
                            description="Rendered dataset (its database is built by the worker when needed)")
    checkpoint: StringProperty(name="Checkpoint", subtype="FILE_PATH", description="Regression checkpoint")
    model: StringProperty(name="Keypoint Model", subtype="FILE_PATH", description="YOLO pose weights (.pt)")
    intrinsics: EnumProperty(name="Intrinsics", default="exif", description="Where the photo's focal length comes from",
                             items=[
        ("exif", "EXIF", "Focal length from the photo's EXIF"),
        ("preset", "Camera Preset", "Focal length in mm on a named sensor"),
        ("calibration", "Calibration File", "OpenCV YAML/JSON or COLMAP cameras.txt, with distortion"),
        ("estimate", "Estimate", "Solve the focal length with the pose (matching methods; others use a guess)"),
        ("guess", "Guess", "A typical 60 degree field of view")])
    focal_mm: FloatProperty(name="Focal (mm)", default=35.0, min=0.1, subtype="DISTANCE_CAMERA", unit="CAMERA",
                            description="Focal length of the lens that took the photo")
    preset: EnumProperty(name="Sensor", default="full-frame", description="Sensor size of the camera", items=[
        (k, k, f"{k} sensor") for k in ("full-frame", "aps-c", "aps-c-canon", "micro-four-thirds", "1-inch",
                                        "phone-1/1.3", "phone-1/2.55")])
    calibration: StringProperty(name="Calibration", subtype="FILE_PATH",
                                description="Calibration file: OpenCV YAML/JSON or COLMAP cameras.txt")


class POSE_PG_model_item(bpy.types.PropertyGroup):
    """One entry of the worker's ``models.list``."""

    kind: StringProperty(name="Kind", description="dataset, database, regression or keypoints")
    path: StringProperty(name="Path", description="Where the model lies")
    scene: StringProperty(name="Scene", description="The scene it was built from")
    date: StringProperty(name="Date", description="When it was built")
    figures: StringProperty(name="Figures", description="JSON of the validation figures")


class POSE_PG_compare(bpy.types.PropertyGroup):
    truth_camera: PointerProperty(name="Truth Camera", type=bpy.types.Object,
                                  poll=lambda self, obj: obj.type == "CAMERA",
                                  description="Compare the estimates of one photo with this camera (photos are "
                                              "matched by file stem to the camera's photo or name)")
    dataset_dir: StringProperty(name="Truth Dataset", subtype="DIR_PATH",
                                description="Or: a dataset whose frames match the photos by file stem")
    csv_path: StringProperty(name="CSV", subtype="FILE_PATH", default="//estimates.csv",
                             description="Where Export CSV writes the table ('//' is next to the saved .blend)")


class POSE_PG_settings(bpy.types.PropertyGroup):
    sampling: PointerProperty(type=POSE_PG_sampling, name="Sampling", description="Camera sampling settings")
    render: PointerProperty(type=POSE_PG_render, name="Render", description="Dataset render settings")
    keypoints: PointerProperty(type=POSE_PG_keypoints, name="Keypoints", description="Keypoint list and settings")
    poses: CollectionProperty(type=POSE_PG_pose_item, name="Poses", description="Lightweight list of sampled poses")
    show_frustums: BoolProperty(name="Show Frustums", default=True,
                                description="Draw the lightweight pose list as frustums in the viewport")
    show_estimates: BoolProperty(name="Show Estimates Overlay", default=True,
                                 description="Frustums, error labels and reprojected points of estimated cameras")
    compare: PointerProperty(type=POSE_PG_compare, name="Compare", description="Ground truth to compare with")
    estimate: PointerProperty(type=POSE_PG_estimate, name="Estimate", description="Estimate Camera settings")
    models: CollectionProperty(type=POSE_PG_model_item, name="Models",
                               description="Datasets, databases and checkpoints the worker knows")
    models_index: IntProperty(default=0, name="Active Model", description="Index of the selected model")


class POSE_PG_runtime(bpy.types.PropertyGroup):
    """State of running work, on the window manager: shown in the panels, never saved into the .blend."""

    render_running: BoolProperty(name="Rendering", description="A dataset render is running")
    render_progress: FloatProperty(name="Render Progress", min=0, max=1, subtype="FACTOR",
                                   description="Share of the dataset's frames rendered")
    render_status: StringProperty(name="Render Status", description="Last message of the dataset render")
    estimate_progress: FloatProperty(name="Estimate Progress", min=0, max=1, subtype="FACTOR",
                                     description="Progress of the running estimate job")
    estimate_status: StringProperty(name="Estimate Status", description="Last message of the estimate job")
    models_job: StringProperty(name="Model Job", description="Id of the running model job")
    worker_state: StringProperty(name="Worker State", default="stopped",
                                 description="stopped, starting, ready, busy, stopping or error")
    worker_message: StringProperty(name="Worker Message", description="What the worker last said")


classes = (POSE_PG_sampling, POSE_PG_pose_item, POSE_PG_render, POSE_PG_keypoint, POSE_PG_keypoints,
           POSE_PG_estimate, POSE_PG_model_item, POSE_PG_compare, POSE_PG_settings, POSE_PG_runtime)


def register_properties() -> None:
    bpy.types.Scene.pose_tools = PointerProperty(type=POSE_PG_settings, name="Building Pose",
                                                 description="Building Pose settings of this scene")
    bpy.types.WindowManager.building_pose = PointerProperty(type=POSE_PG_runtime, name="Building Pose Runtime",
                                                            description="Running jobs (not saved)")


def unregister_properties() -> None:
    del bpy.types.WindowManager.building_pose
    del bpy.types.Scene.pose_tools


def runtime(context=None) -> POSE_PG_runtime:
    """The runtime state (window manager)."""
    return (context or bpy.context).window_manager.building_pose


def model_bounds(context) -> tuple:
    """World bounding box ``(min [3], max [3])`` of the target meshes (selected ones, else all visible)."""
    from .scene_utils import target_objects, world_bounds

    objs = target_objects(context)
    if not objs:
        raise ValueError("No mesh in the scene: add or select a building mesh")
    boxes = world_bounds(objs)
    return np.asarray(boxes[:, 0].min(0)), np.asarray(boxes[:, 1].max(0))
