"""The weight-sharing network: one set of the largest weights that runs any architecture of a family.

``SuperNet(family, num_classes)`` owns the weights of the canonical (1.0x, maximum-depth) network.
``set_arch(arch)`` chooses the architecture its ``forward`` runs; ``extract(arch)`` returns a standalone
network of the ``repro.models`` kind holding copies of the sliced weights. An architecture uses the first
``c`` channels of every layer (the leading filters, as in once-for-all and AutoSlim), the first ``d`` blocks
of every stage, and whatever resolution its input has.

How: the forward builds the architecture's own network (``build_model``) on the ``meta`` device, once per
combination of depths (a small cache), and runs it with ``torch.func.functional_call`` on views of the shared
tensors, each sliced to the shape the smaller network expects. So the shared network and an extracted one
run the very same module code, and gradients flow into the shared weights through the views. Which shared
module backs which small one follows the structure: the stem, head and classifier pair with themselves and
the ``k``-th kept block of a stage with the ``k``-th block of that stage.

BatchNorm: in training mode each architecture normalizes with its batch's statistics (and updates the shared
running statistics, which mix architectures and are not meant to be used). An extracted network's
statistics must be re-estimated (``repro.train.trainer.recalibrate_bn``) before it is evaluated. For scoring
many architectures quickly, ``batch_stats=True`` keeps BatchNorm on the batch's statistics in eval mode.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torch.func import functional_call

from repro.arch import ArchConfig, family_spec
from repro.models import build_model
from repro.models.prune import MARK, marked_network

# the Sequential that holds the blocks, and whether it starts with a stem / ends with a head layer
_BLOCKS = {"mobilenet_v1": ("features", 1, 0), "mobilenet_v2": ("features", 1, 1), "resnet50": ("blocks", 0, 0)}
_CACHE_SIZE = 64


class SuperNet(nn.Module):
    def __init__(self, family: str, num_classes: int = 1000, resolution: int = 224,
                 max_arch: ArchConfig | None = None):
        super().__init__()
        # the widest network it runs: the canonical one unless a method's space is wider (MetaPruning's V2)
        self.max_arch = (ArchConfig.canonical(family, resolution, num_classes) if max_arch is None
                         else max_arch.replace(num_classes=num_classes, resolution=resolution))
        self.net = build_model(self.max_arch)
        self.arch = self.max_arch
        self.batch_stats = False
        self._structures: OrderedDict[tuple[int, ...], tuple[nn.Module, list]] = OrderedDict()

    @property
    def family(self) -> str:
        return self.max_arch.family

    def set_arch(self, arch: ArchConfig) -> None:
        self._check(arch)
        self.arch = arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        small, names = self._structure(self.arch)
        small.train(self.training)
        if self.batch_stats and not self.training:
            for m in small.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.train()
        return functional_call(small, self._tensors(names, self.arch), (x,), strict=True)

    def _tensors(self, names: dict[str, tuple[str, tuple[int, ...]]], arch: ArchConfig) -> dict[str, torch.Tensor]:
        """The tensors ``arch``'s network runs on: views of the shared ones (a subclass may make them)."""
        shared = dict(self.net.named_parameters())
        shared.update(self.net.named_buffers())
        return {name: _leading(shared[src], shape) for name, (src, shape) in names.items()}

    @torch.no_grad()
    def extract(self, arch: ArchConfig | None = None) -> nn.Module:
        """A standalone network of ``arch`` (default: the current one) with copies of its shared weights,
        in eval mode. Its BatchNorm statistics are the shared ones: recalibrate before evaluating."""
        arch = self.arch if arch is None else arch
        self._check(arch)
        _, names = self._structure(arch)
        model = build_model(arch)
        model.load_state_dict({name: t.detach().clone() for name, t in self._tensors(names, arch).items()})
        return model.to(next(self.net.parameters()).device).eval()

    # --- internals

    def _check(self, arch: ArchConfig) -> None:
        m = self.max_arch
        if arch.family != m.family or arch.num_classes != m.num_classes:
            raise ValueError(f"architecture {arch.family} with {arch.num_classes} classes does not fit this shared "
                             f"network ({m.family}, {m.num_classes} classes)")
        wide = [(s.name, w, c) for s, w, c in zip(m.spec.slots, arch.widths, m.widths, strict=True) if w > c]
        if wide:
            name, w, c = wide[0]
            raise ValueError(f"widths[{name}]={w} is wider than the shared network's {c}")

    def _structure(self, arch: ArchConfig) -> tuple[nn.Module, dict[str, tuple[str, tuple[int, ...]]]]:
        """The network of ``arch``'s depths on the meta device (its modules do not depend on the widths:
        depthwise convolutions take their group count from the weight they are given), and for each of
        its tensors the shared tensor that backs it with the shape to cut for ``arch``'s widths."""
        if arch.depths in self._structures:
            self._structures.move_to_end(arch.depths)
            small, plan = self._structures[arch.depths]
        else:
            # every channel dimension of every tensor says which slot's width it is (repro.models.prune)
            small = marked_network(self.max_arch.replace(depths=arch.depths))
            plan = [(f"{small_prefix}.{rel}", f"{shared_prefix}.{rel}", tuple(t.shape))
                    for small_prefix, module, shared_prefix in self._pairs(small, arch)
                    for rel, t in [*module.named_parameters(), *module.named_buffers()]]
            self._structures[arch.depths] = (small, plan)
            if len(self._structures) > _CACHE_SIZE:
                self._structures.popitem(last=False)
        w = arch.widths
        names = {name: (src, tuple(w[d - MARK] if d >= MARK else d for d in dims)) for name, src, dims in plan}
        return small, names

    def _pairs(self, small: nn.Module, arch: ArchConfig):
        """(name in the small network, its module, name in the shared network) for each top-level piece."""
        container, stem, head = _BLOCKS[self.family]
        spec = family_spec(self.family)
        kept = [i for i, b in enumerate(spec.blocks) if b.index < arch.depths[b.stage]]
        index = list(range(stem)) + [stem + i for i in kept]
        index += [stem + len(spec.blocks) + j for j in range(head)]
        for name, module in small.named_children():
            if name != container:
                yield name, module, name
                continue
            for k, block in enumerate(module):
                yield f"{name}.{k}", block, f"{name}.{index[k]}"


def _leading(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """The view of ``t`` made of the first ``shape[d]`` entries along every dimension ``d``."""
    if tuple(t.shape) == shape:
        return t
    return t[tuple(slice(0, s) for s in shape)]
