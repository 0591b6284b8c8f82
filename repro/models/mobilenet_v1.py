"""MobileNet V1 (Howard et al., 2017) with a free width per pointwise conv and a variable depth per stage.

The layout is the literal table in ``repro.arch`` (``_V1_STAGES``). At ``ArchConfig.canonical`` this is the
1.0x MobileNet V1 of the paper: 4,231,976 parameters, 568.7M MACs at 224 px.
"""

from __future__ import annotations

import torch
from torch import nn

from repro.arch import ArchConfig
from repro.models.layers import ConvBNAct, init_weights


class DepthwiseSeparable(nn.Sequential):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__(ConvBNAct(cin, cin, 3, stride, groups=cin), ConvBNAct(cin, cout, 1))


class MobileNetV1(nn.Module):
    def __init__(self, arch: ArchConfig, init: bool = True):
        super().__init__()
        if arch.family != "mobilenet_v1":
            raise ValueError(f"MobileNetV1 needs family 'mobilenet_v1', got {arch.family!r}")
        w = arch.widths
        layers: list[nn.Module] = [ConvBNAct(3, w[0], 3, 2)]
        cin = w[0]
        for blk in arch.active_blocks():
            cout = w[blk.slot("pw")]
            layers.append(DepthwiseSeparable(cin, cout, blk.stride))
            cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cin, arch.num_classes)
        if init:
            init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))
