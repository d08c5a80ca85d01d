"""Checks of files the worker reads, before it trusts them: every failure names the file and what is wrong.

* :func:`verify_hdf5` reads a whole HDF5 file (every dataset and attribute) in a child process with a time limit:
  a corrupt file can make the HDF5 library loop or crash while holding h5py's global lock (and the GIL), which
  no timeout inside the worker could interrupt. A file that passed is remembered by (path, size, mtime).
* :func:`check_image_file` reads only an image's header (Pillow opens lazily) and refuses files and pixel counts
  over the limits before anything is decoded; :func:`degenerate_image_reason` says why decoded pixels cannot be
  localized (too small, uniform, black).
* :func:`load_torch_file` wraps ``torch.load`` so a truncated or foreign checkpoint is a :class:`CorruptFile`.

    python -m ml_backend.integrity hdf5 FILE     # the child's entry: prints one JSON line, exit 0 / 1
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Optional

import numpy as np

from pose_addon.core.dataset import DatasetError

from .child_process import child_env, describe_exit, python_command

__all__ = ["CorruptFile", "ImageRejected", "verify_hdf5", "die_with_parent", "check_image_file",
           "degenerate_image_reason", "load_torch_file", "MAX_IMAGE_BYTES", "MAX_IMAGE_PIXELS", "MIN_IMAGE_SIDE"]

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
MAX_IMAGE_BYTES = 200 * 1024 * 1024  # a photo file larger than this is refused before it is read
MAX_IMAGE_PIXELS = 50_000_000  # 50 MP (8660 x 5773); larger images are refused from their header
MIN_IMAGE_SIDE = 32  # pixels; smaller images hold too little to localize
MIN_IMAGE_STD = 2.0  # grey levels; below this an image is uniform (all black, all white, a flat colour)

_verified: dict[tuple, bool] = {}
_verified_lock = threading.Lock()


class CorruptFile(DatasetError):
    """A file exists but cannot be used: truncated, overwritten, another format. ``path`` names it."""

    def __init__(self, path: Path | str, why: str):
        super().__init__(f"{path}: {why}")
        self.path = str(path)
        self.why = why


class ImageRejected(ValueError):
    """An image that will not be processed (too large, too small, unreadable, degenerate); the message says why."""

    def __init__(self, path: Path | str, why: str):
        super().__init__(f"image {path}: {why}")
        self.path = str(path)
        self.why = why


def _key(path: Path) -> tuple:
    st = path.stat()
    return str(path.resolve()), st.st_size, st.st_mtime_ns


def verify_hdf5(path: Path | str, timeout_s: Optional[float] = None, what: str = "HDF5 file") -> None:
    """Read all of ``path`` in a child process; raises :class:`CorruptFile` (or FileNotFoundError).

    Args:
        timeout_s: limit of the child (default: 20 s + 10 s per 100 MB). A child that runs longer is killed and
            the file reported as unreadable.
        what: how messages call the file (e.g. ``feature database``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    key = _key(path)
    with _verified_lock:
        if _verified.get(key):
            return
    size = key[1]
    if size == 0:
        raise CorruptFile(path, f"empty {what} (0 bytes)")
    with open(path, "rb") as f:
        head = f.read(8)
    if head != HDF5_SIGNATURE:
        raise CorruptFile(path, f"not an HDF5 file (it starts with {head[:8]!r}); expected a {what}")
    limit = timeout_s if timeout_s is not None else 20.0 + 10.0 * size / 1e8
    try:
        proc = subprocess.run(python_command("ml_backend.integrity", "hdf5", path), capture_output=True, text=True,
                              timeout=limit, env=child_env(), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise CorruptFile(path, f"reading the {what} did not finish within {limit:.0f} s (corrupt HDF5 structure?)") \
            from None
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    ans = json.loads(lines[-1]) if lines else {}
    if proc.returncode == 0 and ans.get("ok"):
        with _verified_lock:
            _verified[key] = True
        return
    if ans.get("error"):
        raise CorruptFile(path, f"unreadable {what}: {ans['error']}")
    why = describe_exit(proc.returncode)
    raise CorruptFile(path, f"reading the {what} crashed its reader ({why}): corrupt HDF5 file")


def _read_all_hdf5(path: str) -> dict:
    """Child side: open ``path`` and read every attribute and dataset (in chunks of rows)."""
    import h5py

    n = {"datasets": 0, "bytes": 0}

    def visit(name, obj):
        for k in obj.attrs.keys():
            obj.attrs[k]
        if isinstance(obj, h5py.Dataset):
            n["datasets"] += 1
            if obj.shape is None or obj.ndim == 0:
                obj[()]
                return
            step = max(1, (16 << 20) // max(1, obj.dtype.itemsize * int(np.prod(obj.shape[1:], dtype=np.int64))))
            for i in range(0, obj.shape[0], step):
                n["bytes"] += obj[i:i + step].nbytes

    with h5py.File(path, "r") as f:
        for k in f.attrs.keys():
            f.attrs[k]
        f.visititems(visit)
    return n


def check_image_file(path: Path | str, max_bytes: int = MAX_IMAGE_BYTES,
                     max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[int, int]:
    """``(width, height)`` of an image file from its header, nothing decoded; raises :class:`ImageRejected`
    (too large a file or pixel count, too small, not an image) or FileNotFoundError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    size = path.stat().st_size
    if size == 0:
        raise ImageRejected(path, "empty file (0 bytes)")
    if size > max_bytes:
        raise ImageRejected(path, f"file of {size / 1e6:.0f} MB is over the {max_bytes / 1e6:.0f} MB limit")
    from PIL import Image

    try:
        with Image.open(path) as im:  # lazy: reads the header only
            w, h = im.size
            fmt = im.format
    except Image.DecompressionBombError as e:  # Pillow's own limit, far above ours
        raise ImageRejected(path, f"over the {max_pixels / 1e6:.0f} MP limit ({e})") from None
    except Exception as e:  # UnidentifiedImageError, truncated headers, ...
        raise ImageRejected(path, f"cannot read it as an image ({type(e).__name__}: {e})") from None
    if w * h > max_pixels:
        raise ImageRejected(path, f"{w}x{h} = {w * h / 1e6:.1f} MP is over the {max_pixels / 1e6:.0f} MP limit "
                                  f"({fmt}); downscale it")
    if min(w, h) < MIN_IMAGE_SIDE:
        raise ImageRejected(path, f"{w}x{h} is too small to localize (at least {MIN_IMAGE_SIDE} px a side)")
    return int(w), int(h)


def degenerate_image_reason(gray: np.ndarray) -> Optional[str]:
    """Why a decoded image (grey ``[H, W]`` or colour ``[H, W, C]``) cannot be localized (None when it can):
    too small or uniform (all black, all white, one flat colour)."""
    h, w = gray.shape[:2]
    if min(h, w) < MIN_IMAGE_SIDE:
        return f"{w}x{h} is too small to localize (at least {MIN_IMAGE_SIDE} px a side)"
    step = max(1, int(np.sqrt(h * w / 1e6)))  # a subsample of about a megapixel is enough for the statistics
    g = np.asarray(gray[::step, ::step], np.float32)
    if g.ndim == 3:
        g = g[:, :, :3].mean(axis=2)
    std = float(g.std())
    if std < MIN_IMAGE_STD:
        mean = float(g.mean())
        kind = "all black" if mean < 8 else "all white" if mean > 247 else "uniform"
        return f"the image is {kind} (grey level {mean:.0f} +- {std:.1f}): nothing to match"
    return None


def load_torch_file(path: Path | str, what: str = "checkpoint"):
    """``torch.load(path, weights_only=True)`` on CPU; raises :class:`CorruptFile` naming ``path`` when the file
    is empty, truncated or not a torch file, FileNotFoundError when it is missing."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    if path.stat().st_size == 0:
        raise CorruptFile(path, f"empty {what} (0 bytes)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # EOFError, RuntimeError (zip), UnpicklingError, ...
        raise CorruptFile(path, f"unreadable {what} ({type(e).__name__}: {str(e)[:300]})") from None


def die_with_parent() -> None:
    """Linux: have the kernel SIGKILL this (child) process when its parent goes, even if it is stuck in C code
    holding the GIL, where no Python-level watchdog could run."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main(argv: Optional[list] = None) -> int:
    die_with_parent()
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 2 or argv[0] != "hdf5":
        sys.stderr.write("usage: python -m ml_backend.integrity hdf5 FILE\n")
        return 2
    try:
        n = _read_all_hdf5(argv[1])
    except Exception as e:
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {str(e)[:500]}"}), flush=True)
        return 1
    print(json.dumps({"ok": True, **n}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
