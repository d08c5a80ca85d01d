"""The dataset schema shared by the renderer (Blender side) and every method (worker side).

Layout of a dataset folder::

    DATASET/
      manifest.json          # this module's schema, written atomically after every frame
      images/<split>_<n>.png # 8-bit RGB, view transform applied
      depth/<split>_<n>.npz  # key "depth": float32 [H, W], planar Z (along the optical axis) in metres, 0 = no surface
      normals/<split>_<n>.npz # optional: key "normals", float16 [H, W, 3], world-space unit normals (pixel-filtered)
      masks/<split>_<n>.npz  # optional: key "mask", uint16 [H, W], object ids of scene["instances"], 0 = none
      scene.glb              # the building with baked textures, Blender world frame (Z up) -- see scene["gltf"]
      keypoints.json         # optional semantic keypoints (see :func:`save_keypoints`)

Every frame stores ``intrinsics`` (OpenCV pixel convention) and ``cam_from_world`` (4x4, OpenCV camera axes,
world = Blender world, Z up, metres). ``scene["model_from_world"]`` (when present) is the 4x4 transform from that
render world back to the model file's own frame (the inverse of the scale, centring and up-axis change applied on
import), so poses can be exported in the model's frame.

**Identity.** :meth:`Dataset.digest` hashes the manifest's scene and render entries and, per frame, its manifest
entry and the size and modification time of its files. Everything derived from a dataset (feature databases,
global indexes, training sets, trained models) records the digest of the frames it was built from and is rebuilt
or refused when the dataset no longer matches.

**References.** :meth:`Dataset.reference_splits` says which splits serve as references: the manifest's
``reference_splits`` when set, else ``reference`` when that split exists, else every split except ``query``
(a dataset rendered with train/val/test splits uses all of them). Files appear only complete (written to a
temporary name, then renamed), so an interrupted render leaves no half-written frame and a rerun renders only what
is missing.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .cameras import Intrinsics, blender_matrix_world_from_cam_from_world, opencv_to_colmap_principal_point
from .poses import matrix_to_quat

__all__ = [
    "FORMAT", "VERSION", "CONVENTIONS", "DatasetError", "Frame", "Dataset", "Keypoint",
    "atomic_write_bytes", "atomic_write_json", "QUERY_SPLIT", "json_safe", "write_array", "write_depth", "read_depth",
    "save_keypoints", "load_keypoints", "export_colmap", "export_nerfstudio", "write_colmap", "write_nerfstudio",
]

FORMAT = "pose-dataset"
VERSION = 1
MANIFEST = "manifest.json"
CONVENTIONS = {
    "world": "Blender world frame, Z up, metres",
    "pose": "cam_from_world, 4x4, OpenCV camera axes (+X right, +Y down, +Z forward)",
    "pixels": "OpenCV: centre of the top-left pixel at (0, 0)",
    "depth": "npz key 'depth', float32 [H, W], planar Z along the optical axis in metres, 0 = no surface",
    "quaternion": "(w, x, y, z)",
}


QUERY_SPLIT = "query"  # the split of held-out views a benchmark localizes; never a reference by default


#: The largest manifest.json read (parsed JSON takes several times its size in memory).
MAX_MANIFEST_BYTES = 64 * 2**20


class DatasetError(RuntimeError):
    """A dataset folder is missing, malformed or inconsistent (message says what and where)."""


# ----------------------------------------------------------------------------------------------- atomic I/O
def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def json_safe(obj: Any) -> Any:
    """Recursively convert numpy types to Python and non-finite floats to ``None`` (JSON has no Infinity)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def atomic_write_json(path: Path | str, obj: Any, indent: int = 1) -> None:
    """Write ``obj`` as strict JSON (inf/nan become null), atomically."""
    text = json.dumps(json_safe(obj), indent=indent, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode("utf-8"))


def write_array(path: Path | str, key: str, array: np.ndarray) -> None:
    """Store one array as compressed npz under ``key``, atomically (normals, masks)."""
    import io

    buf = io.BytesIO()
    arrays: dict[str, Any] = {key: np.asarray(array)}
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def write_depth(path: Path | str, depth: np.ndarray) -> None:
    """Store planar depth ``[H, W]`` (metres, 0 = no surface) as compressed npz, atomically."""
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 2:
        raise ValueError(f"depth must be [H, W], got shape {depth.shape}")
    write_array(path, "depth", depth)


