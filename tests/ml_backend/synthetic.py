"""A synthetic dataset without Blender: a textured box "building" on a textured ground, ray-cast exactly.

Each face is a rectangle ``origin + a * s + b * t`` (``s in [0, len_a]``, ``t in [0, len_b]`` metres) with its own
random high-contrast texture. For every pixel centre (OpenCV convention) the nearest face hit gives the planar
depth exactly (the ray ``R^T [(u - cx) / fx, (v - cy) / fy, 1]`` has unit Z in camera axes, so the ray parameter
*is* the planar depth) and the colour by bilinear texture lookup (``cv2.remap``). Written with the core
:class:`~pose_addon.core.dataset.Dataset` writer in the schema the Blender side produces.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pose_addon.core.cameras import Intrinsics, camera_center
from pose_addon.core.dataset import Dataset, Frame, atomic_write_bytes, write_depth
from pose_addon.core.render_config import RenderConfig
from pose_addon.core.sampling import SamplerConfig, aabb_inside_fn, sample_cameras

PX_PER_M = 24.0
BOX_MIN = np.array([-5.0, -4.0, 0.0])
BOX_MAX = np.array([5.0, 4.0, 6.0])
GROUND = 18.0  # half size of the ground square


@dataclass
class Face:
    origin: np.ndarray
    a: np.ndarray  # unit vector along s
    b: np.ndarray  # unit vector along t
    len_a: float
    len_b: float
    texture: np.ndarray  # [Hb, Wa] float32 grey 0..1; texel (i, j) centred at s = (j + 0.5) / PX_PER_M

    @property
    def normal(self) -> np.ndarray:
        n = np.cross(self.a, self.b)
        return n / np.linalg.norm(n)


def _texture(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Multi-scale blob noise, contrast-stretched to 0..1 (features at 0.1-1 m)."""
    tex = np.zeros((h, w), np.float32)
    for sigma, weight in ((1.5, 0.6), (4.0, 1.0), (10.0, 0.8)):
        n = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), sigma)
        tex += weight * n / (n.std() + 1e-6)
    tex = (tex - tex.mean()) / (tex.std() + 1e-6)
    return np.clip(0.5 + 0.22 * tex, 0.0, 1.0)


def make_faces(seed: int = 0) -> list[Face]:
    """Ground square, 4 walls and a flat roof, each with its own texture."""
    rng = np.random.default_rng(seed)
    x0, y0, z0 = BOX_MIN
    x1, y1, z1 = BOX_MAX
    ex, ey, ez = np.eye(3)
    specs = [
        (np.array([-GROUND, -GROUND, 0.0]), ex, ey, 2 * GROUND, 2 * GROUND, 10.0),  # ground, lower resolution
        (np.array([x0, y0, z0]), ex, ez, x1 - x0, z1 - z0, PX_PER_M),  # wall y = y0 (normal -y)
        (np.array([x1, y0, z0]), ey, ez, y1 - y0, z1 - z0, PX_PER_M),  # wall x = x1
        (np.array([x1, y1, z0]), -ex, ez, x1 - x0, z1 - z0, PX_PER_M),  # wall y = y1
        (np.array([x0, y1, z0]), -ey, ez, y1 - y0, z1 - z0, PX_PER_M),  # wall x = x0
        (np.array([x0, y0, z1]), ex, ey, x1 - x0, y1 - y0, PX_PER_M),  # roof
    ]
    faces = []
    for o, a, b, la, lb, ppm in specs:
        tex = _texture(rng, int(la * ppm), int(lb * ppm))
        faces.append(Face(o.astype(float), a.astype(float), b.astype(float), la, lb, tex))
    return faces


