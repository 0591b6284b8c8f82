"""The uniform-rescale rules of Tables 1-3 (*Channel*, *Input image*, *Channel + Input image*): shared facts.

The uniform rows (``baselines.uniform``) are these networks, and a latency column's budget is the latency of
the uniform *Channel* network at the column's width (``reference_arch``), so the rules live in the core: a
change here moves the uniform rows and every latency budget together, deliberately.

Each variant turns a FLOPs limit into one ArchConfig by a declared grid and a declared selection rule
(``RULES`` below, one per family). A uniform row need not meet its limit (the paper's do not: 343M under
330M, 3.2G under 3G); only searched rows must.

* ``channel``: every width times one multiplier ``w`` (``ArchConfig.uniform``), resolution 224.
* ``input``: full width, resolution ``r`` (any integer).
* ``channel+input``: width and resolution scaled by one factor ``s``: ``w = s``, ``r = round(224 s)``.

How the rules were found (conv + linear MACs, ``repro.cost.flops``; the numbers are checked by
``tests/test_uniform.py`` against ``tables/reported/uniform_flops.csv``):

* MobileNet V1, ``floor`` widths (``int(c w)``): 0.75 / 0.5 / 0.25 give 325.40M / 149.50M / 41.03M, the
  paper's 325M / 149M / 41M. On a 0.05 grid the multiplier nearest each limit (330M / 150M / 45M) is
  exactly 0.75 / 0.5 / 0.25.
* MobileNet V2: the paper names 0.8x / 0.65x / 0.35x. torchvision's widths without the multiple-of-8
  rounding (``nearest``, last conv kept at 1280) give 202.06M / 139.92M / 49.49M: the first two match
  203M / 140M, the third does not match 43M under any rule we tried (``floor`` with the last conv scaled
  gives 192.79 / 130.08 / 42.34M; ``divisible8``, torchvision's default, 222.48 / 161.91 / 59.29M). The
  multiplier nearest 150M is 0.7 (158.1M), not 0.65, so V2's rule is "the largest multiplier with FLOPs
  within 2% of the limit or under it", which picks 0.8 and 0.65 (and 0.3, 39.5M, at 45M).
* ResNet-50, ``floor`` widths: 0.75 -> 2.323G and 0.5 -> 1.052G match 2.3G and 1.1G; 3.2G needs a
  multiplier of about 0.875-0.89 (0.875 -> 3.144G, inside 2% of 3.2G). On a grid of eighths the multiplier
  nearest each limit (3G / 2G / 1G) is 0.875 / 0.75 / 0.5 (on a 0.05 grid it would be 0.85 / 0.7 / 0.5,
  2.95G / 2.01G, which miss 3.2G and 2.3G); the paper's uniform ResNets are all above their limits.
* Input image: no whole resolution gives 343M exactly under the exact count (r=160 -> 290.68M,
  r=161 -> 345.76M), so the paper counts resolution continuously: MACs(224) (r/224)^2 (``macs_scaled``).
  Under that convention r = 174 / 115 / 61 (V1) and 192 / 152 / 84 (V2) fit the six cells, but no rule
  that picks r from the limit alone gives all of them (their FLOPs are 104%, 100%, 94% of V1's limits and
  110%, 92%, 94% of V2's). The rule used is the nearest scaled FLOPs; the tests list the cells it misses.
* Channel + Input image: likewise, the nearest scaled FLOPs on a 0.01 grid of ``s`` (V2: its
  ``at_most`` rule); it matches V1's 325M and 45.7M (s = 0.87, 0.53) and misses V1's 143M (146.2M at
  s = 0.71) and all three V2 cells.

Altogether the rules reproduce 11 of the 21 uniform FLOPs cells (V1 channel 3/3, input 1/3, channel+input
2/3; V2 channel 2/3, input 0/3, channel+input 0/3; ResNet-50 3/3); ``tests/test_uniform.py`` names the
other 10 with our value beside the paper's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from repro.arch import FAMILIES, ArchConfig
from repro.cost.flops import BASE_RESOLUTION, count_macs, count_macs_scaled

VARIANTS = ("channel", "input", "channel+input")
SELECTIONS = ("nearest", "at_most", "at_least")


@dataclass(frozen=True)
class UniformRule:
    """How one family's uniform networks are made and chosen."""

    width_rule: str  # a key of repro.arch.WIDTH_RULES
    scale_last: bool  # MobileNet V2: scale the last 1x1 conv with the multiplier
    width_step: float  # channel grid: step, step*2, ..., 1.0
    selection: str  # how a grid point is chosen for a limit (SELECTIONS)
    slack: float = 0.0  # at_most / at_least accept points this fraction past the limit
    scale_step: float = 0.01  # channel+input grid of the joint factor s
    min_resolution: int = 32

    def arch(self, family: str, width_mult: float, resolution: int = BASE_RESOLUTION) -> ArchConfig:
        return ArchConfig.uniform(family, width_mult, resolution, rule=self.width_rule,
                                  scale_last=self.scale_last)


