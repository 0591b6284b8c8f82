"""Search spaces of the paper's method: a continuous vector of architecture hyperparameters and the fixed,
deterministic mapping from it to an ArchConfig (our stand-in for the paper's Table 4, whose content is not
in our material).

The vector ``v`` has one coordinate per *width group*, then (variants with ``input``) one for the input
resolution, then (variants with ``depth``) one per stage whose maximum depth exceeds one. Every coordinate is
a ratio to the canonical network, so one noise scale and one step size fit all of them:

* width group ``g`` (the slots of ``repro.arch`` that must share a width, or a single slot): every slot ``i``
  of the group gets ``clamp(m * round(v_g * canonical_i / m), m, canonical_i)`` channels, ``m`` being
  ``width_multiple``. Groups: MobileNet V1 one per layer (14); MobileNet V2 the stem, each block's expansion,
  each stage's tied ``project`` outputs, the last conv (25); ResNet-50 the stem, each bottleneck's ``conv1``
  and ``conv2``, each stage's tied ``conv3``/``downsample`` outputs (37).
* resolution: ``clamp(q * round(v_r * 224 / q), min_resolution, max_resolution)``, ``q`` =
  ``resolution_multiple``. Variants without ``input`` keep 224.
* depth of stage ``s``: ``clamp(round(v_s * max_depth_s), min_depth_s, max_depth_s)`` with
  ``min_depth_s = max(1, ceil(min_depth_ratio * max_depth_s))``. Variants without ``depth`` keep the maximum.

Each entry is non-decreasing in its coordinate, so the cost of ``decode(v)`` is non-decreasing in every
coordinate, with one exception: in MobileNet V1 (no ties) one block more in a stage changes which width
feeds the next stage, which can cost less. ``project`` and ``largest_uniform`` use monotonicity only to
search quickly; they return nothing whose cost they have not checked.

Choices and why (defaults in ``SpaceConfig``; the profiles set them under ``methods.proposed.space``):

* widths from 0.1x to 1.0x of the canonical network: the largest network is the backbone the weight-sharing
  network owns (as in the successor paper, which prunes from the full network); 0.1x leaves room below the
  45M / 1G columns, whose uniform networks are 0.25x / 0.5x.
* widths in multiples of 8: channel counts that GPUs run at full speed, the convention of MobileNet V2,
  MetaPruning and once-for-all.
* resolution from 96 to 224 px in steps of 8: 224 is the backbone's; 96 is below the 45M cells' uniform
  channel+input networks (about 119 px); multiples of 8 keep every stride-2 map's size exact down to 1/8.
* stage depth at least half the maximum: MetaPruning's and once-for-all's depth ranges do not go lower, and a
  stage of one block loses most of its receptive field.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from repro.arch import ArchConfig, family_spec
from repro.cost.budget import Budget

VARIANTS = ("channel", "channel+input", "channel+input+depth")
BASE_RESOLUTION = 224


class InfeasibleConstraint(ValueError):
    """No architecture of the space meets the constraint."""


@dataclass(frozen=True)
class SpaceConfig:
    min_width_ratio: float = 0.1
    max_width_ratio: float = 1.0
    width_multiple: int = 8
    min_resolution: int = 96
    max_resolution: int = 224
    resolution_multiple: int = 8
    min_depth_ratio: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.min_width_ratio <= self.max_width_ratio <= 1:
            raise ValueError(f"space widths {self.min_width_ratio}..{self.max_width_ratio} must satisfy "
                             f"0 < min_width_ratio <= max_width_ratio <= 1 (the backbone is the largest network)")
        if not 8 <= self.min_resolution <= self.max_resolution:
            raise ValueError(f"space resolution {self.min_resolution}..{self.max_resolution} must satisfy "
                             f"8 <= min_resolution <= max_resolution")
        if self.width_multiple < 1 or self.resolution_multiple < 1:
            raise ValueError(f"width_multiple={self.width_multiple} and resolution_multiple="
                             f"{self.resolution_multiple} must be at least 1")
        if not 0 < self.min_depth_ratio <= 1:
            raise ValueError(f"min_depth_ratio={self.min_depth_ratio} must be in (0, 1]")


@dataclass(frozen=True)
class Coordinate:
    name: str  # "w:<first slot>", "resolution", "depth:s<stage>"
    kind: str  # width | resolution | depth
    slots: tuple[int, ...] = ()  # width coordinates: the slots of repro.arch they set
    stage: int | None = None  # depth coordinates


@dataclass(frozen=True)
class SearchSpace:
    """The vector <-> ArchConfig mapping of one family and variant (see the module docstring)."""

    family: str
    variant: str
    config: SpaceConfig = field(default_factory=SpaceConfig)
    num_classes: int = 1000

    def __post_init__(self) -> None:
        family_spec(self.family)
        if self.variant not in VARIANTS:
            raise ValueError(f"variant={self.variant!r} is not a variant of the method; allowed: {', '.join(VARIANTS)}")

    # --- the coordinates

    @property
    def coordinates(self) -> tuple[Coordinate, ...]:
        return _coordinates(self.family, self.variant)

    @property
    def dim(self) -> int:
        return len(self.coordinates)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.coordinates]

    @property
    def lower(self) -> np.ndarray:
        cfg, spec = self.config, family_spec(self.family)
        lo = []
        for c in self.coordinates:
            if c.kind == "width":
                lo.append(cfg.min_width_ratio)
            elif c.kind == "resolution":
                lo.append(cfg.min_resolution / BASE_RESOLUTION)
            else:
                m = spec.max_depths[c.stage]
                lo.append(self._min_depth(m) / m)
        return np.array(lo, dtype=np.float64)

    @property
    def upper(self) -> np.ndarray:
        cfg = self.config
        hi = [cfg.max_width_ratio if c.kind == "width" else
              cfg.max_resolution / BASE_RESOLUTION if c.kind == "resolution" else 1.0 for c in self.coordinates]
        return np.array(hi, dtype=np.float64)

    @property
    def grid_step(self) -> np.ndarray:
        """The change of each coordinate that moves its entry by one rounding step: ``width_multiple`` over
        the group's narrowest canonical width, ``resolution_multiple / 224``, one block over the stage's
        maximum depth (``repro.search.nes`` keeps the perturbation scale above a share of it)."""
        cfg, spec = self.config, family_spec(self.family)
        step = []
        for c in self.coordinates:
            if c.kind == "width":
                step.append(cfg.width_multiple / min(spec.canonical_widths[i] for i in c.slots))
            elif c.kind == "resolution":
                step.append(cfg.resolution_multiple / BASE_RESOLUTION)
            else:
                step.append(1 / spec.max_depths[c.stage])
        return np.array(step, dtype=np.float64)

    @property
    def held(self) -> np.ndarray:
        """The coordinates ``project`` holds where it can (the depths): see ``project``."""
        return np.array([c.kind == "depth" for c in self.coordinates], dtype=bool)

    def clip(self, v: np.ndarray) -> np.ndarray:
        return np.clip(np.asarray(v, dtype=np.float64), self.lower, self.upper)

    def _min_depth(self, max_depth: int) -> int:
        return max(1, math.ceil(self.config.min_depth_ratio * max_depth))

    # --- the mapping

    def decode(self, v: np.ndarray) -> ArchConfig:
        """The architecture of ``v`` (clipped to the bounds first); deterministic."""
        v = np.asarray(v, dtype=np.float64)
        if v.shape != (self.dim,):
            raise ValueError(f"vector has shape {v.shape}; the {self.family} {self.variant} space has {self.dim} "
                             f"coordinates ({', '.join(self.names[:3])}, ...)")
        v = self.clip(v)
        cfg, spec = self.config, family_spec(self.family)
        widths = list(spec.canonical_widths)
        depths = list(spec.max_depths)
        resolution = BASE_RESOLUTION
        m = cfg.width_multiple
        for c, x in zip(self.coordinates, v, strict=True):
            if c.kind == "width":
                for i in c.slots:
                    canon = spec.canonical_widths[i]
                    widths[i] = int(min(canon, max(min(m, canon), m * round(x * canon / m))))
            elif c.kind == "resolution":
                q = cfg.resolution_multiple
                resolution = int(min(cfg.max_resolution, max(cfg.min_resolution, q * round(x * BASE_RESOLUTION / q))))
            else:
                top = spec.max_depths[c.stage]
                depths[c.stage] = int(min(top, max(self._min_depth(top), round(x * top))))
        return ArchConfig(self.family, tuple(widths), tuple(depths), resolution, self.num_classes)

    def uniform(self, ratio: float) -> np.ndarray:
        """Widths (and, for ``input`` variants, the resolution) at ``ratio``, depths at their maximum: the
        uniform *Channel* or *Channel + Input image* network of the variant, on the space's grid."""
        v = np.array([1.0 if c.kind == "depth" else float(ratio) for c in self.coordinates])
        return self.clip(v)