def read_depth(path: Path | str) -> np.ndarray:
    """Read a depth map written by :func:`write_depth`: float32 ``[H, W]``, metres, 0 = no surface."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"depth file not found: {path}")
    try:
        with np.load(path) as f:
            return f["depth"].astype(np.float32)
    except Exception as e:  # zip errors, missing key, truncated file
        raise DatasetError(f"unreadable depth file {path}: {e}") from e


# ----------------------------------------------------------------------------------------------- frames
@dataclass
class Frame:
    """One rendered view. ``image`` and ``depth`` are paths relative to the dataset root."""

    id: str
    split: str
    image: str
    depth: Optional[str]
    intrinsics: Intrinsics
    cam_from_world: np.ndarray
    extras: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {"id": self.id, "split": self.split, "image": self.image, "depth": self.depth,
             "intrinsics": self.intrinsics.to_dict(), "cam_from_world": np.asarray(self.cam_from_world).tolist()}
        d.update(self.extras)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Frame:
        known = {"id", "split", "image", "depth", "intrinsics", "cam_from_world"}
        missing = known - set(d)
        if missing:
            raise DatasetError(f"frame {d.get('id', '?')} lacks {sorted(missing)}")
        T = np.asarray(d["cam_from_world"], dtype=np.float64)
        if T.shape != (4, 4):
            raise DatasetError(f"frame {d['id']}: cam_from_world must be 4x4, got {T.shape}")
        return cls(d["id"], d["split"], d["image"], d["depth"], Intrinsics.from_dict(d["intrinsics"]), T,
                   {k: v for k, v in d.items() if k not in known})


def _validate_frames(manifest_path: Path, ds: Dataset) -> None:
    """Refuse a manifest whose frames cannot be trusted; the message names the manifest, the frame and the field.

    Checks: ids are unique non-empty strings; ``cam_from_world`` is finite with a rotation block that is a
    rotation (orthonormal, det +1, to 1e-3) and last row ``[0, 0, 0, 1]``; sizes and focal lengths are positive
    and every intrinsic finite; image/depth paths are relative and stay inside the dataset folder.
    """
    root = ds.root.resolve()
    seen: set = set()
    for i, f in enumerate(ds.frames):
        where = f"{manifest_path}: frame {i} ({f.id!r})"
        if not isinstance(f.id, str) or not f.id:
            raise DatasetError(f"{where}: 'id' must be a non-empty string")
        if f.id in seen:
            raise DatasetError(f"{where}: duplicate frame id")
        seen.add(f.id)
        T = f.cam_from_world
        if not np.isfinite(T).all():
            raise DatasetError(f"{where}: cam_from_world holds NaN or infinite values")
        R = T[:3, :3]
        if not np.allclose(T[3], [0, 0, 0, 1]) or not np.allclose(R @ R.T, np.eye(3), atol=1e-3) \
                or np.linalg.det(R) < 0:
            raise DatasetError(f"{where}: cam_from_world is not a rigid transform (rotation block not orthonormal "
                               "with det +1, or last row not [0, 0, 0, 1])")
        K = f.intrinsics
        vals = {"width": K.width, "height": K.height, "fx": K.fx, "fy": K.fy, "cx": K.cx, "cy": K.cy}
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in vals.values()):
            raise DatasetError(f"{where}: intrinsics must be finite numbers, got {vals}")
        bad = [k for k in ("width", "height", "fx", "fy") if not vals[k] > 0]
        if bad:
            raise DatasetError(f"{where}: intrinsics {', '.join(f'{k}={vals[k]}' for k in bad)} must be positive")
        for field_name in ("image", "depth"):
            rel = getattr(f, field_name)
            if rel is None and field_name == "depth":
                continue
            norm = os.path.normpath(rel) if isinstance(rel, str) and rel else ""
            if not norm or os.path.isabs(norm) or norm == ".." or norm.startswith(".." + os.sep) or "\0" in norm:
                raise DatasetError(f"{where}: '{field_name}' path {rel!r} must be relative and stay inside {root}")


class Dataset:
    """A dataset folder: its manifest and typed access to its frames."""

    def __init__(self, root: Path | str, manifest: dict):
        self.root = Path(root)
        self.manifest = manifest
        self.frames = [Frame.from_dict(f) for f in manifest.get("frames", [])]

    # -- construction
    @classmethod
    def create(cls, root: Path | str, scene: dict, render: dict, planned: dict) -> Dataset:
        """An empty dataset object (nothing written until :meth:`save`)."""
        manifest = {"format": FORMAT, "version": VERSION, "conventions": CONVENTIONS, "scene": scene,
                    "render": render, "planned": planned, "complete": False, "frames": []}
        return cls(root, manifest)

    @classmethod
    def load(cls, root: Path | str) -> Dataset:
        """Read ``root/manifest.json``; raises :class:`DatasetError` with the reason if it is unusable."""
        root = Path(root)
        path = root / MANIFEST
        if not path.is_file():
            raise DatasetError(f"no dataset at {root}: {MANIFEST} not found")
        size = path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise DatasetError(f"{path} is {size / 2**20:.0f} MiB, over the {MAX_MANIFEST_BYTES // 2**20} MiB a "
                               "manifest may have (about 60000 frames): not a dataset manifest?")
        try:
            manifest = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as e:
            raise DatasetError(f"unreadable manifest {path}: {e}") from e
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise DatasetError(f"{path} is not a {FORMAT} manifest")
        if manifest.get("version", 0) > VERSION:
            raise DatasetError(f"{path} has version {manifest['version']}; this code reads up to {VERSION}")
        if not isinstance(manifest.get("frames", []), list):
            raise DatasetError(f"{path}: 'frames' must be a list")
        try:
            ds = cls(root, manifest)
        except DatasetError as e:
            raise DatasetError(f"{path}: {e}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise DatasetError(f"{path}: malformed frame entry ({type(e).__name__}: {e})") from None
        _validate_frames(path, ds)
        return ds

    def save(self) -> None:
        """Write the manifest atomically (frames as currently held)."""
        self.manifest["frames"] = [f.to_dict() for f in self.frames]
        atomic_write_json(self.root / MANIFEST, self.manifest)

    # -- access
    @property
    def scene(self) -> dict:
        return self.manifest.get("scene", {})

    @property
    def complete(self) -> bool:
        return bool(self.manifest.get("complete"))

    def split(self, name: str) -> list[Frame]:
        return [f for f in self.frames if f.split == name]

    def splits(self) -> list[str]:
        return sorted({f.split for f in self.frames})

    def reference_splits(self, requested: Optional[Iterable[str]] = None) -> list[str]:
        """Splits whose frames serve as references: ``requested`` (checked), else the manifest's
        ``reference_splits``, else ``["reference"]`` when present, else every split but ``query``.

        Raises:
            DatasetError: a requested split is empty or the dataset has no usable frames.
        """
        have = self.splits()
        if requested is not None:
            if isinstance(requested, str):
                requested = [s for s in requested.split(",") if s.strip()]
            wanted = [str(s).strip() for s in requested]
            missing = [s for s in wanted if s not in have]
            if missing or not wanted:
                raise DatasetError(f"dataset {self.root} has no frames in split(s) {missing or wanted} "
                                   f"(splits: {', '.join(have) or 'none'})")
            return wanted
        declared = self.manifest.get("reference_splits")
        if declared:
            return self.reference_splits(declared)
        if "reference" in have:
            return ["reference"]
        out = [s for s in have if s != QUERY_SPLIT]
        if not out:
            raise DatasetError(f"dataset {self.root} has no reference frames (splits: {', '.join(have) or 'none'})")
        return out

    def reference_frames(self, requested: Optional[Iterable[str]] = None) -> list[Frame]:
        """The frames of :meth:`reference_splits`, in manifest order."""
        splits = set(self.reference_splits(requested))
        return [f for f in self.frames if f.split in splits]

    def digest(self, frames: Optional[Iterable[Frame]] = None) -> str:
        """Identity of the dataset (or of ``frames`` of it): 16 hex digits over the manifest's scene and render
        entries and, per frame, its manifest entry and the size and mtime of its image and depth files."""
        import hashlib

        h = hashlib.sha256()
        head = {"scene": self.manifest.get("scene", {}), "render": self.manifest.get("render", {})}
        h.update(json.dumps(json_safe(head), sort_keys=True).encode())
        for f in (self.frames if frames is None else frames):
            stats = []
            for rel in (f.image, f.depth):
                if rel:
                    try:
                        st = os.stat(self.root / rel)
                        stats.append([rel, st.st_size, st.st_mtime_ns])
                    except OSError:
                        stats.append([rel, None, None])
            h.update(json.dumps(json_safe([f.to_dict(), stats]), sort_keys=True).encode())
        return h.hexdigest()[:16]

    def frame(self, frame_id: str) -> Frame:
        for f in self.frames:
            if f.id == frame_id:
                return f
        raise DatasetError(f"no frame {frame_id!r} in {self.root}")

    def path(self, rel: str) -> Path:
        return self.root / rel

    def read_depth(self, frame: Frame) -> np.ndarray:
        if not frame.depth:
            raise DatasetError(f"frame {frame.id} has no depth")
        return read_depth(self.root / frame.depth)

    def add_frame(self, frame: Frame) -> None:
        """Add or replace a frame (by id)."""
        self.frames = [f for f in self.frames if f.id != frame.id] + [frame]

    def has_frame_files(self, frame_id: str) -> bool:
        """True if the frame is in the manifest and all its files exist (it needs no re-render)."""
        for f in self.frames:
            if f.id == frame_id:
                files = [f.image] + ([f.depth] if f.depth else [])
                return all((self.root / p).is_file() for p in files)
        return False


# ----------------------------------------------------------------------------------------------- keypoints
@dataclass
class Keypoint:
    """A named semantic 3D keypoint: ``position`` in world coordinates (metres); optionally the object it was
    placed on and its coordinates in that object's local frame (so it follows the object when it moves)."""

    name: str
    position: tuple
    object: Optional[str] = None
    local: Optional[tuple] = None