def render(faces: list[Face], intr: Intrinsics, cam_from_world: np.ndarray, gain: float = 1.0,
           offset: float = 0.0, noise_std: float = 0.0, rng: np.random.Generator | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast one view: RGB uint8 ``[H, W, 3]`` and planar depth float32 ``[H, W]`` (0 = no surface)."""
    h, w = intr.height, intr.width
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    rays_cam = np.stack([(u - intr.cx) / intr.fx, (v - intr.cy) / intr.fy, np.ones_like(u)], -1).reshape(-1, 3)
    R = cam_from_world[:3, :3]
    rays = rays_cam @ R  # world directions (R^T d), unit planar depth
    c = camera_center(cam_from_world)
    depth = np.full(h * w, np.inf)
    best = np.full(h * w, -1)
    coords = np.zeros((h * w, 2))
    for k, f in enumerate(faces):
        n = f.normal
        den = rays @ n
        with np.errstate(divide="ignore", invalid="ignore"):
            s = (f.origin - c) @ n / den
        p = c + rays * s[:, None]
        sa = (p - f.origin) @ f.a
        tb = (p - f.origin) @ f.b
        hit = np.isfinite(s) & (s > 1e-6) & (sa >= 0) & (sa <= f.len_a) & (tb >= 0) & (tb <= f.len_b) & (s < depth)
        depth[hit] = s[hit]
        best[hit] = k
        coords[hit] = np.stack([sa[hit], tb[hit]], 1)
    grey = np.full(h * w, 0.75, np.float32)  # sky
    sun = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    for k, f in enumerate(faces):
        m = best == k
        if not m.any():
            continue
        th, tw = f.texture.shape
        cnt = int(m.sum())
        pad = (-cnt) % 256  # cv2.remap wants maps below SHRT_MAX per side: lay them out 256 wide
        mx = np.pad(coords[m, 0] * tw / f.len_a - 0.5, (0, pad)).astype(np.float32).reshape(-1, 256)
        my = np.pad(coords[m, 1] * th / f.len_b - 0.5, (0, pad)).astype(np.float32).reshape(-1, 256)
        val = cv2.remap(f.texture, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT).reshape(-1)[:cnt]
        shade = 0.55 + 0.45 * max(0.0, float(f.normal @ sun))
        grey[m] = val * shade
    img = grey.reshape(h, w) * gain + offset
    img = img * 255.0
    if noise_std > 0:
        img = img + (rng or np.random.default_rng(0)).normal(0, noise_std, img.shape)
    img8 = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    depth = np.where(np.isfinite(depth), depth, 0.0).astype(np.float32).reshape(h, w)
    return np.repeat(img8[..., None], 3, axis=2), depth


def plane_of_point(faces: list[Face], p: np.ndarray, tol: float = 1e-6) -> float:
    """Distance from world point ``p [3]`` to the nearest face plane (metres)."""
    return min(abs(float((p - f.origin) @ f.normal)) for f in faces)


def build_dataset(root: Path, n_ref: int = 16, n_query: int = 4, width: int = 320, height: int = 240,
                  seed: int = 0) -> Dataset:
    """Render references (fibonacci) and queries (random, other lighting + noise) into ``root``."""
    root = Path(root)
    faces = make_faces(seed)
    cfg = RenderConfig(width=width, height=height)
    intr = cfg.intrinsics()
    target = (BOX_MIN + BOX_MAX) / 2
    corners = np.array([[x, y, z] for x in (BOX_MIN[0], BOX_MAX[0]) for y in (BOX_MIN[1], BOX_MAX[1])
                        for z in (BOX_MIN[2], BOX_MAX[2])])
    inside = aabb_inside_fn(np.stack([BOX_MIN, BOX_MAX])[None], margin=1.0)
    ref_cfg = SamplerConfig(n=n_ref, layout="fibonacci", distance=(16.0, 20.0), elevation_deg=(10.0, 35.0),
                            seed=seed)
    q_cfg = SamplerConfig(n=n_query, layout="random", distance=(16.0, 20.0), elevation_deg=(12.0, 33.0),
                          seed=seed + 101)
    ds = Dataset.create(root, scene={"name": "synthetic-box", "gltf_up": "Z"}, render=cfg.to_dict(),
                        planned={"reference": n_ref, "query": n_query})
    rng = np.random.default_rng(seed + 7)
    for split, scfg in (("reference", ref_cfg), ("query", q_cfg)):
        poses = sample_cameras(scfg, target, intr, target_points=corners, inside_fn=inside)
        for i, T in enumerate(poses):
            fid = f"{split}_{i:04d}"
            if split == "reference":
                img, depth = render(faces, intr, T)
            else:
                img, depth = render(faces, intr, T, gain=rng.uniform(0.8, 1.1), offset=rng.uniform(-0.05, 0.05),
                                    noise_std=3.0, rng=rng)
            ok, buf = cv2.imencode(".png", img)
            atomic_write_bytes(root / "images" / f"{fid}.png", buf.tobytes())
            write_depth(root / "depth" / f"{fid}.npz", depth)
            ds.add_frame(Frame(fid, split, f"images/{fid}.png", f"depth/{fid}.npz", intr, T))
    ds.manifest["complete"] = True
    ds.save()
    _write_glb(root / "scene.glb")
    return ds


def _write_glb(path: Path) -> None:
    import trimesh

    box = trimesh.creation.box(bounds=np.stack([BOX_MIN, BOX_MAX]))
    ground = trimesh.Trimesh(vertices=[[-GROUND, -GROUND, 0], [GROUND, -GROUND, 0], [GROUND, GROUND, 0],
                                       [-GROUND, GROUND, 0]], faces=[[0, 1, 2], [0, 2, 3]])
    scene = trimesh.Scene([box, ground])
    path.write_bytes(scene.export(file_type="glb"))
