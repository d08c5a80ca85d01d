"""HDF5 feature database of a dataset's reference frames: keypoints lifted to 3D, poses and global descriptors.

File layout (one group per reference frame, only keypoints with a valid 3D point are kept)::

    /                       attrs: format, version, conf (JSON), conf_name, dataset, split, dataset_digest
    /frames/<frame_id>/
        keypoints   [N, 2]   float32  OpenCV pixel convention
        descriptors [N, D] float32  (RootSIFT by default; D per extractor)
        points3d    [N, 3]   float64  world frame (Blender world, Z up, metres)
        global      [D]      float32  retrieval descriptor (see :mod:`.retrieval`)
        attrs: cam_from_world [4, 4] (OpenCV axes), intrinsics (JSON), image, n_detected, complete

The build is resumable and crash-safe: it writes ``<name>.partial``, skips frames already complete there, and
renames it to the final name only when every frame is in. No pickle anywhere.

The references are the dataset's :meth:`~pose_addon.core.dataset.Dataset.reference_splits` unless the conf names
``split`` (a split name or a list). The database records the digest of the reference frames it was built from
(``dataset_digest``); in a folder the file name carries it, so databases of different datasets never collide, and
:func:`check_database` refuses a database of other references (the message names both).

There is one preset per local feature type (``sift``, ``colmap`` and one per feature-based matcher preset of
:mod:`.matchers`, same name); the preset's extractor conf fixes the resolution the network sees. Reads are lazy:
a :class:`RefFrame` reads its arrays from the file only when asked, so large databases never sit in memory.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import h5py
import numpy as np

from pose_addon.core.cameras import Intrinsics
from pose_addon.core.dataset import Dataset, DatasetError

from ..progress import progress_bar
from . import lifting, retrieval
from .extractors import Features, extract_features, load_image_gray, merge_any_conf

__all__ = ["FORMAT", "confs", "resolve_conf", "database_path", "build_database", "FeatureDatabase", "RefFrame",
           "check_database", "reference_digest"]

FORMAT = "ml_backend-feature-db"
VERSION = 1

#: Named presets (hloc style). ``output`` names the file; parameter changes add a hash to it.
confs: dict[str, dict[str, Any]] = {
    "sift": {
        "output": "sift-n4000",
        "split": None,
        "features": {"max_keypoints": 4000, "root_sift": True},
        "lifting": {},
        "retrieval": {},
    },
    "sift_fast": {
        "output": "sift-n2000",
        "split": None,
        "features": {"max_keypoints": 2000, "root_sift": True},
        "lifting": {},
        "retrieval": {},
    },
}


def _matcher_presets() -> None:
    """A database preset per feature-based matcher preset of :mod:`.matchers` (same name, same features)."""
    from .presets import confs as mconfs

    for name, mc in mconfs.items():
        f = mc["features"]
        if f is None or name in confs:
            continue
        tag = f["name"] + "-n" + str(f.get("max_keypoints")) + (f"-r{f['resize_max']}" if f.get("resize_max") else "")
        confs[name] = {"output": tag.replace("_", "-"), "split": None, "features": dict(f),
                       "lifting": {}, "retrieval": {}}


_matcher_presets()


def resolve_conf(conf: Optional[dict | str] = None) -> dict:
    """A full database conf: a preset name, or a dict (its ``name`` picks the preset it overrides).

    Sub-dicts ``features``, ``lifting`` and ``retrieval`` are completed with each module's ``default_conf``.
    """
    if conf is None or isinstance(conf, str):
        conf = {"name": conf or "sift"}
    name = conf.get("name", "sift")
    if name not in confs:
        raise ValueError(f"unknown database conf {name!r}; presets: {', '.join(confs)}")
    base = confs[name]
    out = {"name": name, "output": conf.get("output", base["output"]), "split": conf.get("split", base["split"])}
    out["features"] = merge_any_conf({**base["features"], **conf.get("features", {})})
    out["lifting"] = {**lifting.default_conf, **base["lifting"], **conf.get("lifting", {})}
    out["retrieval"] = {**retrieval.default_conf, **base["retrieval"], **conf.get("retrieval", {})}
    out["retrieval"] = {k: list(v) if isinstance(v, tuple) else v for k, v in out["retrieval"].items()}
    return out


def _conf_json(conf: dict) -> str:
    return json.dumps(conf, sort_keys=True)


def reference_digest(ds: Dataset, splits=None) -> str:
    """Digest of the reference frames of ``ds`` (``splits``: as :meth:`Dataset.reference_splits` takes them)."""
    return ds.digest(ds.reference_frames(splits))


def database_path(out: Path | str, conf: dict, dataset_digest: str = "") -> Path:
    """File name encoding the conf and the references: ``db-<output>-<hash8>[-<digest8>].h5`` inside ``out``
    (a folder), or ``out`` itself if it is a .h5."""
    out = Path(out)
    if out.suffix in (".h5", ".hdf5"):
        return out
    digest = hashlib.sha256(_conf_json(conf).encode()).hexdigest()[:8]
    tail = f"-{dataset_digest[:8]}" if dataset_digest else ""
    return out / f"db-{conf['output']}-{digest}{tail}.h5"


def check_database(db_path: Path | str, ds: Dataset, splits=None) -> None:
    """Refuse a database built from other references than ``ds``'s (raises DatasetError naming both)."""
    with h5py.File(db_path, "r") as f:
        recorded = str(f.attrs.get("dataset_digest", ""))
        source = str(f.attrs.get("dataset", "?"))
        split = f.attrs.get("split")
    try:
        split = json.loads(split) if isinstance(split, str) and split.startswith("[") else split
    except ValueError:
        pass
    want = reference_digest(ds, splits if splits is not None else split)
    if recorded != want:
        raise DatasetError(f"feature database {db_path} was built from {source} (digest {recorded or 'none'}), "
                           f"not from the references of {ds.root} (digest {want}): rebuild it (build-db) or "
                           "pass the dataset it was built from")