def largest_uniform(space: SearchSpace, budget: Budget, tol: float = 1e-4) -> np.ndarray:
    """The largest uniform vector ``space.uniform(t)`` that meets the budget (bisection on t): the search's
    starting point, i.e. the uniform baseline of the same variant on the space's rounding grid."""
    lo, hi = 0.0, 1.0
    if budget.fits(space.decode(space.uniform(hi))):
        return space.uniform(hi)
    if not budget.fits(space.decode(space.uniform(lo))):
        # depth variants keep full depth in the uniform vectors: fall back to the projection of the smallest
        return project(space, budget, space.lower)
    while hi - lo > tol:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if budget.fits(space.decode(space.uniform(mid))) else (lo, mid)
    return space.uniform(lo)


def cost_direction(space: SearchSpace, budget: Budget, v: np.ndarray, h: float = 0.05) -> np.ndarray:
    """A non-negative estimate of the cost's gradient at ``v`` (central differences of step ``h`` on the
    rounded architectures, of ``budget.direction_cost`` where the budget has one), scaled to a largest
    entry of 1. Zero entries are coordinates that do not change the cost at this scale."""
    v = space.clip(v)
    cost = budget.direction_cost or budget.cost
    d = np.zeros(space.dim)
    for i in range(space.dim):
        up, down = v.copy(), v.copy()
        up[i] += h
        down[i] -= h
        d[i] = cost(space.decode(up)) - cost(space.decode(down))
    d = np.maximum(d, 0.0)
    top = d.max()
    return d / top if top > 0 else d


