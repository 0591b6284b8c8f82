"""Small building blocks shared by the model families."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DepthwiseConv2d(nn.Conv2d):
    """A depthwise ``nn.Conv2d`` (same parameters and state dict) that trains fast on CPU at tiny sizes.

    oneDNN's CPU depthwise convolution backward is 4-9x slower when the input is smaller than the kernel
    (the 1x1 and 2x2 maps of the last stages at low resolution: 20 ms instead of 2-5 ms for a 64 x 1024
    x 1 x 1 batch on 2 cores), which made those layers most of a small MobileNet's training step. While
    training on CPU, such an input is zero-extended on the right and bottom to the kernel size and the
    output cropped back: the extra zeros only reach output positions that are cropped away, so the result
    is the same convolution. Evaluation, tracing (the FLOPs counter runs under ``no_grad``) and CUDA take
    the plain path.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.kernel_size
        h, w = x.shape[-2:]
        if (h >= kh and w >= kw) or x.device.type != "cpu" or not (self.training and torch.is_grad_enabled()):
            return self._depthwise(x)
        (sh, sw), (ph, pw) = self.stride, self.padding
        out_h, out_w = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        x = F.pad(x, (0, max(0, kw - w), 0, max(0, kh - h)))
        return self._depthwise(x)[..., :out_h, :out_w]

    def _depthwise(self, x: torch.Tensor) -> torch.Tensor:
        # one group per channel of the weight it is given: the weight-sharing network runs this module
        # with a slice of a wider weight (repro.models.supernet)
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.weight.shape[0])


class ConvBNAct(nn.Sequential):
    """Conv (no bias) + BatchNorm + optional activation, padded to keep ``ceil(size / stride)``."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 act: type[nn.Module] | None = nn.ReLU6):
        conv = DepthwiseConv2d if groups > 1 and groups == cin == cout else nn.Conv2d
        layers: list[nn.Module] = [
            conv(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if act is not None:
            layers.append(act(inplace=True))
        super().__init__(*layers)
        self.out_channels = cout


def init_weights(model: nn.Module) -> None:
    """torchvision's initialisation for these families: Kaiming fan-out convs, unit BN, small FC."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