def _complete_ids(f: h5py.File) -> set[str]:
    grp = f.get("frames")
    if grp is None:
        return set()
    return {k for k, g in grp.items() if g.attrs.get("complete", False)}


def _open_partial(tmp: Path, conf_json: str, final: Path, digest: str) -> h5py.File:
    """Open (or create) the partial file; start over if it is corrupt or built with another conf or dataset."""
    if tmp.exists():
        try:
            f = h5py.File(tmp, "a")
            if f.attrs.get("conf") == conf_json and f.attrs.get("format") == FORMAT and \
                    f.attrs.get("dataset_digest") == digest:
                return f
            f.close()
        except OSError:
            pass  # a crash mid-write can leave an unreadable file: rebuild
        tmp.unlink()
    f = h5py.File(tmp, "w")
    f.attrs["format"] = FORMAT
    f.attrs["version"] = VERSION
    f.attrs["conf"] = conf_json
    f.attrs["dataset_digest"] = digest
    f.create_group("frames")
    return f


def _final_state(final: Path, conf_json: str, ids: list[str], digest: str, dataset: str) -> str:
    """``missing``, ``ok`` (complete, same conf and references), ``stale`` (another conf, incomplete, or an
    earlier state of the same dataset folder) or ``foreign:<digest> <dataset>`` (another dataset's)."""
    if not final.exists():
        return "missing"
    try:
        with h5py.File(final, "r") as f:
            if f.attrs.get("dataset_digest") != digest and f.attrs.get("dataset") != dataset:
                return f"foreign:{f.attrs.get('dataset_digest', 'none')} {f.attrs.get('dataset', '?')}"
            same = f.attrs.get("conf") == conf_json and f.attrs.get("dataset_digest") == digest
            return "ok" if same and set(ids) <= _complete_ids(f) else "stale"
    except OSError:
        return "stale"


