"""Networks built from an ArchConfig: ``build_model(arch)``."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from repro.arch import ArchConfig
from repro.models.mobilenet_v1 import MobileNetV1
from repro.models.mobilenet_v2 import MobileNetV2
from repro.models.resnet import ResNet50

BUILDERS: dict[str, Callable[[ArchConfig], nn.Module]] = {
    "mobilenet_v1": MobileNetV1,
    "mobilenet_v2": MobileNetV2,
    "resnet50": ResNet50,
}


def build_model(arch: ArchConfig, init: bool = True) -> nn.Module:
    """The network of ``arch``, freshly initialised (``init=False``: weights left as allocated, for a
    structure whose tensors come from elsewhere, such as the weight-sharing network's)."""
    return BUILDERS[arch.family](arch, init=init)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["build_model", "count_params", "BUILDERS", "MobileNetV1", "MobileNetV2", "ResNet50"]
