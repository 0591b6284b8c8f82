"""A table column's constraint: what a method's architecture must satisfy (``kind``, ``limit``).

``flops``: ``limit`` in MACs at ImageNet geometry. ``gpu_latency`` / ``cpu_latency``: ``limit`` is the width
multiplier of the uniform *Channel* reference (``repro.reference``) whose latency, measured in the same run on
the same device, is the budget (met when the ratio is <= 1). ``repro.cost.budget.make_budget`` turns a
constraint into the cost function the searches call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from repro.cost.flops import format_macs

CONSTRAINT_KINDS = ("flops", "gpu_latency", "cpu_latency")
# the device each latency kind is measured on
LATENCY_DEVICE = {"cpu_latency": "cpu", "gpu_latency": "cuda"}


@dataclass(frozen=True)
class Constraint:
    kind: Literal["flops", "gpu_latency", "cpu_latency"]
    limit: float

    def __post_init__(self) -> None:
        if self.kind not in CONSTRAINT_KINDS:
            raise ValueError(f"constraint kind={self.kind!r} is not known; allowed: {', '.join(CONSTRAINT_KINDS)}")
        if not self.limit > 0:
            raise ValueError(f"constraint limit={self.limit!r} must be positive")

    @property
    def is_latency(self) -> bool:
        return self.kind in LATENCY_DEVICE

    @property
    def device(self) -> str | None:
        """``"cpu"`` / ``"cuda"`` for a latency constraint, None for FLOPs."""
        return LATENCY_DEVICE.get(self.kind)

    def label(self) -> str:
        if self.kind == "flops":
            if self.limit < 1e5:  # "0.0M" would hide a limit typed as 1k
                return f"{self.limit:,.0f} MACs"
            return format_macs(self.limit, 0 if self.limit >= 1e6 and self.limit % 1e6 == 0 else 1)
        return f"{self.limit:g}x {self.kind.replace('_', ' ')}"

    def to_dict(self) -> dict[str, float | str]:
        return {"kind": self.kind, "limit": self.limit}