def extract_any(path: Path, gray: np.ndarray, fconf: dict) -> Features:
    """Features of an image file (``gray`` its grey version) with any extractor conf (see :mod:`.features`)."""
    if fconf.get("name", "sift") in ("sift", "colmap_sift"):  # grey-image extractors: no second read
        return extract_features(gray, fconf)
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return extract_features(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), fconf)


def extract_frame(ds: Dataset, frame, conf: dict) -> dict[str, np.ndarray]:
    """Features, lifted 3D points and global descriptor of one reference frame (arrays as stored)."""
    gray = load_image_gray(ds.path(frame.image))
    feats = extract_any(ds.path(frame.image), gray, conf["features"])
    depth = ds.read_depth(frame)
    if depth.shape != gray.shape:
        raise DatasetError(f"frame {frame.id}: depth {depth.shape} and image {gray.shape} differ in size")
    pts, valid = lifting.lift_keypoints(feats.keypoints, depth, frame.intrinsics, frame.cam_from_world,
                                        conf["lifting"])
    return {"keypoints": feats.keypoints[valid], "descriptors": feats.descriptors[valid],
            "points3d": pts[valid], "global": retrieval.global_descriptor(gray, conf["retrieval"]),
            "n_detected": len(feats)}


def database_target(ds: Dataset, out_path: Path | str, conf: dict) -> tuple[Path, list, str, bool]:
    """Where the database of ``ds``'s references under the resolved ``conf`` goes, and whether it is done.

    Sets ``conf["split"]`` to the reference splits. Returns ``(path, reference frames, their digest, complete)``.

    Raises:
        DatasetError: the path holds the database of other references (the message names both).
    """
    conf["split"] = ds.reference_splits(conf["split"])
    refs = ds.reference_frames(conf["split"])
    digest = ds.digest(refs)
    final = database_path(out_path, conf, digest)
    final.parent.mkdir(parents=True, exist_ok=True)
    state = _final_state(final, _conf_json(conf), [f.id for f in refs], digest, str(ds.root.resolve()))
    if state.startswith("foreign:"):
        old, _, src = state[len("foreign:"):].partition(" ")
        raise DatasetError(f"{final} holds the feature database of {src} (digest {old}), not of {ds.root} "
                           f"(digest {digest}): choose another output or delete it")
    return final, refs, digest, state == "ok"


def build_database(dataset_dir: Path | str, out_path: Path | str, conf: Optional[dict | str] = None,
                   progress: bool = True) -> Path:
    """Build (or finish) the feature database of ``dataset_dir``'s reference frames.

    Args:
        dataset_dir: a dataset folder (:mod:`pose_addon.core.dataset`) with planar depth for its references.
        out_path: a folder (the file name then encodes the conf and the references' digest) or a ``.h5`` path.
        conf: preset name or conf dict (see :func:`resolve_conf`); its ``split`` (a name or a list) picks the
            references, default the dataset's :meth:`~pose_addon.core.dataset.Dataset.reference_splits`.

    Returns:
        Path of the complete HDF5 file. Frames already in a ``.partial`` left by an interrupted build of the
        same references are not recomputed.

    Raises:
        DatasetError: no reference frames, or an explicit ``.h5`` path that holds the database of other
            references (the message names both).
    """
    conf = resolve_conf(conf)
    ds = Dataset.load(dataset_dir)
    final, refs, digest, complete = database_target(ds, out_path, conf)
    if complete:
        return final
    cj = _conf_json(conf)
    tmp = final.with_name(final.name + ".partial")
    try:
        _write_frames(tmp, cj, final, digest, conf, ds, refs, progress)
    except OSError as e:  # disk full, permission denied: what is complete in the partial file is kept
        raise OSError(e.errno, f"cannot write the feature database {tmp}: "
                      f"{os.strerror(e.errno) if e.errno else e}; the partial file "
                      "keeps the finished frames: free space or fix permissions and rerun to resume") from None
    os.replace(tmp, final)
    return final


