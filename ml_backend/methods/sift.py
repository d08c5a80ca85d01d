"""SIFT localization: top-k retrieval, SIFT matching against depth-lifted reference features, PnP (the
benchmark's ``run`` goes through the method interface, see :mod:`._matcher`)."""
from __future__ import annotations

from ..localize import Localizer
from ._common import localize_photos, photo_database
from ._matcher import make_run

__all__ = ["run", "estimate_images"]

run = make_run("sift")


def estimate_images(images: list[str], intrinsics: list, conf: dict, progress=None) -> list[dict]:
    """Poses of single photos (no ground truth) against ``conf["database"]`` (or ``conf["dataset"]``'s)."""
    return localize_photos(Localizer(photo_database(conf), conf.get("localize")), images, intrinsics, conf, progress)
