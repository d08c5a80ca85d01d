"""Scene settings: one PropertyGroup per panel, gathered under ``Scene.pose_tools``."""
import bpy
from bpy.props import (BoolProperty, CollectionProperty, EnumProperty, FloatProperty, FloatVectorProperty,
                       IntProperty, PointerProperty, StringProperty)

from .core.render_config import LightingConfig, RenderConfig, RenderGroup
from .core.sampling import SamplerConfig


class POSE_PG_sampling(bpy.types.PropertyGroup):
    layout: EnumProperty(name="Layout", default="fibonacci", items=[
        ("fibonacci", "Fibonacci", "Even spiral over the band of the sphere"),
        ("rings", "Rings", "Elevation rings with evenly spaced azimuths"),
        ("random", "Random", "Uniform over the band's area")])
    shape: EnumProperty(name="Shell", default="HEMISPHERE", items=[
        ("HEMISPHERE", "Hemisphere", "Elevations from the elevation range, above the horizon"),
        ("SHELL", "Full Shell", "Any elevation from -90 to 90 degrees")])
    count: IntProperty(name="Cameras", default=50, min=1, max=100000)
    distance_min: FloatProperty(name="Min Distance", default=25.0, min=0.01, unit="LENGTH")
    distance_max: FloatProperty(name="Max Distance", default=40.0, min=0.01, unit="LENGTH")
    elevation_min: FloatProperty(name="Min Elevation", default=5.0, min=-90, max=90, description="Degrees")
    elevation_max: FloatProperty(name="Max Elevation", default=35.0, min=-90, max=90, description="Degrees")
    azimuth_min: FloatProperty(name="Min Azimuth", default=0.0, description="Degrees")
    azimuth_max: FloatProperty(name="Max Azimuth", default=360.0, description="Degrees")
    roll: FloatProperty(name="Roll", default=0.0, min=0, max=180, description="Maximum in-plane roll, degrees")
    jitter: FloatProperty(name="Look-at Jitter", default=0.0, min=0, unit="LENGTH")
    rings: IntProperty(name="Rings", default=3, min=1, max=50)
    min_coverage: FloatProperty(name="Min Coverage", default=0.05, min=0, max=1,
                                description="Reject cameras where the target covers less of the frame")
    seed: IntProperty(name="Seed", default=0, min=0)
    output: EnumProperty(name="Output", default="CAMERAS", items=[
        ("CAMERAS", "Camera Objects", "Camera objects in the 'Sampled Cameras' collection"),
        ("POSES", "Pose List", "A lightweight list of poses drawn as frustums")])

    def to_config(self) -> SamplerConfig:
        elev = (self.elevation_min, self.elevation_max) if self.shape == "HEMISPHERE" else (-90.0, 90.0)
        return SamplerConfig(n=self.count, layout=self.layout, distance=(self.distance_min, self.distance_max),
                             elevation_deg=elev, azimuth_deg=(self.azimuth_min, self.azimuth_max),
                             roll_deg=self.roll, jitter_m=self.jitter, rings=self.rings,
                             min_coverage=self.min_coverage, seed=self.seed)


class POSE_PG_pose_item(bpy.types.PropertyGroup):
    """One sampled pose of the lightweight list: ``cam_from_world`` row-major (OpenCV axes)."""

    cam_from_world: FloatVectorProperty(size=16)


