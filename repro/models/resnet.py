"""ResNet-50 (He et al., 2016) with free widths per convolution and a variable depth per stage.

torchvision's layout ("ResNet v1.5": the stride sits on the 3x3 conv). At ``ArchConfig.canonical`` it has
torchvision's 25,557,032 parameters. The ``conv3`` outputs of a stage and its ``downsample`` are tied
(``repro.arch``) because they are added together.
"""

from __future__ import annotations

import torch
from torch import nn

from repro.arch import ArchConfig, Block
from repro.models.layers import ConvBNAct, init_weights


class Bottleneck(nn.Module):
    def __init__(self, cin: int, w: tuple[int, ...], blk: Block):
        super().__init__()
        c1, c2, c3 = (w[blk.slot(r)] for r in ("conv1", "conv2", "conv3"))
        self.conv1 = ConvBNAct(cin, c1, 1, act=nn.ReLU)
        self.conv2 = ConvBNAct(c1, c2, 3, blk.stride, act=nn.ReLU)
        self.conv3 = ConvBNAct(c2, c3, 1, act=None)
        ds = blk.slot("downsample")
        self.downsample = None if ds is None else ConvBNAct(cin, w[ds], 1, blk.stride, act=None)
        self.relu = nn.ReLU(inplace=True)
        self.out_channels = c3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv3(self.conv2(self.conv1(x))) + identity)


class ResNet50(nn.Module):
    def __init__(self, arch: ArchConfig, init: bool = True):
        super().__init__()
        if arch.family != "resnet50":
            raise ValueError(f"ResNet50 needs family 'resnet50', got {arch.family!r}")
        w = arch.widths
        self.stem = nn.Sequential(ConvBNAct(3, w[0], 7, 2, act=nn.ReLU), nn.MaxPool2d(3, 2, 1))
        blocks: list[nn.Module] = []
        cin = w[0]
        for blk in arch.active_blocks():
            blocks.append(Bottleneck(cin, w, blk))
            cin = blocks[-1].out_channels
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, arch.num_classes)
        if init:
            init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))
