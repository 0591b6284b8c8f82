"""The weight-sharing network: an architecture run by the shared network and the same architecture
extracted as a standalone network compute the same thing, and training reaches only its slice."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from repro.arch import FAMILIES, ArchConfig
from repro.models.supernet import SuperNet
from repro.space import SearchSpace

CLASSES = 10


def _archs(family: str, n: int = 3) -> list[ArchConfig]:
    space = SearchSpace(family, "channel+input+depth", num_classes=CLASSES)
    rng = np.random.default_rng(0)
    return [space.decode(rng.uniform(space.lower, space.upper)) for _ in range(n)]


@pytest.mark.parametrize("family", FAMILIES)
def test_shared_and_extracted_networks_give_identical_outputs(family):
    torch.manual_seed(0)
    net = SuperNet(family, CLASSES)
    x = torch.randn(6, 3, 32, 32)
    for arch in _archs(family):
        net.set_arch(arch)
        small = net.extract(arch)
        net.eval()  # running statistics: the shared ones, copied into the extracted network
        torch.testing.assert_close(net(x), small(x), rtol=0, atol=0)
        net.train()
        small.train()
        torch.manual_seed(1)  # MobileNet V2's dropout
        shared_out = net(x)
        torch.manual_seed(1)
        torch.testing.assert_close(shared_out, small(x), rtol=0, atol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_extracted_weights_are_the_shared_networks_leading_slices(family):
    """Checked against the structure directly, not through the slicing plan that extract itself uses."""
    torch.manual_seed(0)
    net = SuperNet(family, CLASSES)
    full = net.extract(net.max_arch).state_dict()
    for name, value in net.net.state_dict().items():
        torch.testing.assert_close(full[name], value, rtol=0, atol=0)
    space = SearchSpace(family, "channel+input+depth", num_classes=CLASSES)
    v = space.uniform(0.5)
    v[[i for i, n in enumerate(space.names) if n.startswith("depth")]] = 0.0  # the fewest blocks
    arch = space.decode(v)
    small = net.extract(arch)
    spec = arch.spec
    kept = [i for i, b in enumerate(spec.blocks) if b.index < arch.depths[b.stage]]
    container = "blocks" if family == "resnet50" else "features"
    offset = 0 if family == "resnet50" else 1  # the stem is features[0]
    small_blocks, shared_blocks = getattr(small, container), getattr(net.net, container)
    for k, i in enumerate(kept):  # the k-th kept block holds shared block i's leading slices
        for (name, w_small), (_, w_shared) in zip(small_blocks[offset + k].state_dict().items(),
                                                  shared_blocks[offset + i].state_dict().items(), strict=True):
            cut = w_shared[tuple(slice(0, n) for n in w_small.shape)]
            torch.testing.assert_close(w_small, cut, rtol=0, atol=0, msg=f"block {i} {name}")
    assert kept != list(range(len(kept))), "some block should be dropped before a kept one"


def test_gradients_reach_only_the_architectures_slice():
    torch.manual_seed(0)
    net = SuperNet("resnet50", CLASSES)
    arch = _archs("resnet50", 1)[0]
    net.set_arch(arch)
    net(torch.randn(4, 3, 32, 32)).sum().backward()
    stem = net.net.stem[0][0].weight.grad
    assert stem[: arch.widths[0]].abs().sum() > 0 and stem[arch.widths[0]:].abs().sum() == 0
    dropped = [b for b in net.max_arch.spec.blocks if b.index >= arch.depths[b.stage]]
    assert dropped, "the sampled architecture should drop a block"
    first = net.max_arch.spec.blocks.index(dropped[0])
    assert all(p.grad is None for p in net.net.blocks[first].parameters())


def test_batch_stats_mode_normalizes_with_the_batch():
    torch.manual_seed(0)
    net = SuperNet("mobilenet_v1", CLASSES)
    arch = _archs("mobilenet_v1", 1)[0]
    net.set_arch(arch)
    x = torch.randn(8, 3, 32, 32)
    net.eval()
    net.batch_stats = True
    small = net.extract(arch).train()
    with torch.no_grad():
        torch.testing.assert_close(net(x), small(x))


def test_set_arch_refuses_what_the_network_cannot_run():
    net = SuperNet("mobilenet_v1", CLASSES)
    with pytest.raises(ValueError, match="wider than the shared network"):
        net.set_arch(ArchConfig.uniform("mobilenet_v1", 1.25, num_classes=CLASSES))
    with pytest.raises(ValueError, match="classes does not fit"):
        net.set_arch(ArchConfig.uniform("mobilenet_v1", 0.5))