class POSE_PG_render(bpy.types.PropertyGroup):
    output_dir: StringProperty(name="Output", subtype="DIR_PATH", default="//pose_dataset")
    width: IntProperty(name="Width", default=640, min=16, max=8192)
    height: IntProperty(name="Height", default=480, min=16, max=8192)
    lens: FloatProperty(name="Focal Length", default=30.0, min=1.0, description="Millimetres on a 36 mm sensor")
    engine: EnumProperty(name="Engine", default="CYCLES", items=[
        ("CYCLES", "Cycles", "Path tracing (CPU by default)"),
        ("BLENDER_EEVEE", "EEVEE", "Rasterized, slower headless"),
        ("BLENDER_WORKBENCH", "Workbench", "Fast, flat shading, no procedural textures")])
    samples: IntProperty(name="Samples", default=16, min=1, max=4096)
    depth: BoolProperty(name="Depth", default=True, description="Write planar depth in metres per frame")
    normals: BoolProperty(name="Normals", default=False, description="Write world-space normals per frame (Cycles)")
    masks: BoolProperty(name="Instance Masks", default=False,
                        description="Write per-object instance masks per frame (Cycles)")
    n_train: IntProperty(name="Train", default=100, min=0)
    n_val: IntProperty(name="Val", default=20, min=0)
    n_test: IntProperty(name="Test", default=20, min=0)
    sun_elevation_min: FloatProperty(name="Sun Elevation Min", default=35.0, min=0, max=90)
    sun_elevation_max: FloatProperty(name="Sun Elevation Max", default=60.0, min=0, max=90)
    sun_strength_min: FloatProperty(name="Sun Strength Min", default=3.0, min=0)
    sun_strength_max: FloatProperty(name="Sun Strength Max", default=4.0, min=0)
    world_strength_min: FloatProperty(name="Sky Strength Min", default=0.4, min=0)
    world_strength_max: FloatProperty(name="Sky Strength Max", default=0.6, min=0)
    world_color: FloatVectorProperty(name="Sky Colour", subtype="COLOR", default=(0.8, 0.85, 1.0), min=0, max=1)
    world_color_jitter: FloatProperty(name="Sky Colour Jitter", default=0.0, min=0, max=1,
                                      description="Scale each sky colour channel by up to this share per frame")
    hdri_dir: StringProperty(name="HDRI Folder", subtype="DIR_PATH",
                             description="Optional folder of .hdr/.exr maps: one random map per frame as the sky")
    noise: FloatProperty(name="Sensor Noise", default=0.0, min=0, max=50, description="Std in 8-bit levels")
    # modal progress, shown in the panel
    progress: FloatProperty(name="Progress", default=0.0, min=0, max=1, subtype="FACTOR")
    running: BoolProperty(default=False)
    status: StringProperty(default="")

    def to_config(self, sampling: POSE_PG_sampling) -> RenderConfig:
        light = LightingConfig(sun_elevation_deg=(self.sun_elevation_min, self.sun_elevation_max),
                               sun_strength=(self.sun_strength_min, self.sun_strength_max),
                               world_strength=(self.world_strength_min, self.world_strength_max),
                               world_color=tuple(self.world_color), world_color_jitter=self.world_color_jitter,
                               hdri_dir=bpy.path.abspath(self.hdri_dir) if self.hdri_dir else "")
        groups = []
        for i, (split, n) in enumerate((("train", self.n_train), ("val", self.n_val), ("test", self.n_test))):
            if n > 0:
                s = sampling.to_config()
                s.n, s.seed = n, sampling.seed + 1000 * i
                if split != "train":
                    s.layout = "random"  # held-out views fall between the training views
                groups.append(RenderGroup(split, s, light, self.noise))
        return RenderConfig(groups=groups, width=self.width, height=self.height, lens_mm=self.lens,
                            engine=self.engine, samples=self.samples, depth=self.depth, normals=self.normals,
                            masks=self.masks)


class POSE_PG_keypoint(bpy.types.PropertyGroup):
    """A list entry pointing at a keypoint empty; renaming the entry renames the empty."""

    def _rename(self, context):
        if self.empty and self.empty.name != self.name:
            self.empty.name = self.name
            self.name = self.empty.name  # Blender may add a suffix on clashes

    name: StringProperty(name="Name", update=_rename)
    empty: PointerProperty(type=bpy.types.Object)


class POSE_PG_keypoints(bpy.types.PropertyGroup):
    items: CollectionProperty(type=POSE_PG_keypoint)
    active_index: IntProperty(default=0)
    snap_to_vertex: BoolProperty(name="Snap to Vertex", default=False,
                                 description="Snap placed keypoints to the nearest vertex of the hit face")
    json_path: StringProperty(name="JSON", subtype="FILE_PATH", default="//keypoints.json")
    suggest_count: IntProperty(name="Count", default=16, min=4, max=200)


class POSE_PG_worker(bpy.types.PropertyGroup):
    state: StringProperty(default="stopped")
    message: StringProperty(default="")