def save_keypoints(path: Path | str, keypoints: Iterable[Keypoint], scene: str = "") -> None:
    """Write ``{"version": 1, "scene": ..., "keypoints": [{"name", "position": [x, y, z], "object"?, "local"?}]}``
    atomically (``position`` world, ``local`` in the named object's frame)."""
    kps = list(keypoints)
    names = [k.name for k in kps]
    if len(set(names)) != len(names):
        raise ValueError("keypoint names must be unique")
    atomic_write_json(path, {"version": 1, "scene": scene, "frame": "world (Blender, Z up, metres)",
                             "keypoints": [_keypoint_dict(k) for k in kps]})


def _keypoint_dict(k: Keypoint) -> dict:
    d: dict[str, Any] = {"name": k.name, "position": [float(x) for x in k.position]}
    if k.object is not None:
        d["object"] = k.object
        d["local"] = [float(x) for x in k.local] if k.local is not None else None
    return d


def load_keypoints(path: Path | str) -> list[Keypoint]:
    """Read a keypoint JSON written by :func:`save_keypoints`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text("utf-8"))
        return [Keypoint(str(k["name"]), tuple(float(x) for x in k["position"]), k.get("object"),
                         tuple(float(x) for x in k["local"]) if k.get("local") is not None else None)
                for k in data["keypoints"]]
    except FileNotFoundError:
        raise DatasetError(f"keypoint file not found: {path}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise DatasetError(f"malformed keypoint file {path}: {e}") from e


# ----------------------------------------------------------------------------------------------- exports
def export_colmap(ds: Dataset, out_dir: Path | str, split: Optional[str] = None) -> Path:
    """Write a COLMAP text model (cameras.txt, images.txt, empty points3D.txt) of ``ds`` (or one split)."""
    return write_colmap(ds.frames if split is None else ds.split(split), out_dir)


def _opencv_dist4(dist: tuple) -> Optional[list[float]]:
    """``[k1, k2, p1, p2]`` of OpenCV coefficients, or None when there is no distortion."""
    d = [float(x) for x in dist][:4]
    if not any(abs(x) > 0 for x in d):
        return None
    return d + [0.0] * (4 - len(d))


def _colmap_model(dist: tuple) -> tuple[str, str]:
    """COLMAP camera model and its parameters after ``fx fy cx cy``: PINHOLE, or OPENCV with k1 k2 p1 p2."""
    d = _opencv_dist4(dist)
    return ("PINHOLE", "") if d is None else ("OPENCV", "".join(f" {x!r}" for x in d))


def write_colmap(frames: Iterable[Frame], out_dir: Path | str) -> Path:
    """A COLMAP text model of ``frames`` (image names: each frame's ``image``), with an empty points3D.txt.

    COLMAP's principal point is OpenCV's + 0.5 (pixel centres at x + 0.5); its qvec is (w, x, y, z) of
    ``cam_from_world`` and tvec its translation, which is exactly our stored pose.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cams: dict[tuple, int] = {}
    cam_lines, img_lines = [], []
    for i, f in enumerate(frames, start=1):
        k = f.intrinsics
        key = (k.width, k.height, round(k.fx, 6), round(k.fy, 6), round(k.cx, 6), round(k.cy, 6), tuple(k.dist))
        if key not in cams:
            cams[key] = len(cams) + 1
            cx, cy = opencv_to_colmap_principal_point(k.cx, k.cy)
            model, extra = _colmap_model(k.dist)
            cam_lines.append(f"{cams[key]} {model} {k.width} {k.height} {k.fx!r} {k.fy!r} {cx!r} {cy!r}{extra}")
        q = matrix_to_quat(f.cam_from_world[:3, :3])
        t = f.cam_from_world[:3, 3]
        img_lines.append(f"{i} {' '.join(repr(float(x)) for x in q)} {' '.join(repr(float(x)) for x in t)} "
                         f"{cams[key]} {f.image}")
        img_lines.append("")
    atomic_write_bytes(out / "cameras.txt", ("# Camera list: CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n"
                                             + "\n".join(cam_lines) + "\n").encode())
    atomic_write_bytes(out / "images.txt", ("# IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n"
                                            "# POINTS2D[] as (X, Y, POINT3D_ID)\n"
                                            + "\n".join(img_lines) + "\n").encode())
    atomic_write_bytes(out / "points3D.txt", b"# 3D point list (empty: poses only)\n")
    return out


#: nerfstudio reads a ``.npy`` depth and multiplies it by its ``depth_unit_scale_factor`` (default 1e-3)
NERFSTUDIO_DEPTH_DIR = "depth_mm"


def export_nerfstudio(ds: Dataset, out_path: Path | str, split: Optional[str] = None) -> Path:
    """Write a nerfstudio ``transforms.json`` of ``ds`` (or one split), with ``depth_file_path`` for frames that
    have depth (see :func:`write_nerfstudio`)."""
    return write_nerfstudio(ds.frames if split is None else ds.split(split), out_path, ds.root,
                            extra={"building_pose_dataset": ds.manifest.get("render", {}).get("digest")})


def write_nerfstudio(frames: Iterable[Frame], out_path: Path | str, root: Path | str, extra: Optional[dict] = None
                     ) -> Path:
    """A nerfstudio ``transforms.json``: ``transform_matrix`` is world_from_cam in OpenGL/Blender axes.

    ``file_path`` points at each frame's image under ``root`` (relative to the JSON when it is a relative path).
    A frame with depth gets ``depth_file_path``: its depth as float32 millimetres in
    ``<json folder>/depth_mm/<frame id, / as _>.npy`` (nerfstudio's default ``depth_unit_scale_factor`` of 1e-3 turns it
    into metres; 0 = no surface). nerfstudio samples pixel centres at +0.5, so its ``cx, cy`` are OpenCV's + 0.5.
    """
    import io

    out_path = Path(out_path)
    root = Path(root)
    items = []
    for f in frames:
        k = f.intrinsics
        cx, cy = opencv_to_colmap_principal_point(k.cx, k.cy)
        image = Path(f.image)
        file_path = str(image) if image.is_absolute() else os.path.relpath(root / image, out_path.parent)
        item = {"file_path": file_path, "transform_matrix":
                blender_matrix_world_from_cam_from_world(f.cam_from_world).tolist(),
                "fl_x": k.fx, "fl_y": k.fy, "cx": cx, "cy": cy, "w": k.width, "h": k.height}
        d = _opencv_dist4(k.dist)
        if d is not None:
            item.update(zip(("k1", "k2", "p1", "p2"), d))
        if f.depth:
            buf = io.BytesIO()
            np.save(buf, (read_depth(root / f.depth) * 1000.0).astype(np.float32))
            rel = f"{NERFSTUDIO_DEPTH_DIR}/{f.id.replace('/', '_')}.npy"
            atomic_write_bytes(out_path.parent / rel, buf.getvalue())
            item["depth_file_path"] = rel
        items.append(item)
    doc: dict[str, Any] = {"camera_model": "OPENCV", "frames": items}
    if any("depth_file_path" in it for it in items):
        doc["depth_unit_scale_factor"] = 1e-3
    doc.update({k: v for k, v in (extra or {}).items() if v is not None})
    atomic_write_json(out_path, doc)
    return out_path
