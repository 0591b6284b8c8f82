"""A constraint as the searches see it: a cost function of an architecture and a limit in the same unit.

``make_budget(kind, limit, family)`` is the one place where a constraint kind becomes a cost function.
``flops`` counts exact conv + linear MACs at ImageNet geometry (``repro.cost.flops.count_macs``, the
analytic counter: tens of thousands of architectures a second). ``cpu_latency`` / ``gpu_latency`` turn the
reference width multiplier into milliseconds with the device's latency table (``repro.cost.latency``; the
pipeline opens and activates it). ``register_cost_model`` plugs in another model for a kind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from repro.arch import ArchConfig


@dataclass(frozen=True)
class Budget:
    """``cost(arch)`` (of the architecture at ImageNet geometry) and the ``limit`` it must not exceed."""

    cost: Callable[[ArchConfig], float]
    limit: float
    unit: str = "MACs"
    # a cheaper cost with the same trend, for estimating the cost's direction (repro.space.cost_direction)
    # where each new architecture of ``cost`` is expensive (latency: new layers are measured); None: ``cost``
    direction_cost: Callable[[ArchConfig], float] | None = None
    # a cheap approximation of ``cost`` that places a projection's bisection probes (repro.space.project);
    # what the projection returns is always checked with ``cost``. Latency: the table's prediction with the
    # layers it lacks estimated instead of measured. None: ``cost``
    estimate: Callable[[ArchConfig], float] | None = None

    def fits(self, arch: ArchConfig) -> bool:
        return self.cost(arch) <= self.limit

    def estimated(self) -> Budget:
        """This budget with its estimate as the cost (itself without an estimate): for vectors that are
        not scored and need not meet the limit exactly (the joint search's weight-step samples)."""
        return self if self.estimate is None else replace(self, cost=self.estimate, estimate=None)

    def estimate_fits(self, arch: ArchConfig, margin: float = 0.0) -> bool:
        """Whether the estimate (or the cost, without one) is within ``(1 - margin)`` of the limit."""
        return (self.estimate or self.cost)(arch) <= self.limit * (1.0 - margin)

    def ratio(self, arch: ArchConfig) -> float:
        return self.cost(arch) / self.limit

    def format(self, value: float) -> str:
        """``value`` in the budget's unit as messages print it: ``149,500,000 MACs``, ``2.840 ms``."""
        return f"{value:,.0f} {self.unit}" if self.unit == "MACs" else f"{value:.3f} {self.unit}"


def flops_budget(limit: float, family: str | None = None) -> Budget:
    from repro.cost.flops import count_macs

    return Budget(lambda arch: float(count_macs(arch.with_imagenet_geometry())), float(limit), "MACs")


def _latency_model(device: str) -> Callable[[float, str], Budget]:
    def factory(limit: float, family: str) -> Budget:
        from repro.cost.latency import latency_budget

        return latency_budget(device, limit, family)

    factory.__qualname__ = f"latency_budget[{device}]"
    return factory


# latency kinds: ``limit`` is the reference's width multiplier; the cost is the active table's prediction (ms)
COST_MODELS: dict[str, Callable[[float, str], Budget]] = {
    "flops": flops_budget, "cpu_latency": _latency_model("cpu"), "gpu_latency": _latency_model("cuda")}


def register_cost_model(kind: str, factory: Callable[[float, str], Budget], replace: bool = False) -> None:
    """Plug in a cost model for a constraint kind; a second model for the same kind is refused unless
    ``replace``."""
    if kind in COST_MODELS and COST_MODELS[kind] is not factory and not replace:
        raise ValueError(f"a cost model for {kind!r} is registered already ({COST_MODELS[kind].__module__}."
                         f"{COST_MODELS[kind].__qualname__}); pass replace=True to swap it")
    COST_MODELS[kind] = factory


def make_budget(kind: str, limit: float, family: str) -> Budget:
    if kind not in COST_MODELS:
        raise ValueError(f"no cost model for constraint kind {kind!r} (repro.cost.budget.register_cost_model); "
                         f"available: {', '.join(COST_MODELS)}")
    return COST_MODELS[kind](limit, family)
