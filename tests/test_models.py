"""Networks built from ArchConfigs: canonical networks equal the published ones; any valid config runs."""

from __future__ import annotations

import random

import pytest
import torch
import torchvision

from repro.arch import FAMILIES, ArchConfig, random_arch
from repro.models import build_model, count_params
from repro.models.layers import DepthwiseConv2d


@pytest.mark.parametrize("family, params", [
    ("mobilenet_v1", 4_231_976),
    ("mobilenet_v2", 3_504_872),
    ("resnet50", 25_557_032),
])
def test_canonical_parameter_counts(family, params):
    assert count_params(build_model(ArchConfig.canonical(family))) == params


@pytest.mark.parametrize("family, reference", [
    ("mobilenet_v2", torchvision.models.mobilenet_v2),
    ("resnet50", torchvision.models.resnet50),
])
def test_canonical_layers_equal_torchvision(family, reference):
    """Same parameter shapes in the same order: torchvision's weights load into ours one to one."""
    ours = [tuple(p.shape) for p in build_model(ArchConfig.canonical(family)).state_dict().values()]
    theirs = [tuple(p.shape) for p in reference().state_dict().values()]
    assert ours == theirs


def test_torchvision_weights_give_torchvision_outputs():
    torch.manual_seed(0)
    tv = torchvision.models.mobilenet_v2().eval()
    ours = build_model(ArchConfig.canonical("mobilenet_v2")).eval()
    ours.load_state_dict(dict(zip(ours.state_dict().keys(), tv.state_dict().values(), strict=True)))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), tv(x))


@pytest.mark.parametrize("family", FAMILIES)
def test_random_configs_run_with_their_widths(family):
    rng = random.Random(7)
    for _ in range(5):
        arch = random_arch(family, rng, max_width_scale=0.25, resolution_range=(17, 48), num_classes=7)
        model = build_model(arch).eval()
        with torch.no_grad():
            out = model(torch.randn(2, 3, arch.resolution, arch.resolution))
        assert out.shape == (2, 7)
        convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
        if family != "resnet50":  # drop the depthwise 3x3 convs (every 3x3 conv but the RGB stem)
            convs = convs[:1] + [c for c in convs[1:] if c.kernel_size == (1, 1)]
        active = [w for i, w in enumerate(arch.widths) if arch.is_active(i)]
        # every listed conv has the width its entry asks for
        assert sorted(c.out_channels for c in convs) == sorted(active)


def test_depth_drops_the_last_blocks_of_a_stage():
    full = ArchConfig.canonical("mobilenet_v2", num_classes=10)
    short = full.replace(depths=(1, 1, 1, 1, 1, 1, 1))
    n_full = sum(1 for m in build_model(full).modules() if type(m).__name__ == "InvertedResidual")
    blocks = [m for m in build_model(short).modules() if type(m).__name__ == "InvertedResidual"]
    assert n_full == 17 and len(blocks) == 7
    assert not any(b.residual for b in blocks)  # only the first block of each stage is left


def test_residual_is_structural_not_inferred_from_widths():
    """A stage-first block keeps no residual even when its input and output widths happen to be equal."""
    arch = ArchConfig.canonical("mobilenet_v2")
    w = list(arch.widths)
    w[0] = 16  # stem 16 -> s0.b0 projects 16 -> 16 with stride 1: torchvision would add a residual
    blocks = [m for m in build_model(ArchConfig("mobilenet_v2", w, arch.depths)).modules()
              if type(m).__name__ == "InvertedResidual"]
    assert blocks[0].residual is False and blocks[2].residual is True


@pytest.mark.parametrize("size, stride", [(1, 1), (2, 1), (2, 2), (1, 2), (3, 2), (5, 1)])
def test_depthwise_conv_on_tiny_maps_is_the_same_convolution(size, stride):
    # the training path zero-extends maps smaller than the kernel (oneDNN's slow case): same values, same grads
    torch.manual_seed(size * 10 + stride)
    conv = DepthwiseConv2d(8, 8, 3, stride, 1, groups=8, bias=False)
    x = torch.randn(4, 8, size, size + (1 if size == 2 else 0), requires_grad=True)
    out = conv(x)
    ref = torch.nn.functional.conv2d(x, conv.weight, None, stride, 1, 1, 8)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    g = torch.randn_like(out)
    gx, gw = torch.autograd.grad(out, (x, conv.weight), g)
    rx, rw = torch.autograd.grad(ref, (x, conv.weight), g)
    torch.testing.assert_close(gx, rx, rtol=0, atol=1e-5)
    torch.testing.assert_close(gw, rw, rtol=0, atol=1e-5)
    for family in ("mobilenet_v1", "mobilenet_v2"):  # every depthwise conv of the MobileNets takes this path
        convs = [m for m in build_model(ArchConfig.uniform(family, 0.5)).modules() if isinstance(m, torch.nn.Conv2d)]
        assert all(isinstance(m, DepthwiseConv2d) == (m.groups > 1) for m in convs)
        assert sum(m.groups > 1 for m in convs) == {"mobilenet_v1": 13, "mobilenet_v2": 17}[family]
