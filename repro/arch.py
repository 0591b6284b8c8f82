"""ArchConfig: the one description of a network that every part of the suite shares.

An architecture is a family (MobileNet V1, MobileNet V2 or ResNet-50), one output width per prunable
convolution of the family's *maximum-depth* network, a block count per stage, an input resolution and a
class count. ``build_model(arch)`` (``repro.models``) turns it into a network and ``repro.cost.flops``
counts its multiply-accumulates.

Width order (one entry per convolution whose output channel count is free; depthwise convolutions are not
listed, their width is always that of their input):

* ``mobilenet_v1`` (14): ``stem``, then the pointwise conv of each of the 13 depthwise-separable blocks.
  No ties (there are no residual connections).
* ``mobilenet_v2`` (35): ``stem``, ``s0.b0.project`` (the first block has no expansion), then for each of
  the 16 further inverted-residual blocks ``expand`` and ``project``, then ``last`` (the 1x1 conv before
  pooling, 1280 at 1.0x). Ties: the ``project`` outputs of all blocks of a stage (the residual additions).
* ``resnet50`` (53): ``stem``, then for each bottleneck ``conv1``, ``conv2``, ``conv3`` and, for the first
  block of each stage, ``downsample``. Ties: every ``conv3`` of a stage and its ``downsample``.

Depths count blocks per stage (V1: 1,2,2,6,2 by output width; V2: torchvision's 1,2,3,4,3,3,1; ResNet-50:
3,4,6,3). A smaller depth drops the last blocks of a stage (never the first, which carries the stride and
the change of width); the width entries of dropped blocks are ignored (they must still be positive
integers, and are not checked against ties).
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FAMILIES = ("mobilenet_v1", "mobilenet_v2", "resnet50")


@dataclass(frozen=True)
class Slot:
    """One width entry: which block it belongs to and what it is."""

    name: str
    role: str  # stem | pw | expand | project | last | conv1 | conv2 | conv3 | downsample
    stage: int | None  # None for layers outside the stages (always present)
    block: int | None


@dataclass(frozen=True)
class Block:
    """One block of the maximum-depth network: its stride and the width index of each of its convs."""

    stage: int
    index: int
    stride: int
    slots: tuple[tuple[str, int], ...]  # (role, width index)

    def slot(self, role: str) -> int | None:
        for r, i in self.slots:
            if r == role:
                return i
        return None


@dataclass(frozen=True)
class FamilySpec:
    name: str
    slots: tuple[Slot, ...]
    canonical_widths: tuple[int, ...]
    blocks: tuple[Block, ...]
    max_depths: tuple[int, ...]
    ties: tuple[tuple[int, ...], ...]  # groups of width indices that must be equal when active
    expand_ratios: tuple[int, ...] = ()  # MobileNet V2 only: the canonical t of each block

    @property
    def num_widths(self) -> int:
        return len(self.slots)

    def stage_blocks(self, stage: int) -> tuple[Block, ...]:
        return tuple(b for b in self.blocks if b.stage == stage)


# --- the literal tables -------------------------------------------------------------------------

# MobileNet V1 (Howard et al. 2017, Table 1): stem 3x3/2 to 32, then depthwise-separable blocks.
# Each stage lists the (pointwise output channels, stride) of its blocks.
_V1_STEM = 32
_V1_STAGES = (
    ((64, 1),),
    ((128, 2), (128, 1)),
    ((256, 2), (256, 1)),
    ((512, 2), (512, 1), (512, 1), (512, 1), (512, 1), (512, 1)),
    ((1024, 2), (1024, 1)),
)

# MobileNet V2 (Sandler et al. 2018, Table 2; torchvision's mobilenet_v2): stem 3x3/2 to 32,
# inverted residual stages, last 1x1 conv to 1280.
_V2_STEM, _V2_LAST = 32, 1280
_V2_STAGES = (
    # t, c, n, s
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)

# ResNet-50 (He et al. 2016; torchvision's resnet50, stride on the 3x3 conv): stem 7x7/2 to 64, max-pool,
# bottleneck stages.
_R50_STEM = 64
_R50_STAGES = (
    # mid, out, n, stride
    (64, 256, 3, 1),
    (128, 512, 4, 2),
    (256, 1024, 6, 2),
    (512, 2048, 3, 2),
)


class _SpecBuilder:
    def __init__(self, name: str):
        self.name = name
        self.slots: list[Slot] = []
        self.widths: list[int] = []
        self.blocks: list[Block] = []
        self.ties: list[tuple[int, ...]] = []

    def add(self, name: str, role: str, width: int, stage: int | None = None, block: int | None = None) -> int:
        self.slots.append(Slot(name, role, stage, block))
        self.widths.append(width)
        return len(self.slots) - 1

    def build(self, max_depths: tuple[int, ...], **extra: Any) -> FamilySpec:
        return FamilySpec(self.name, tuple(self.slots), tuple(self.widths), tuple(self.blocks), max_depths,
                          tuple(t for t in self.ties if len(t) > 1), **extra)


def _mobilenet_v1_spec() -> FamilySpec:
    b = _SpecBuilder("mobilenet_v1")
    b.add("stem", "stem", _V1_STEM)
    for s, stage in enumerate(_V1_STAGES):
        for k, (c, stride) in enumerate(stage):
            i = b.add(f"s{s}.b{k}.pw", "pw", c, s, k)
            b.blocks.append(Block(s, k, stride, (("pw", i),)))
    return b.build(tuple(len(st) for st in _V1_STAGES))


def _mobilenet_v2_spec() -> FamilySpec:
    b = _SpecBuilder("mobilenet_v2")
    b.add("stem", "stem", _V2_STEM)
    ratios = []
    for s, (t, c, n, stride) in enumerate(_V2_STAGES):
        tie = []
        for k in range(n):
            slots = []
            if t != 1:
                slots.append(("expand", b.add(f"s{s}.b{k}.expand", "expand", -1, s, k)))
            p = b.add(f"s{s}.b{k}.project", "project", c, s, k)
            slots.append(("project", p))
            tie.append(p)
            ratios.append(t)
            b.blocks.append(Block(s, k, stride if k == 0 else 1, tuple(slots)))
        b.ties.append(tuple(tie))
    b.add("last", "last", _V2_LAST)
    # the expansion width is t times the block's input width
    prev = 0
    for blk, t in zip(b.blocks, ratios, strict=True):
        e = blk.slot("expand")
        if e is not None:
            b.widths[e] = t * b.widths[prev]
        prev = blk.slot("project")
    return b.build(tuple(n for _, _, n, _ in _V2_STAGES), expand_ratios=tuple(ratios))


def _resnet50_spec() -> FamilySpec:
    b = _SpecBuilder("resnet50")
    b.add("stem", "stem", _R50_STEM)
    for s, (mid, out, n, stride) in enumerate(_R50_STAGES):
        tie = []
        for k in range(n):
            slots = [("conv1", b.add(f"s{s}.b{k}.conv1", "conv1", mid, s, k)),
                     ("conv2", b.add(f"s{s}.b{k}.conv2", "conv2", mid, s, k)),
                     ("conv3", b.add(f"s{s}.b{k}.conv3", "conv3", out, s, k))]
            if k == 0:
                slots.append(("downsample", b.add(f"s{s}.b{k}.downsample", "downsample", out, s, k)))
            tie.extend(i for r, i in slots if r in ("conv3", "downsample"))
            b.blocks.append(Block(s, k, stride if k == 0 else 1, tuple(slots)))
        b.ties.append(tuple(tie))
    return b.build(tuple(n for _, _, n, _ in _R50_STAGES))


SPECS: Mapping[str, FamilySpec] = {
    "mobilenet_v1": _mobilenet_v1_spec(),
    "mobilenet_v2": _mobilenet_v2_spec(),
    "resnet50": _resnet50_spec(),
}


def family_spec(family: str) -> FamilySpec:
    if family not in SPECS:
        raise ValueError(f"family={family!r} is not known; allowed: {', '.join(FAMILIES)}")
    return SPECS[family]


# --- width rounding rules for uniform multipliers ------------------------------------------------

def make_divisible(value: float, divisor: int, min_value: int | None = None) -> int:
    """torchvision's / TF-slim's rule: nearest multiple of ``divisor``, never below 90% of ``value``."""
    min_value = divisor if min_value is None else min_value
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


WIDTH_RULES: Mapping[str, Callable[[int, float], int]] = {
    # int(c * w): the MobileNet V1 paper's multipliers (0.75 -> 768 of 1024) and plain channel pruning
    "floor": lambda c, w: max(1, int(c * w)),
    # round half up, no divisor: torchvision's mobilenet_v2(round_nearest=1)
    "nearest": lambda c, w: make_divisible(c * w, 1),
    # torchvision's default for MobileNet V2 (and TF-slim's): multiples of 8
    "divisible8": lambda c, w: make_divisible(c * w, 8),
}


# --- ArchConfig ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ArchConfig:
    """A concrete network: see the module docstring for the order of ``widths``."""

    family: str
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    resolution: int = 224
    num_classes: int = 1000

    def __post_init__(self) -> None:
        spec = family_spec(self.family)
        object.__setattr__(self, "widths", _int_tuple("widths", self.widths))
        object.__setattr__(self, "depths", _int_tuple("depths", self.depths))
        object.__setattr__(self, "resolution", _positive_int("resolution", self.resolution))
        object.__setattr__(self, "num_classes", _positive_int("num_classes", self.num_classes))
        if len(self.widths) != spec.num_widths:
            raise ValueError(f"widths has {len(self.widths)} entries; {self.family} needs {spec.num_widths} "
                             f"(one per prunable conv of the maximum-depth network, see repro/arch.py)")
        for slot, w in zip(spec.slots, self.widths, strict=True):
            if w <= 0:
                raise ValueError(f"widths[{slot.name}]={w}: a width must be a positive integer")
        if len(self.depths) != len(spec.max_depths):
            raise ValueError(f"depths={list(self.depths)} has {len(self.depths)} stages; {self.family} has "
                             f"{len(spec.max_depths)} (maximum {list(spec.max_depths)})")
        for s, (d, m) in enumerate(zip(self.depths, spec.max_depths, strict=True)):
            if not 1 <= d <= m:
                raise ValueError(f"depths[{s}]={d} is outside 1..{m}, the allowed blocks for stage {s} of "
                                 f"{self.family} (maximum depths {list(spec.max_depths)})")
        for group in spec.ties:
            active = [i for i in group if self.is_active(i)]
            values = {self.widths[i] for i in active}
            if len(values) > 1:
                names = ", ".join(f"{spec.slots[i].name}={self.widths[i]}" for i in active)
                raise ValueError(f"widths break a tie of {self.family}: {names} must be equal "
                                 f"(they are added by residual connections)")

    # --- constructors

    @classmethod
    def canonical(cls, family: str, resolution: int = 224, num_classes: int = 1000) -> ArchConfig:
        spec = family_spec(family)
        return cls(family, spec.canonical_widths, spec.max_depths, resolution, num_classes)

    @classmethod
    def uniform(cls, family: str, width_mult: float = 1.0, resolution: int = 224, num_classes: int = 1000,
                rule: str = "floor", scale_last: bool = True) -> ArchConfig:
        """Every width of the canonical network times ``width_mult``, rounded by ``rule`` (WIDTH_RULES).

        ``scale_last=False`` keeps MobileNet V2's last conv at 1280 when ``width_mult < 1`` (torchvision's
        and the MobileNetV2 paper's convention); it has no effect on other families. MobileNet V2's
        expansion widths are t times the *rounded* input width, as in torchvision.
        """
        if not (isinstance(width_mult, (int, float)) and math.isfinite(width_mult) and width_mult > 0):
            raise ValueError(f"width_mult={width_mult!r} must be a positive number")
        if rule not in WIDTH_RULES:
            raise ValueError(f"rule={rule!r} is not known; allowed: {', '.join(WIDTH_RULES)}")
        spec = family_spec(family)
        round_ = WIDTH_RULES[rule]
        widths = [round_(c, width_mult) for c in spec.canonical_widths]
        if family == "mobilenet_v2":
            prev = widths[0]
            for blk, t in zip(spec.blocks, spec.expand_ratios, strict=True):
                e, p = blk.slot("expand"), blk.slot("project")
                if e is not None:
                    widths[e] = t * prev
                prev = widths[p]
            if not scale_last and width_mult < 1:
                widths[-1] = spec.canonical_widths[-1]
        return cls(family, tuple(widths), spec.max_depths, resolution, num_classes)

    # --- views

    @property
    def spec(self) -> FamilySpec:
        return SPECS[self.family]

    def is_active(self, index: int) -> bool:
        """Whether width entry ``index`` belongs to a block that the depths keep."""
        slot = self.spec.slots[index]
        return slot.stage is None or slot.block < self.depths[slot.stage]

    def active_blocks(self) -> list[Block]:
        return [b for b in self.spec.blocks if b.index < self.depths[b.stage]]

    def replace(self, **changes: Any) -> ArchConfig:
        return dataclasses.replace(self, **changes)

    def with_imagenet_geometry(self) -> ArchConfig:
        """The same architecture with 1000 classes: the network whose cost the suite reports."""
        return self.replace(num_classes=1000)

    # --- JSON

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "widths": list(self.widths), "depths": list(self.depths),
                "resolution": self.resolution, "num_classes": self.num_classes}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArchConfig:
        if not isinstance(data, Mapping):
            raise ValueError(f"an ArchConfig must be a JSON object, got {type(data).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise ValueError(f"unknown ArchConfig field(s) {sorted(unknown)}; allowed: {sorted(fields)}")
        missing = {"family", "widths", "depths"} - set(data)
        if missing:
            raise ValueError(f"ArchConfig is missing field(s) {sorted(missing)}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> ArchConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"not valid JSON: {e}") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> ArchConfig:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"ArchConfig file {path} does not exist")
        try:
            return cls.from_json(path.read_text())
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None


def _int_tuple(name: str, values: Any) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(f"{name}={values!r} must be a list of integers")
    out = []
    for i, v in enumerate(values):
        if isinstance(v, (bool, float)) or not isinstance(v, numbers.Integral):
            raise ValueError(f"{name}[{i}]={v!r} must be an integer")
        out.append(int(v))
    return tuple(out)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, (bool, float)) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{name}={value!r} must be a positive integer")
    return int(value)


def random_arch(family: str, rng: Any, max_width_scale: float = 1.0, resolution_range: tuple[int, int] = (16, 224),
                num_classes: int = 1000) -> ArchConfig:
    """A random valid ArchConfig: depths in 1..max per stage, each width (or tied group) drawn from
    1..ceil(canonical * max_width_scale), a resolution in ``resolution_range``. ``rng`` is a
    ``random.Random``; used by the property tests and benchmarks."""
    spec = family_spec(family)
    widths = [rng.randint(1, max(1, math.ceil(c * max_width_scale))) for c in spec.canonical_widths]
    for group in spec.ties:
        shared = widths[group[0]]
        for i in group:
            widths[i] = shared
    depths = [rng.randint(1, m) for m in spec.max_depths]
    return ArchConfig(family, tuple(widths), tuple(depths), rng.randint(*resolution_range), num_classes)
