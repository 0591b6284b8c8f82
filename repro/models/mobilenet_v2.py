"""MobileNet V2 (Sandler et al., 2018) with free widths and a variable depth per stage.

Follows torchvision's ``mobilenet_v2`` (at ``ArchConfig.canonical`` it has the same 3,504,872 parameters
and layer order). Blocks after the first of a stage add their input to their output, so the ``project``
widths of a stage are tied (``repro.arch``). Unlike torchvision the residual is structural (every non-first
block of a stage), not inferred from ``inp == oup``, so a width choice can never silently add or drop one.
"""

from __future__ import annotations

import torch
from torch import nn

from repro.arch import ArchConfig
from repro.models.layers import ConvBNAct, init_weights


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, hidden: int | None, cout: int, stride: int, residual: bool):
        super().__init__()
        layers: list[nn.Module] = []
        if hidden is None:  # no expansion (t = 1): the depthwise conv runs on the input width
            hidden = cin
        else:
            layers.append(ConvBNAct(cin, hidden, 1))
        layers += [ConvBNAct(hidden, hidden, 3, stride, groups=hidden), ConvBNAct(hidden, cout, 1, act=None)]
        self.conv = nn.Sequential(*layers)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.residual else out


class MobileNetV2(nn.Module):
    def __init__(self, arch: ArchConfig, dropout: float = 0.2, init: bool = True):
        super().__init__()
        if arch.family != "mobilenet_v2":
            raise ValueError(f"MobileNetV2 needs family 'mobilenet_v2', got {arch.family!r}")
        w = arch.widths
        layers: list[nn.Module] = [ConvBNAct(3, w[0], 3, 2)]
        cin = w[0]
        for blk in arch.active_blocks():
            e = blk.slot("expand")
            cout = w[blk.slot("project")]
            layers.append(InvertedResidual(cin, None if e is None else w[e], cout, blk.stride, blk.index > 0))
            cin = cout
        layers.append(ConvBNAct(cin, w[-1], 1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(w[-1], arch.num_classes))
        if init:
            init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))