def project(space: SearchSpace, budget: Budget, v: np.ndarray, fill: float = 0.0, tol: float = 1e-4) -> np.ndarray:
    """The constraint projection: ``v`` clipped to the bounds if that meets the budget; otherwise moved
    against the cost's gradient, ``clip(v - t * d)``, with the smallest ``t`` (bisection) that meets it.

    For a linear cost this is the Euclidean projection onto the budget's half-space, so a projected
    gradient step keeps the usual fixed points (the loss gradient opposite to the cost gradient). ``d`` is
    non-negative and every coordinate raises the cost monotonically, so the cost falls as ``t`` grows.

    ``fill > 0`` also moves a vector that uses less than ``fill`` of the budget *along* the cost gradient
    (of the coordinates that can still grow), as far as it still meets the budget, for up to three rounds:
    a projection onto the budget's boundary, so the search decides how to spend the budget, not whether
    to. Rounding and depth steps can leave it short of ``fill``. Raises ``InfeasibleConstraint`` when even the space's
    smallest architecture is over the limit. Whatever it returns has been checked to meet the budget.

    The ``space.held`` coordinates (the depths) move only when the others alone cannot meet the budget (or,
    with ``fill``, can no longer grow): near a rounding step one block is the steepest way to change the
    cost, so a projection free to move depth puts back every block a search step removes (and removes every
    block a perturbation adds) instead of trading it for width. Measured: with depth free, a planted loss
    that wants fewer blocks under 300M MobileNet V2 MACs kept all 17 blocks through 20 steps.
    """
    v = space.clip(v)
    arch = space.decode(v)
    # a vector whose estimate is clearly over the limit is shrunk without its exact cost (a latency budget
    # would measure it only to move away from it); what _shrink returns is checked with the cost
    clearly_over = budget.estimate is not None and not budget.estimate_fits(arch, margin=-0.05)
    if clearly_over or budget.cost(arch) > budget.limit:
        return _shrink(space, budget, v, tol)
    for round_ in range(3 if fill > 0 else 0):  # rounding and depth steps can stop one pass short
        if budget.cost(space.decode(v)) >= fill * budget.limit:
            break
        d = cost_direction(space, budget, v)
        if round_ > 0:  # then only the coordinates that can still grow by 0.01 without breaking the budget
            steps = v + 0.01 * np.eye(space.dim)
            free = np.array([v[i] < space.upper[i] and budget.estimate_fits(space.decode(steps[i]))
                             for i in range(space.dim)])
            d = d * free if (d * free).any() else (space.upper - v) * free
        v = _grow(space, budget, v, _unheld(space, d, v < space.upper), tol)
    return v


def _shrink(space: SearchSpace, budget: Budget, v: np.ndarray, tol: float) -> np.ndarray:
    lower = space.lower
    if not budget.fits(space.decode(lower)):
        raise _infeasible(space, budget)
    d = cost_direction(space, budget, v)
    d[v <= lower] = 0.0  # coordinates at their bound cannot give any more
    d = _unheld(space, d, v > lower)
    t_hi = _reach(v - lower, d)
    if t_hi is None or not budget.fits(space.decode(space.clip(v - t_hi * d))):
        d, t_hi = v - lower, 1.0  # coordinates the estimate saw as free still cost: shrink all of them
    return _boundary(space, budget, lambda t: space.clip(v - t * d), t_hi, 0.0, tol)