def _write_frames(tmp: Path, cj: str, final: Path, digest: str, conf: dict, ds: Dataset, refs: list,
                  progress: bool) -> None:
    """Add the missing frames of ``refs`` to the partial database ``tmp`` (each flushed once complete)."""
    with _open_partial(tmp, cj, final, digest) as f:
        f.attrs["conf_name"] = conf["name"]
        f.attrs["dataset"] = str(ds.root.resolve())
        f.attrs["split"] = json.dumps(conf["split"])
        done = _complete_ids(f)
        todo = [fr for fr in refs if fr.id not in done]
        for fr in progress_bar(todo, desc="database", unit="img", disable=not progress or not todo):
            data = extract_frame(ds, fr, conf)
            if fr.id in f["frames"]:
                del f["frames"][fr.id]  # an incomplete group from an interrupted write
            g = f["frames"].create_group(fr.id)
            for key in ("keypoints", "descriptors", "points3d", "global"):
                g.create_dataset(key, data=data[key])
            g.attrs["cam_from_world"] = np.asarray(fr.cam_from_world, np.float64)
            g.attrs["intrinsics"] = json.dumps(fr.intrinsics.to_dict())
            g.attrs["image"] = fr.image
            g.attrs["n_detected"] = int(data["n_detected"])
            g.attrs["complete"] = True
            f.flush()


class RefFrame:
    """One reference frame of a :class:`FeatureDatabase` (arrays loaded on access)."""

    def __init__(self, group: h5py.Group, frame_id: str):
        self._g = group
        self.id = frame_id
        self.cam_from_world = np.asarray(group.attrs["cam_from_world"], np.float64)
        self.intrinsics = Intrinsics.from_dict(json.loads(group.attrs["intrinsics"]))
        self.image = str(group.attrs["image"])

    @property
    def keypoints(self) -> np.ndarray:
        return self._g["keypoints"][()]

    @property
    def descriptors(self) -> np.ndarray:
        return self._g["descriptors"][()]

    def strongest_descriptors(self, n: int) -> np.ndarray:
        """The first ``n`` descriptors ``[<=n, D]`` (features are stored strongest first)."""
        return self._g["descriptors"][: int(n)]

    @property
    def points3d(self) -> np.ndarray:
        return self._g["points3d"][()]


class FeatureDatabase:
    """Read-only view of a database file. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"feature database not found: {self.path}")
        from ..integrity import CorruptFile

        try:
            self._f = h5py.File(self.path, "r")
        except OSError as e:  # truncated, zero length, not HDF5
            raise CorruptFile(self.path, f"not a readable feature database (HDF5): {e}") from None
        if self._f.attrs.get("format") != FORMAT:
            self._f.close()
            raise DatasetError(f"{self.path} is not a {FORMAT} file")
        try:
            self.conf = json.loads(self._f.attrs["conf"])
            self.dataset_digest = str(self._f.attrs.get("dataset_digest", ""))
            self.dataset = str(self._f.attrs.get("dataset", ""))
            self.ids = sorted(_complete_ids(self._f))
            self.frames = [RefFrame(self._f["frames"][i], i) for i in self.ids]
            self.global_descriptors = (np.stack([self._f["frames"][i]["global"][()] for i in self.ids])
                                       if self.ids else np.zeros((0, 0), np.float32))
        except (OSError, KeyError, ValueError, TypeError, EOFError) as e:
            self._f.close()
            raise CorruptFile(self.path, f"corrupt feature database ({type(e).__name__}: {e})") from None

    def __len__(self) -> int:
        return len(self.frames)

    def voting_index(self, conf: Optional[dict] = None) -> retrieval.VotingIndex:
        """A :class:`~ml_backend.matching.retrieval.VotingIndex` over the references' strongest descriptors."""
        c = {**retrieval.vote_conf, **(conf or {})}
        return retrieval.VotingIndex([f.strongest_descriptors(c["per_reference"]) for f in self.frames], c)

    def __iter__(self) -> Iterator[RefFrame]:
        return iter(self.frames)

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> FeatureDatabase:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
