"""Refinement by rendering at the estimate, one implementation for every method (``METHOD+refine``).

Given a query image, its intrinsics and an estimated ``cam_from_world`` (OpenCV axes), :class:`Refiner` runs

1. **features**: render the building (``scene.glb``, worker-side moderngl) at the estimate with the query's
   intrinsics, match the query's SIFT features against the render's, lift the render's keypoints through the
   rendered depth and re-solve PnP; repeat until the camera moves less than ``min_step_m`` / ``min_step_deg``.
   A render from (nearly) the query's own viewpoint differs from it only by material and light, so this
   recovers from estimates metres off when the model has texture.
2. **edges**: align the model's edges with the query's: the same sub-pixel Canny operator runs on the query and
   on a shaded render at the current estimate (base colour x Lambert term, so silhouettes, colour borders and
   creases show; bevels blur into one edge on both sides), the render's edge points are lifted through its depth
   (the nearer side at occlusion boundaries), each is associated to the nearest query edge of similar orientation
   and the point-to-line distances are minimised over the 6 pose parameters (Gauss-Newton with Huber weights);
   re-render, re-associate with a shrinking radius, repeat until the camera stops moving. This is what reaches
   centimetres on flat-coloured models, whose only features are silhouettes, creases and colour borders. Edges
   sampled from the mesh itself (``edges.model = "mesh"``: creases sharper than ``crease_deg`` and borders, hidden
   ones culled with the rendered depth) were measured worse on Kenney houses (median 6.0 cm against 3.7 cm from
   SIFT's poses on house e): their bevels give several parallel lines where a photo shows one edge.

The pose kept is the candidate (initial, after features, after edges) with the best **edge score**: the mean,
over the model's visible edge samples, of ``max(0, 1 - d / score_tau_px)`` where ``d`` is the point-to-line
distance to the nearest query edge of similar orientation. A stage's pose replaces the best so far only when it
raises this score by ``min_gain`` (0.02): the initial estimate wins ties and near-ties, so a refinement never
replaces a pose with one that explains fewer of the image's edges, and on textured models (where texture edges
lie near any model edge and the score barely moves) an accurate estimate is left alone.

Lens distortion: the query is undistorted (same K) before anything else; renders are pinhole.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import cv2
import numpy as np

from pose_addon.core.cameras import Intrinsics, camera_center
from pose_addon.core.poses import rotation_angle_deg

from .matching.extractors import sift
from .matching.extractors.base import to_gray
from .matching.lifting import lift_keypoints
from .matching.matchers.nn import match_descriptors
from .pnp import solve_pnp

__all__ = ["default_conf", "RefineResult", "ModelEdges", "ImageEdges", "Refiner", "undistort_image"]

default_conf: dict[str, Any] = {
    "stages": ["features", "edges"],  # run in this order, each from the best pose so far
    "features": {
        "max_iterations": 2,
        "min_step_m": 0.01,
        "min_step_deg": 0.05,
        "threshold_px": 2.5,  # PnP RANSAC threshold at 640 px width, scaled with the image
        "min_inliers": 20,
        "ratio": 0.85,
        "sift": {"max_keypoints": 1500},  # query and render features (the strongest; matching is quadratic)
        "lifting": {"max_curvature": 0.02},
    },
    "edges": {
        "model": "render",  # model edges: "render" (Canny of a shaded render, lifted by its depth) or "mesh"
        "crease_deg": 25.0,  # "mesh": dihedral angle above which a mesh edge is a crease
        "spacing_px": 2.0,  # model edge samples per projected pixel length
        "canny": (20, 50),  # hysteresis thresholds on the 8-bit query (after a Gaussian of sigma blur_px)
        "blur_px": 1.0,
        "radii_px": [10.0, 6.0, 4.0, 3.0, 2.0],  # association radius of the first rounds; later rounds keep the last
        "max_rounds": 14,
        "min_step_m": 0.003,  # stop once a round (at the last radius) moves the camera less than this
        "max_points": 2000,  # model edge points per render (evenly thinned beyond)
        "max_angle_deg": 25.0,  # model and image edge directions must agree to this
        "huber_px": 1.0,
        "min_points": 30,  # fewer associated model points = the round is skipped
        "rerender_every": 2,  # rounds between visibility renders
    },
    "score_tau_px": 2.0,
    "ambient": 0.5,  # renders: base colour x (ambient + (1 - ambient) |n . light_dir|), so creases show
    "light_dir": (0.3, -0.5, 0.8),
    "min_gain": 0.02,  # a stage's pose replaces the best so far only when it raises the edge score by this much
    "depth_tolerance": 0.01,  # relative: a model point is visible when no nearer surface covers it by more
}


@dataclass
class RefineResult:
    """``cam_from_world [4, 4]`` (OpenCV axes): the kept pose; ``stage`` names where it came from."""

    cam_from_world: np.ndarray
    refined: bool  # the kept pose is not the initial one
    stage: str  # "initial", "features" or "edges"
    score_initial: float
    score: float
    n_inliers: int  # PnP inliers of the feature stage (0 when it did not run or failed)
    time_s: float
    history: list = field(default_factory=list)
    message: str = ""


def undistort_image(img: np.ndarray, intrinsics: Intrinsics) -> tuple[np.ndarray, Intrinsics]:
    """The image as an ideal pinhole camera with the same K (``dist`` dropped); unchanged without distortion."""
    pin = Intrinsics(intrinsics.width, intrinsics.height, intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy)
    if not intrinsics.dist or not any(abs(d) > 0 for d in intrinsics.dist):
        return img, pin
    return cv2.undistort(img, intrinsics.K, np.asarray(intrinsics.dist, np.float64)), pin


def _project(Xw: np.ndarray, T: np.ndarray, intr: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    Xc = Xw @ T[:3, :3].T + T[:3, 3]
    z = Xc[:, 2]
    zs = np.where(z > 1e-6, z, 1e-6)
    uv = np.stack([intr.fx * Xc[:, 0] / zs + intr.cx, intr.fy * Xc[:, 1] / zs + intr.cy], 1)
    return uv, z


class ModelEdges:
    """The 3D edges of a mesh that show in images: creases, boundaries, borders between meshes (materials).

    Args:
        meshes: :class:`ml_backend.render.gl.MeshData` list (world coordinates).
        crease_deg: dihedral angle above which an edge between two faces is a crease.

    Attributes:
        a, b: ``[E, 3]`` world end points of each edge.
    """

    def __init__(self, meshes: list, crease_deg: float = 25.0):
        a, b = [], []
        cos_t = np.cos(np.radians(crease_deg))
        for m in meshes:
            v = np.asarray(m.vertices, np.float64)
            f = np.asarray(m.faces, np.int64)
            if len(f) == 0:
                continue
            span = float(np.ptp(v, 0).max()) or 1.0
            key = np.round(v / (span * 1e-6)).astype(np.int64)  # weld split vertices (per-face normals, UV seams)
            _, weld = np.unique(key, axis=0, return_inverse=True)
            weld = weld.reshape(-1)
            fw = weld[f]
            tri = v[f]
            n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
            area = np.linalg.norm(n, axis=1)
            good = area > 1e-12 * span * span
            fw, tri, n = fw[good], tri[good], n[good] / area[good, None]
            e = np.concatenate([fw[:, [0, 1]], fw[:, [1, 2]], fw[:, [2, 0]]])
            ep = np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]])  # [3F, 2, 3]
            fidx = np.tile(np.arange(len(fw)), 3)
            es = np.sort(e, 1)
            uniq, inv, counts = np.unique(es, axis=0, return_inverse=True, return_counts=True)
            inv = inv.reshape(-1)
            order = np.argsort(inv, kind="stable")  # occurrences grouped by edge
            starts = np.searchsorted(inv[order], np.arange(len(uniq)))
            first = order[starts]
            keep = counts != 2  # boundaries and non-manifold edges
            two = np.nonzero(counts == 2)[0]
            f1, f2 = fidx[order[starts[two]]], fidx[order[starts[two] + 1]]
            keep[two] = np.sum(n[f1] * n[f2], 1) < cos_t
            sel = first[keep]
            a.append(ep[sel, 0])
            b.append(ep[sel, 1])
        self.a = np.concatenate(a) if a else np.zeros((0, 3))
        self.b = np.concatenate(b) if b else np.zeros((0, 3))

    def __len__(self) -> int:
        return len(self.a)

    def samples(self, T: np.ndarray, intr: Intrinsics, spacing_px: float = 2.0,
                max_points: int = 20000) -> tuple[np.ndarray, np.ndarray]:
        """World points ``[N, 3]`` along the edges in front of camera ``T`` and their edge direction ``[N, 3]``,
        about one every ``spacing_px`` projected pixels (edges entirely outside the image are dropped)."""
        ua, za = _project(self.a, T, intr)
        ub, zb = _project(self.b, T, intr)
        front = (za > 0.05) & (zb > 0.05)
        W, H = intr.width, intr.height
        lo, hi = np.minimum(ua, ub), np.maximum(ua, ub)
        inside = (hi[:, 0] >= 0) & (lo[:, 0] <= W - 1) & (hi[:, 1] >= 0) & (lo[:, 1] <= H - 1)
        idx = np.nonzero(front & inside)[0]
        if len(idx) == 0:
            return np.zeros((0, 3)), np.zeros((0, 3))
        length = np.linalg.norm(ub[idx] - ua[idx], axis=1)
        k = np.clip(np.ceil(length / spacing_px).astype(np.int64), 1, 4000)
        total = int(k.sum())
        if total > max_points:
            k = np.maximum(1, (k * max_points / total).astype(np.int64))
        rep = np.repeat(idx, k)
        offs = np.concatenate([(np.arange(n) + 0.5) / n for n in k])
        P = self.a[rep] + offs[:, None] * (self.b[rep] - self.a[rep])
        d = self.b[rep] - self.a[rep]
        return P, d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)


class ImageEdges:
    """Sub-pixel Canny edges of an (undistorted) image with their unit gradient directions.

    Attributes:
        xy: ``[M, 2]`` edge positions (OpenCV pixels); normals: ``[M, 2]`` unit gradient directions.
    """

    def __init__(self, img: np.ndarray, canny: tuple = (20, 50), blur_px: float = 1.0):
        from scipy.spatial import cKDTree

        g = to_gray(img).astype(np.float32)
        if blur_px > 0:
            g = cv2.GaussianBlur(g, (0, 0), blur_px)
        g8 = np.clip(np.round(g), 0, 255).astype(np.uint8)
        e = cv2.Canny(g8, float(canny[0]), float(canny[1]), L2gradient=True)
        gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
        mag = np.hypot(gx, gy)
        ys, xs = np.nonzero(e)
        nx, ny = gx[ys, xs], gy[ys, xs]
        nn = np.maximum(np.hypot(nx, ny), 1e-6)
        nx, ny = nx / nn, ny / nn
        p = np.stack([xs, ys], 1).astype(np.float64)
        n = np.stack([nx, ny], 1).astype(np.float64)
        m0 = mag[ys, xs].astype(np.float64)
        mm = _bilinear(mag, p - n)
        mp = _bilinear(mag, p + n)
        den = mm - 2 * m0 + mp
        off = np.where(den < -1e-6, 0.5 * (mm - mp) / np.where(den < -1e-6, den, -1.0), 0.0)
        self.xy = p + np.clip(off, -0.5, 0.5)[:, None] * n
        self.normals = n
        self.tree = cKDTree(self.xy) if len(self.xy) else None

    def associate(self, uv: np.ndarray, model_normal: np.ndarray, radius: float, max_angle_deg: float,
                  k: int = 4) -> tuple[np.ndarray, np.ndarray]:
        """For each projected model point ``uv [N, 2]`` with edge normal ``model_normal [N, 2]`` (unit): the index
        of the nearest image edge within ``radius`` whose direction agrees to ``max_angle_deg`` (-1 if none) and
        the signed point-to-line distance to it (``inf`` if none)."""
        n = len(uv)
        out = np.full(n, -1, np.int64)
        dist = np.full(n, np.inf)
        if self.tree is None or n == 0:
            return out, dist
        kk = min(k, len(self.xy))
        d, j = self.tree.query(uv, k=kk, distance_upper_bound=radius)
        d, j = d.reshape(n, kk), j.reshape(n, kk)
        found = j < len(self.xy)
        jj = np.where(found, j, 0)
        cos = np.abs(np.einsum("nkc,nc->nk", self.normals[jj], model_normal))
        ok = found & (cos >= np.cos(np.radians(max_angle_deg)))
        first = np.where(ok.any(1), ok.argmax(1), -1)
        has = first >= 0
        sel = jj[np.arange(n), np.maximum(first, 0)]
        out[has] = sel[has]
        r = np.einsum("nc,nc->n", self.normals[sel], uv - self.xy[sel])
        dist[has] = r[has]
        return out, dist


def _bilinear(img: np.ndarray, xy: np.ndarray) -> np.ndarray:
    h, w = img.shape
    x = np.clip(xy[:, 0], 0, w - 1.001)
    y = np.clip(xy[:, 1], 0, h - 1.001)
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = x - x0, y - y0
    return (img[y0, x0] * (1 - fx) * (1 - fy) + img[y0, x0 + 1] * fx * (1 - fy) + img[y0 + 1, x0] * (1 - fx) * fy
            + img[y0 + 1, x0 + 1] * fx * fy)


def _irls(fun, jac, huber: float, iterations: int = 12) -> np.ndarray:
    """Minimise ``sum huber(fun(x))`` over ``x [6]`` from 0 by Gauss-Newton with iteratively reweighted least
    squares (Huber weights ``min(1, huber / |r|)``): the robust point-to-line problem in 6x6 normal equations,
    a hundred times faster than a trust-region solver's SVD of the ``[N, 6]`` Jacobian."""
    x = np.zeros(6)
    for _ in range(iterations):
        r = fun(x)
        J = jac(x)
        w = np.minimum(1.0, huber / np.maximum(np.abs(r), 1e-12))
        A = (J * w[:, None]).T @ J + 1e-9 * np.eye(6)
        dx = -np.linalg.solve(A, (J * w[:, None]).T @ r)
        x = x + dx
        if np.abs(dx[:3]).max() < 1e-7 and np.abs(dx[3:]).max() < 1e-5:
            break
    return x