RULES: dict[str, UniformRule] = {
    "mobilenet_v1": UniformRule("floor", True, 0.05, "nearest"),
    "mobilenet_v2": UniformRule("nearest", False, 0.05, "at_most", slack=0.02),
    "resnet50": UniformRule("floor", True, 0.125, "nearest"),
}


def _grid(step: float) -> list[float]:
    n = round(1 / step)
    return [round(i * step, 4) for i in range(1, n + 1)]


def select(candidates: list[tuple[ArchConfig, float]], limit: float, selection: str,
           slack: float = 0.0) -> ArchConfig:
    """Pick one (arch, macs) candidate for ``limit``; candidates are ordered by growing cost."""
    if selection == "nearest":
        return min(candidates, key=lambda c: abs(c[1] - limit))[0]
    if selection == "at_most":
        fits = [c for c in candidates if c[1] <= limit * (1 + slack)]
        return (fits[-1] if fits else candidates[0])[0]
    if selection == "at_least":
        above = [c for c in candidates if c[1] >= limit * (1 - slack)]
        return (above[0] if above else candidates[-1])[0]
    raise ValueError(f"selection={selection!r} is not known; allowed: {', '.join(SELECTIONS)}")


def points(family: str, variant: str) -> list[tuple[float, int]]:
    """The variant's grid as (width multiplier, ImageNet-scale resolution), in order of growing cost."""
    rule = RULES[family]
    if variant == "channel":
        return [(w, BASE_RESOLUTION) for w in _grid(rule.width_step)]
    if variant == "input":
        return [(1.0, r) for r in range(rule.min_resolution, BASE_RESOLUTION + 1)]
    if variant == "channel+input":
        return [(s, round(BASE_RESOLUTION * s)) for s in _grid(rule.scale_step)
                if round(BASE_RESOLUTION * s) >= rule.min_resolution]
    raise ValueError(f"variant={variant!r} is not a uniform variant; allowed: {', '.join(VARIANTS)}")


def candidates(family: str, variant: str) -> tuple[list[tuple[ArchConfig, float]], Callable]:
    """The variant's grid as (arch, macs) in order of growing cost, and the MAC convention it uses."""
    grid = points(family, variant)
    cost = count_macs if variant == "channel" else count_macs_scaled
    archs = [RULES[family].arch(family, w, r) for w, r in grid]
    return [(a, cost(a)) for a in archs], cost


def uniform_arch(family: str, variant: str, limit_macs: float) -> ArchConfig:
    """The ArchConfig that the family's uniform rule picks for a FLOPs limit (in MACs)."""
    return uniform_pick(family, variant, limit_macs)[0]


def uniform_pick(family: str, variant: str, limit_macs: float) -> tuple[ArchConfig, tuple[float, int]]:
    """The family's uniform pick for a FLOPs limit (in MACs), with its (width multiplier, resolution)."""
    if family not in RULES:
        raise ValueError(f"family={family!r} is not known; allowed: {', '.join(FAMILIES)}")
    if not limit_macs > 0:
        raise ValueError(f"limit_macs={limit_macs!r} must be a positive number of MACs")
    rule = RULES[family]
    cands, _ = candidates(family, variant)
    chosen = select(cands, limit_macs, rule.selection, rule.slack)
    return chosen, next(pt for pt, (arch, _) in zip(points(family, variant), cands, strict=True) if arch == chosen)


def reference_arch(family: str, multiplier: float) -> ArchConfig:
    """A latency column's reference: the uniform *Channel* network at ``multiplier`` (the family's rule,
    224 px), the same network as the column's uniform row."""
    return RULES[family].arch(family, multiplier)
