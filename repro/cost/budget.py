"""A constraint as the searches see it: a cost function of an architecture and a limit in the same unit.

``make_budget(constraint, family, table)`` is the one place where a constraint becomes a cost function.
``flops`` counts exact conv + linear MACs at ImageNet geometry (``repro.cost.flops.count_macs``, the
analytic counter: tens of thousands of architectures a second). ``cpu_latency`` / ``gpu_latency`` predict
milliseconds with the device's latency table (``repro.cost.latency.LatencyTable``, passed in: the pipeline
opens it for the cell), the limit being the prediction for the column's reference network
(``repro.reference.reference_arch``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from repro.arch import ArchConfig
from repro.constraint import Constraint
from repro.cost.flops import count_macs
from repro.reference import reference_arch

if TYPE_CHECKING:
    from repro.cost.latency import LatencyTable


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


def flops_budget(limit: float) -> Budget:
    """At most ``limit`` MACs (exact count, ImageNet geometry)."""
    return Budget(lambda arch: float(count_macs(arch.with_imagenet_geometry())), float(limit), "MACs")


def latency_budget(table: LatencyTable, reference: ArchConfig) -> Budget:
    """The search budget of a latency column: predicted latency (ms) at most the reference's prediction, both
    from ``table`` (the same table, so the same run and device)."""
    limit = table.predict(reference)
    if table.path is not None:
        table.save()  # the limit's entries on disk before the search uses them (a resumed search reads them)
    # the projection's direction from MACs: central differences of the prediction in every coordinate would
    # measure ~2 new layer shapes per coordinate per projection (4,543 layers in a 2-epoch test search)
    return Budget(lambda arch: table.predict(arch.with_imagenet_geometry()), limit, "ms",
                  direction_cost=lambda arch: float(count_macs(arch.with_imagenet_geometry())),
                  estimate=lambda arch: table.estimate(arch.with_imagenet_geometry()))


def make_budget(constraint: Constraint, family: str, table: LatencyTable | None = None) -> Budget:
    """The budget of ``constraint`` for ``family``; a latency constraint needs its device's ``table``."""
    if not constraint.is_latency:
        return flops_budget(constraint.limit)
    if table is None or table.settings.device != constraint.device:
        have = "none" if table is None else f"a {table.settings.device} table"
        raise ValueError(f"a {constraint.kind} budget needs the {constraint.device} latency table (got {have}): "
                         f"open it with repro.cost.latency.open_table(profile.latency, {constraint.kind!r})")
    return latency_budget(table, reference_arch(family, constraint.limit))