def _rodrigues(w: np.ndarray) -> np.ndarray:
    return cv2.Rodrigues(np.asarray(w, np.float64).reshape(3, 1))[0]


def _apply(T: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Left-multiply ``T`` by a camera-frame increment ``x = (rotation vector, translation)``."""
    D = np.eye(4)
    D[:3, :3] = _rodrigues(x[:3])
    D[:3, 3] = x[3:]
    return D @ T


class Refiner:
    """Refines estimated poses of query images against renders of a building (see the module docstring).

    Args:
        scene: the building as glTF/GLB (a dataset's ``scene.glb``).
        conf: overrides of :data:`default_conf` (``features`` and ``edges`` merged key by key).

    Raises:
        ml_backend.render.RendererUnavailable: no OpenGL context here.
        FileNotFoundError: ``scene`` does not exist.
    """

    def __init__(self, scene: Path | str, conf: Optional[dict] = None):
        from .render import SceneRenderer, load_scene_meshes

        conf = conf or {}
        self.conf = {**default_conf, **conf}
        for k in ("features", "edges"):
            self.conf[k] = {**default_conf[k], **(conf.get(k) or {})}
        unknown = set(self.conf["stages"]) - {"features", "edges"}
        if unknown:
            raise ValueError(f"unknown refinement stages {sorted(unknown)}; choose from features, edges")
        self.edges = ModelEdges(load_scene_meshes(scene), float(self.conf["edges"]["crease_deg"]))
        self.renderer = SceneRenderer(scene, ambient=float(self.conf["ambient"]),
                                      light_dir=tuple(self.conf["light_dir"]))

    def close(self) -> None:
        self.renderer.release()

    def __enter__(self) -> Refiner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------- edges
    def _visible(self, T: np.ndarray, intr: Intrinsics, depth: Optional[np.ndarray] = None):
        """Visible edge samples at pose ``T``: world points ``[N, 3]`` and world directions ``[N, 3]``."""
        c = self.conf["edges"]
        if depth is None:
            _, depth = self.renderer.render(T, intr)
        P, D = self.edges.samples(T, intr, float(c["spacing_px"]))
        if len(P) == 0:
            return P, D
        uv, z = _project(P, T, intr)
        h, w = depth.shape
        xi, yi = np.rint(uv[:, 0]).astype(np.int64), np.rint(uv[:, 1]).astype(np.int64)
        inside = (xi >= 1) & (xi <= w - 2) & (yi >= 1) & (yi <= h - 2) & (z > 0)
        far = np.where(depth > 0, depth, np.inf)
        vis = np.zeros(len(P), bool)
        ii = np.nonzero(inside)[0]
        neigh = np.max([far[yi[ii] + dy, xi[ii] + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)
        vis[ii] = neigh >= z[ii] * (1 - float(self.conf["depth_tolerance"]))
        return P[vis], D[vis]

    @staticmethod
    def _normals2d(P: np.ndarray, D: np.ndarray, T: np.ndarray, intr: Intrinsics) -> np.ndarray:
        uv, _ = _project(P, T, intr)
        u2, _ = _project(P + D * 0.01, T, intr)
        d = u2 - uv
        d = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
        return np.stack([-d[:, 1], d[:, 0]], 1)

    def model_points(self, T: np.ndarray, intr: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
        """The model's edge points seen from ``T``: world points ``[N, 3]`` and their image edge normals ``[N, 2]``
        at ``T``. ``edges.model == "render"``: the sub-pixel Canny edges of a shaded render at ``T`` (the operator
        applied to the query), lifted through the render's depth (the nearer side at occlusion boundaries);
        ``"mesh"``: samples of the mesh's creases and borders that the rendered depth shows."""
        P, N2 = self._model_points(T, intr)
        m = int(self.conf["edges"]["max_points"])
        if len(P) > m:  # evenly thinned (edge points come in image order, so this keeps every edge)
            keep = np.linspace(0, len(P) - 1, m).astype(np.int64)
            P, N2 = P[keep], N2[keep]
        return P, N2

    def _model_points(self, T: np.ndarray, intr: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
        if self.conf["edges"]["model"] == "mesh":
            P, D = self._visible(T, intr)
            return P, self._normals2d(P, D, T, intr)
        c = self.conf["edges"]
        rgb, depth = self.renderer.render(T, intr)
        e = ImageEdges(rgb, tuple(c["canny"]), float(c["blur_px"]))
        if len(e.xy) == 0:
            return np.zeros((0, 3)), np.zeros((0, 2))
        h, w = depth.shape
        x0 = np.clip(np.floor(e.xy[:, 0]).astype(np.int64), 0, w - 2)
        y0 = np.clip(np.floor(e.xy[:, 1]).astype(np.int64), 0, h - 2)
        near = np.where(depth > 0, depth, np.inf)
        z = np.min([near[y0 + dy, x0 + dx] for dy in (0, 1) for dx in (0, 1)], axis=0)
        ok = np.isfinite(z)
        xy, z = e.xy[ok], z[ok]
        Xc = np.stack([(xy[:, 0] - intr.cx) / intr.fx * z, (xy[:, 1] - intr.cy) / intr.fy * z, z], 1)
        Tinv = np.linalg.inv(T)
        return Xc @ Tinv[:3, :3].T + Tinv[:3, 3], e.normals[ok]

    def edge_score(self, T: np.ndarray, intr: Intrinsics, img_edges: ImageEdges) -> tuple[float, int]:
        """Mean over the visible model edge samples of ``max(0, 1 - |d| / tau)`` (``d``: point-to-line distance to
        the nearest image edge of similar orientation within ``tau``) and the number of samples."""
        P, N2 = self.model_points(T, intr)
        if len(P) == 0:
            return 0.0, 0
        tau = float(self.conf["score_tau_px"])
        uv, _ = _project(P, T, intr)
        _, d = img_edges.associate(uv, N2, tau, float(self.conf["edges"]["max_angle_deg"]))
        return float(np.mean(np.clip(1 - np.abs(d) / tau, 0, 1))), len(P)

    def align_edges(self, T0: np.ndarray, intr: Intrinsics, img_edges: ImageEdges) -> tuple[np.ndarray, list]:
        """Edge alignment from ``T0``: rounds of association + robust point-to-line least squares."""
        c = self.conf["edges"]
        T = np.asarray(T0, np.float64).copy()
        hist = []
        P = N2 = None
        fx, fy = intr.fx, intr.fy
        radii = list(c["radii_px"])
        for rnd in range(max(int(c["max_rounds"]), len(radii))):
            radius = float(radii[min(rnd, len(radii) - 1)])
            if P is None or rnd % max(1, int(c["rerender_every"])) == 0:
                P, N2 = self.model_points(T, intr)
            if len(P) < int(c["min_points"]):
                hist.append({"round": rnd, "points": int(len(P)), "message": "too few visible model edges"})
                break
            uv, _ = _project(P, T, intr)
            j, _ = img_edges.associate(uv, N2, float(radius), float(c["max_angle_deg"]))
            has = j >= 0
            if has.sum() < int(c["min_points"]):
                hist.append({"round": rnd, "points": int(has.sum()), "message": "too few associations"})
                break
            Xc0 = P[has] @ T[:3, :3].T + T[:3, 3]
            q = img_edges.xy[j[has]]
            nq = img_edges.normals[j[has]]

            def fun(x, Xc0=Xc0, q=q, nq=nq):
                Xc = Xc0 @ _rodrigues(x[:3]).T + x[3:]
                z = Xc[:, 2]
                u = fx * Xc[:, 0] / z + intr.cx
                v = fy * Xc[:, 1] / z + intr.cy
                return nq[:, 0] * (u - q[:, 0]) + nq[:, 1] * (v - q[:, 1])

            def jac(x, Xc0=Xc0, nq=nq):
                Xc = Xc0 @ _rodrigues(x[:3]).T + x[3:]
                X, Y, Z = Xc[:, 0], Xc[:, 1], Xc[:, 2]
                du = np.stack([fx / Z, np.zeros_like(Z), -fx * X / Z ** 2], 1)
                dv = np.stack([np.zeros_like(Z), fy / Z, -fy * Y / Z ** 2], 1)
                dr = nq[:, :1] * du + nq[:, 1:] * dv  # d residual / d Xc  [N, 3]
                # d Xc / d w (small rotation about the current Xc) = -[Xc]x
                dw = np.stack([dr[:, 1] * -Z + dr[:, 2] * Y, dr[:, 0] * Z + dr[:, 2] * -X,
                               dr[:, 0] * -Y + dr[:, 1] * X], 1)
                return np.concatenate([dw, dr], 1)

            x = _irls(fun, jac, float(c["huber_px"]))
            Tn = _apply(T, x)
            step_m = float(np.linalg.norm(camera_center(Tn) - camera_center(T)))
            hist.append({"round": rnd, "radius_px": float(radius), "points": int(has.sum()),
                         "rms_px": float(np.sqrt(np.mean(np.minimum(fun(x) ** 2, radius ** 2)))),
                         "step_m": step_m})
            T = Tn
            if rnd >= len(radii) - 1 and step_m < float(c["min_step_m"]):
                break
        return T, hist

    # ------------------------------------------------------------------------------------------- features
    def align_features(self, T0: np.ndarray, intr: Intrinsics, query_feats) -> tuple[Optional[np.ndarray], int,
                                                                                       list, str]:
        """Render-match-lift-PnP iterations from ``T0``; (pose or None, inliers, history, message)."""
        c = self.conf["features"]
        T = np.asarray(T0, np.float64)
        thr = float(c["threshold_px"]) * max(intr.width, intr.height) / 640.0
        hist, ok, n_inl, msg = [], False, 0, ""
        for it in range(int(c["max_iterations"])):
            rgb, depth = self.renderer.render(T, intr)
            rf = sift.extract(rgb, c["sift"])
            m = match_descriptors(query_feats.descriptors, rf.descriptors, {"ratio": c["ratio"]})
            if len(m) < 4:
                msg = f"iteration {it}: {len(m)} matches"
                break
            p3, valid = lift_keypoints(rf.keypoints[m[:, 1]], depth, intr, T, c["lifting"])
            res = solve_pnp(query_feats.keypoints[m[:, 0]][valid], p3[valid], intr, thr, "poselib")
            if not res.success or res.n_inliers < int(c["min_inliers"]):
                msg = f"iteration {it}: {res.n_inliers} inliers ({res.message})"
                break
            dt = float(np.linalg.norm(camera_center(res.cam_from_world) - camera_center(T)))
            dr = rotation_angle_deg(res.cam_from_world[:3, :3], T[:3, :3])
            T, ok, n_inl = res.cam_from_world, True, int(res.n_inliers)
            hist.append({"iteration": it, "n_matches": int(len(m)), "n_inliers": n_inl, "step_m": dt,
                         "step_deg": dr})
            if dt < c["min_step_m"] and dr < c["min_step_deg"]:
                break
        return (T if ok else None), n_inl, hist, msg

    # ------------------------------------------------------------------------------------------- both
    def refine(self, image: np.ndarray, intrinsics: Intrinsics, cam_from_world: np.ndarray) -> RefineResult:
        """Refine ``cam_from_world [4, 4]`` (OpenCV axes) of ``image`` (``[H, W(, 3)]`` uint8, as taken: it is
        undistorted here with ``intrinsics.dist``)."""
        t0 = time.perf_counter()
        img = np.asarray(image)
        if img.shape[:2] != (intrinsics.height, intrinsics.width):
            raise ValueError(f"image is {img.shape[1]}x{img.shape[0]} but the intrinsics are for "
                             f"{intrinsics.width}x{intrinsics.height}")
        img, intr = undistort_image(img, intrinsics)
        ce = self.conf["edges"]
        edges = ImageEdges(img, tuple(ce["canny"]), float(ce["blur_px"]))
        T0 = np.asarray(cam_from_world, np.float64)
        s0, _ = self.edge_score(T0, intr, edges)
        best = (s0, "initial", T0)
        hist, n_inl, msgs = [], 0, []
        for stage in self.conf["stages"]:
            if stage == "features":
                T, n_inl, h, msg = self.align_features(best[2], intr, sift.extract(img, self.conf["features"]["sift"]))
                hist.append({"stage": "features", "iterations": h})
                if msg:
                    msgs.append(f"features: {msg}")
            else:
                T, h = self.align_edges(best[2], intr, edges)
                hist.append({"stage": "edges", "rounds": h})
            if T is None:
                continue
            s, _ = self.edge_score(T, intr, edges)
            hist[-1]["score"] = s
            if s > best[0] + float(self.conf["min_gain"]):
                best = (s, stage, T)
        return RefineResult(best[2], best[1] != "initial", best[1], s0, best[0], n_inl,
                            time.perf_counter() - t0, hist, "; ".join(msgs))