def _boundary(space: SearchSpace, budget: Budget, point: Callable[[float], np.ndarray], good: float, bad: float,
              tol: float) -> np.ndarray:
    """``point(t)`` at the budget's boundary between ``good`` (a step known to meet the budget) and ``bad``,
    on the good side. With an estimate (``Budget.estimate``), bisection on the estimate times a scale, the
    result checked with the cost, and the scale set to the cost / estimate ratio found there, up to four
    times (a secant step: a few costed architectures per projection, not one per probe; a latency budget
    measures each); the point that meets the budget closest to its limit is kept, and if none did, the cost
    itself is bisected. Without an estimate, the cost is bisected."""
    def bisect(fits: Callable[[ArchConfig], bool]) -> float:
        g, b = good, bad
        while abs(g - b) > tol:
            mid = (g + b) / 2
            g, b = (mid, b) if fits(space.decode(point(mid))) else (g, mid)
        return g

    if budget.estimate is not None:
        scale, best, best_cost = 1.0, None, -math.inf
        for _ in range(4):
            t = bisect(lambda arch, s=scale: s * budget.estimate(arch) <= budget.limit)
            arch = space.decode(point(t))
            cost, estimate = budget.cost(arch), budget.estimate(arch)
            if best_cost < cost <= budget.limit:
                best, best_cost = point(t), cost
            if budget.limit * 0.99 <= cost <= budget.limit or estimate <= 0:
                break
            scale = cost / estimate * (1.0 if cost <= budget.limit else 1.01)
        if best is not None:
            return best
    return point(bisect(budget.fits))


def _unheld(space: SearchSpace, d: np.ndarray, movable: np.ndarray) -> np.ndarray:
    """``d`` without the held coordinates, unless the others cannot move (see ``project``)."""
    held = space.held
    rest = d * ~held
    if rest.any():
        return rest
    others = movable & ~held  # the estimate saw no cost in the others: still try them before the depths
    return others.astype(np.float64) if others.any() else d


def _grow(space: SearchSpace, budget: Budget, v: np.ndarray, d: np.ndarray, tol: float) -> np.ndarray:
    """The farthest point along ``d`` (non-negative) from ``v`` that still meets the budget."""
    upper = space.upper
    if budget.fits(space.decode(upper)):
        return upper.copy()
    d = d.copy()
    d[v >= upper] = 0.0
    t_hi = _reach(upper - v, d)
    if t_hi is None:
        return v
    return _boundary(space, budget, lambda t: space.clip(v + t * d), 0.0, t_hi, tol)


def _reach(room: np.ndarray, d: np.ndarray) -> float | None:
    """The step along ``d`` (scaled to a largest entry of 1 in place) at which every moving coordinate has
    used its ``room``; None when nothing moves."""
    if not d.any():
        return None
    d /= d.max()
    moving = d > 0
    return float((room[moving] / d[moving]).max())


def _infeasible(space: SearchSpace, budget: Budget) -> InfeasibleConstraint:
    smallest = space.decode(space.lower)
    return InfeasibleConstraint(
        f"the {space.family} {space.variant} space cannot meet the limit {budget.format(budget.limit)}: its "
        f"smallest architecture costs {budget.format(budget.cost(smallest))}; lower min_width_ratio, "
        f"min_resolution or min_depth_ratio in methods.proposed.space, or raise the limit")


_COORDS: dict[tuple[str, str], tuple[Coordinate, ...]] = {}


def _coordinates(family: str, variant: str) -> tuple[Coordinate, ...]:
    key = (family, variant)
    if key not in _COORDS:
        spec = family_spec(family)
        tied = {i: group for group in spec.ties for i in group}
        coords, seen = [], set()
        for i, slot in enumerate(spec.slots):
            if i in seen:
                continue
            group = tied.get(i, (i,))
            seen.update(group)
            coords.append(Coordinate(f"w:{slot.name}", "width", tuple(group)))
        if "input" in variant:
            coords.append(Coordinate("resolution", "resolution"))
        if "depth" in variant:
            coords += [Coordinate(f"depth:s{s}", "depth", stage=s) for s, m in enumerate(spec.max_depths) if m > 1]
        _COORDS[key] = tuple(coords)
    return _COORDS[key]


# --- samples of a space (a latency table is pre-filled and checked with them) -------------------------------


def grid_archs(family: str, ratios: Sequence[float], resolutions: Sequence[int]) -> list[ArchConfig]:
    """The uniform networks of ``family`` at each width ratio and resolution, on the space's rounding grid
    (this module), full depth."""
    space = SearchSpace(family, "channel+input")
    out = []
    for ratio in ratios:
        for res in resolutions:
            v = space.uniform(ratio)
            v[space.names.index("resolution")] = res / 224
            out.append(space.decode(np.asarray(v)))
    return out


def random_archs(family: str, n: int, seed: int = 0, variant: str = "channel+input+depth") -> list[ArchConfig]:
    """``n`` architectures of the space, each coordinate uniform between its bounds (seeded)."""
    space = SearchSpace(family, variant)
    rng = np.random.default_rng(seed)
    return [space.decode(rng.uniform(space.lower, space.upper)) for _ in range(n)]