class POSE_PG_estimate(bpy.types.PropertyGroup):
    photo: StringProperty(name="Photo", subtype="FILE_PATH", description="A photo, or a folder of photos")
    method: EnumProperty(name="Method", default="sift", items=[
        ("sift", "Matching: SIFT", "Retrieval + SIFT + PnP on rendered references with depth"),
        ("aliked+lightglue", "Matching: ALIKED+LightGlue", "Learned features and matcher"),
        ("xfeat+lighterglue", "Matching: XFeat+LighterGlue", "Fast learned features and matcher"),
        ("ensemble", "Matching: Ensemble", "Several matchers pooled"),
        ("regression", "Regression", "One forward pass of the pose network"),
        ("regression+refine", "Regression + Refine", "Regression, then render-and-compare refinement"),
        ("keypoints", "Keypoints", "YOLO pose keypoints + PnP"),
        ("retrieval_nn", "Nearest Reference", "The pose of the most similar rendered reference")])
    database: StringProperty(name="Database", subtype="FILE_PATH", description="Feature database (.h5)")
    dataset: StringProperty(name="Dataset", subtype="DIR_PATH",
                            description="Rendered dataset (its database is built by the worker when needed)")
    checkpoint: StringProperty(name="Checkpoint", subtype="FILE_PATH", description="Regression checkpoint")
    model: StringProperty(name="Keypoint Model", subtype="FILE_PATH", description="YOLO pose weights (.pt)")
    intrinsics: EnumProperty(name="Intrinsics", default="exif", items=[
        ("exif", "EXIF", "Focal length from the photo's EXIF"),
        ("preset", "Camera Preset", "Focal length in mm on a named sensor"),
        ("calibration", "Calibration File", "OpenCV YAML/JSON or COLMAP cameras.txt, with distortion"),
        ("estimate", "Estimate", "Solve the focal length with the pose (matching methods; others use a guess)"),
        ("guess", "Guess", "A typical 60 degree field of view")])
    focal_mm: FloatProperty(name="Focal (mm)", default=35.0, min=0.1)
    preset: EnumProperty(name="Sensor", default="full-frame", items=[
        (k, k, "") for k in ("full-frame", "aps-c", "aps-c-canon", "micro-four-thirds", "1-inch",
                             "phone-1/1.3", "phone-1/2.55")])
    calibration: StringProperty(name="Calibration", subtype="FILE_PATH")
    job_id: StringProperty(default="")
    progress: FloatProperty(default=0.0, min=0, max=1, subtype="FACTOR")
    status: StringProperty(default="")


class POSE_PG_model_item(bpy.types.PropertyGroup):
    """One entry of the worker's ``models.list``."""

    kind: StringProperty()
    path: StringProperty()
    scene: StringProperty()
    date: StringProperty()
    figures: StringProperty(description="JSON of the validation figures")


class POSE_PG_compare(bpy.types.PropertyGroup):
    truth_camera: PointerProperty(name="Truth Camera", type=bpy.types.Object,
                                  poll=lambda self, obj: obj.type == "CAMERA",
                                  description="Compare every estimate with this camera")
    dataset_dir: StringProperty(name="Truth Dataset", subtype="DIR_PATH",
                                description="Or: a dataset whose frames match the photos by file name")
    csv_path: StringProperty(name="CSV", subtype="FILE_PATH", default="//estimates.csv")


class POSE_PG_settings(bpy.types.PropertyGroup):
    sampling: PointerProperty(type=POSE_PG_sampling)
    render: PointerProperty(type=POSE_PG_render)
    keypoints: PointerProperty(type=POSE_PG_keypoints)
    worker: PointerProperty(type=POSE_PG_worker)
    poses: CollectionProperty(type=POSE_PG_pose_item)
    show_frustums: BoolProperty(name="Show Frustums", default=True)
    show_estimates: BoolProperty(name="Show Estimates Overlay", default=True,
                                 description="Frustums, error labels and reprojected points of estimated cameras")
    compare: PointerProperty(type=POSE_PG_compare)
    estimate: PointerProperty(type=POSE_PG_estimate)
    models: CollectionProperty(type=POSE_PG_model_item)
    models_index: IntProperty(default=0)
    models_job: StringProperty(default="")


classes = (POSE_PG_sampling, POSE_PG_pose_item, POSE_PG_render, POSE_PG_keypoint, POSE_PG_keypoints,
           POSE_PG_worker, POSE_PG_estimate, POSE_PG_model_item, POSE_PG_compare, POSE_PG_settings)


def register_properties() -> None:
    bpy.types.Scene.pose_tools = PointerProperty(type=POSE_PG_settings)


def unregister_properties() -> None:
    del bpy.types.Scene.pose_tools
