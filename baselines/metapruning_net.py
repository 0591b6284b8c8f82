"""MetaPruning's encoding of a network and its PruningNet (Liu et al., "MetaPruning: Meta Learning for
Automatic Neural Network Channel Pruning", ICCV 2019; public code liuzechun/MetaPruning).

**Encoding.** A network is a vector of *genes*, one per group of width slots that must share a width (a
layer, or the outputs a stage adds together); each gene is an index into 31 channel scales, 0.10 to 1.00 in
steps of 0.03, and a slot's width is ``int(max_width * scale)`` as in their code. What is encoded follows
their models:

* MobileNet V1 (``mobilenetv1/training/mobilenet_v1.py``): the stem and the first 12 pointwise convolutions,
  13 genes; the last pointwise convolution stays at 1024 (their forward passes scale id -1 for it).
* MobileNet V2 (``mobilenetv2/training/mobilenet_v2.py``): the widest network is 1.4x MobileNet V2 (stage
  widths 44, 22, 33, 44, 88, 132, 224, 448, their ``stage_out_channel``) and each block's expansion is up to
  6x its widest input; genes: the stem, the first block's output, each block's expansion (their
  ``mid_channel_scale``) and each stage's output (tied by the residual additions); the last 1x1 stays at
  1280. Their first block also has a 1x1 expansion; ours, like torchvision's, has none.
* ResNet-50 (``resnet/training/resnet.py``, ``resnet/searching/search.py``): 20 genes: the stem, the output
  width of each of the first three stages (all its blocks' third convolutions and its projection: the residual
  stream), and one scale per bottleneck shared by its first two convolutions; the last stage's output stays
  at 2048. The widest network is the 1.0x one. Their generators see three numbers per convolution (mid, input
  and output scale); ours see the ratios of the slots the weight spans, the same numbers without repeats.

**PruningNet.** The widest network whose convolution weights are *generated*: for each convolution two
fully-connected layers (``hidden`` units, ReLU between) map the scale ratios of the slots its weight spans
(output, and input unless depthwise) to the whole widest weight, which is cropped to the sampled widths
(the leading channels). The generators start so that their weights have the scale of a default-initialized
convolution (``_start_at_conv_scale``; their code leaves PyTorch's defaults, which start about 10x larger).
So one set of generator weights produces a network for any encoding, and training on a random encoding per
batch (``baselines.metapruning``) teaches the generators all of them at once.
BatchNorm has no affine parameters and normalizes with batch statistics while training, as in their V2 code;
a candidate is scored after re-estimating its statistics (``extract`` then recalibration). The classifier's
weights are ordinary shared weights (the last width is fixed).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from repro.arch import ArchConfig, family_spec
from repro.models.prune import tensor_slots
from repro.models.supernet import SuperNet, _leading

SCALES = tuple((10 + 3 * i) / 100 for i in range(31))  # their channel_scale: 0.10, 0.13, ..., 1.00

# MobileNet V2's widest network in MetaPruning: 1.4x, their stage_out_channel list (stem, then each stage)
_V2_WIDEST_STEM, _V2_WIDEST_STAGES = 44, (22, 33, 44, 88, 132, 224, 448)


@dataclass(frozen=True)
class Encoding:
    """How a gene vector maps to an ArchConfig of ``family``."""

    family: str
    genes: tuple[tuple[int, ...], ...]  # the width slots each gene sets
    widest: ArchConfig  # every gene at scale 1.0 (fixed slots at their width)

    @property
    def size(self) -> int:
        return len(self.genes)

    def decode(self, ids) -> ArchConfig:
        ids = [int(i) for i in ids]
        if len(ids) != self.size or not all(0 <= i < len(SCALES) for i in ids):
            raise ValueError(f"a {self.family} encoding has {self.size} genes in 0..{len(SCALES) - 1}; got {ids}")
        widths = list(self.widest.widths)
        for gene, i in zip(self.genes, ids, strict=True):
            for slot in gene:
                widths[slot] = max(1, int(self.widest.widths[slot] * SCALES[i]))
        return self.widest.replace(widths=tuple(widths))


def _genes(family: str, fixed: set[int]) -> tuple[tuple[int, ...], ...]:
    spec = family_spec(family)
    tied = {i: g for g in spec.ties for i in g}
    out = []
    for i in range(spec.num_widths):
        if i in fixed or (i in tied and tied[i][0] != i):
            continue
        out.append(tied.get(i, (i,)))
    return tuple(out)


def encoding(family: str) -> Encoding:
    spec = family_spec(family)
    if family == "mobilenet_v1":
        widest = ArchConfig.canonical(family)
        return Encoding(family, _genes(family, {spec.num_widths - 1}), widest)
    if family == "mobilenet_v2":
        widths = list(spec.canonical_widths)
        widths[0] = _V2_WIDEST_STEM
        prev = widths[0]
        for blk in spec.blocks:
            e, p = blk.slot("expand"), blk.slot("project")
            widths[p] = _V2_WIDEST_STAGES[blk.stage]
            if e is not None:
                widths[e] = spec.expand_ratios[spec.blocks.index(blk)] * prev
            prev = widths[p]
        widest = ArchConfig(family, tuple(widths), spec.max_depths)
        return Encoding(family, _genes(family, {spec.num_widths - 1}), widest)
    if family == "resnet50":
        # their resnet/searching/search.py: the stem, the output width of stages 1-3 (the residual stream, tied
        # by the additions; stage 4 stays at 2048) and one "mid" scale per bottleneck for conv1 and conv2
        genes = [(0,), *spec.ties[:3]]
        genes += [(blk.slot("conv1"), blk.slot("conv2")) for blk in spec.blocks]
        return Encoding(family, tuple(tuple(g) for g in genes), ArchConfig.canonical(family))
    raise ValueError(f"MetaPruning's encoding is defined for mobilenet_v1, mobilenet_v2 and resnet50, not "
                     f"{family!r}")


def _start_at_conv_scale(generator: nn.Sequential, fan_in: int) -> None:
    """Scale the generator's output layer (weights and bias) so that the weights it generates start at the
    standard deviation of ``nn.Conv2d``'s default initialization, 1 / sqrt(3 fan_in), measured over the 31
    scale ratios. With PyTorch's default ``nn.Linear`` initialization (their code) a generated weight starts
    about 10x larger (std 0.37-0.47 against 0.034 for a 3x3 conv of 32 inputs); behind BatchNorm that divides
    the effective learning rate by about 100, which their 64 ImageNet epochs absorb and a short run does not:
    on the smoke profile (MobileNet V1, 174 steps, hidden 4) the loss went 2.93 -> 2.90 from the default
    start and 2.95 -> 2.81 from this one (a fixed widest network 2.84 -> 1.92; docs/baselines.md)."""
    ratios = torch.tensor(SCALES).unsqueeze(1).expand(-1, generator[0].in_features)
    with torch.no_grad():
        std = float(generator(ratios).std())
        factor = 1.0 / (3 * fan_in) ** 0.5 / std
        generator[-1].weight.mul_(factor)
        generator[-1].bias.mul_(factor)


class PruningNet(SuperNet):
    """The widest network of an ``Encoding`` with generated convolution weights; ``set_arch`` any decoded
    architecture (``SuperNet``'s interface: ``forward``, ``extract``)."""

    def __init__(self, enc: Encoding, num_classes: int, hidden: int = 32):
        super().__init__(enc.family, num_classes, max_arch=enc.widest)
        self.encoding, self.hidden = enc, hidden
        slots = tensor_slots(self.max_arch)
        self.generators = nn.ModuleDict()
        self._inputs: dict[str, tuple[int, ...]] = {}
        for name, p in self.net.named_parameters():
            dims = slots[name]
            if p.ndim != 4:
                continue
            inputs = tuple(dict.fromkeys(s for s in dims if s is not None))  # output slot first
            self._inputs[name] = inputs
            generator = nn.Sequential(nn.Linear(len(inputs), hidden), nn.ReLU(inplace=True),
                                      nn.Linear(hidden, p.numel()))
            _start_at_conv_scale(generator, p[0].numel())
            self.generators[name.replace(".", "_")] = generator
            p.requires_grad_(False)  # the generators replace it
        # no running statistics: BatchNorm always normalizes with the batch's (SuperNet's batch_stats), and
        # ``extract`` gives a network whose statistics are fresh (``_tensors``), to recalibrate before scoring
        self.batch_stats = True
        for m in self.net.modules():  # no affine BatchNorm (their V2 PruningNet)
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.requires_grad_(False)
                m.bias.requires_grad_(False)

    _layout = torch.contiguous_format

    def to(self, *args, **kwargs):  # remember channels-last (the trainer converts the network with .to)
        if kwargs.get("memory_format") is not None:
            self._layout = kwargs["memory_format"]
        return super().to(*args, **kwargs)

    def generator_params(self) -> int:
        return sum(p.numel() for p in self.generators.parameters())

    def _tensors(self, names: dict[str, tuple[str, tuple[int, ...]]], arch: ArchConfig) -> dict[str, torch.Tensor]:
        device = next(self.generators.parameters()).device
        ratio = torch.tensor([w / m for w, m in zip(arch.widths, self.max_arch.widths, strict=True)],
                             dtype=torch.float32, device=device)
        shared = dict(self.net.named_parameters())
        shared.update(self.net.named_buffers())
        out = {}
        for name, (src, shape) in names.items():
            if src in self._inputs:
                full = self.generators[src.replace(".", "_")](ratio[list(self._inputs[src])])
                # a contiguous copy in the input's layout: convolving with a strided slice of the generated
                # weight took 2-4x longer on CPU
                w = _leading(full.view(shared[src].shape), shape)
                out[name] = w.contiguous(memory_format=self._layout) if w.ndim == 4 else w.contiguous()
            elif src.endswith(("running_mean", "running_var", "num_batches_tracked")):
                # fresh statistics every call: training normalizes with the batch's, and a scored candidate
                # is extracted and recalibrated, so no running statistics are kept here
                base = shared[src]
                fresh = torch.zeros(shape, dtype=base.dtype, device=base.device)
                out[name] = fresh + 1 if src.endswith("running_var") else fresh
            else:  # BatchNorm's weight / bias (ones / zeros, frozen) and the classifier
                out[name] = _leading(shared[src], shape)
        return out


__all__ = ["SCALES", "Encoding", "encoding", "PruningNet"]
