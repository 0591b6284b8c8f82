"""A table column's constraint: what a method's architecture must satisfy (``kind``, ``limit``).

``flops``: ``limit`` in MACs at ImageNet geometry. ``gpu_latency`` / ``cpu_latency``: ``limit`` is the width
multiplier of the uniform *Channel* reference (``repro.reference``) whose latency, measured in the same run on
the same device, is the budget (met when the ratio is <= 1). ``repro.cost.budget.make_budget`` turns a
constraint into the cost function the searches call.

A cell also has a ``Target``, its *operating point*: what its method aims at inside the column. The uniform
rows and the paper's method aim at the column's header (their printed FLOPs are outcomes); a baseline run
under a FLOPs budget aims at the FLOPs the paper printed for it (AMC's 281M in the 330M column); a baseline
run at a published rate applies that rate (ThiNet-70 keeps 70% of the channels it prunes) or speed-up (CP
2x). ``tables/reported/operating_points.csv`` says which, per cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from repro.arch import ArchConfig
from repro.cost.flops import count_macs, format_macs

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


TARGET_KINDS = ("header", "flops", "rate", "speedup")
# how a table's cells are run and shown: each at its operating point, or every one at its column's header
TARGET_MODES = ("published", "header")


@dataclass(frozen=True)
class Target:
    """A cell's operating point. ``header``: the column's constraint (``value`` None); ``flops``: a FLOPs budget
    in MACs (the paper's printed figure for the row); ``rate``: the fraction of the channels a pruning method
    prunes that it keeps (ThiNet-70: 0.7); ``speedup``: the full network's MACs over the budget's (CP 2x: 2).
    ``source`` says where the value comes from (shown in tables and records)."""

    kind: Literal["header", "flops", "rate", "speedup"] = "header"
    value: float | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if self.kind not in TARGET_KINDS:
            raise ValueError(f"target kind={self.kind!r} is not known; allowed: {', '.join(TARGET_KINDS)}")
        if self.kind == "header":
            if self.value is not None:
                raise ValueError(f"a header target takes no value (got {self.value!r}): the column's limit is it")
        elif self.value is None or not self.value > 0:
            raise ValueError(f"target {self.kind} needs a positive value, got {self.value!r}")
        elif self.kind == "rate" and not self.value <= 1:
            raise ValueError(f"target rate={self.value!r} is the fraction of channels kept: within (0, 1]")
        elif self.kind == "speedup" and not self.value >= 1:
            raise ValueError(f"target speedup={self.value!r} is the full network's MACs over the budget's: at least 1")

    @property
    def is_header(self) -> bool:
        return self.kind == "header"

    def constraint(self, header: Constraint, family: str) -> Constraint:
        """The constraint the search runs under: the FLOPs budget of a ``flops`` or ``speedup`` target (the
        MACs of ``family``'s full network over the speed-up), else the column's (a rate method applies its rate
        and never needs a budget)."""
        if self.kind == "flops":
            return Constraint("flops", float(self.value))
        if self.kind == "speedup":
            return Constraint("flops", count_macs(ArchConfig.canonical(family)) / float(self.value))
        return header

    def label(self) -> str:
        if self.kind == "header":
            return "the column's header"
        if self.kind == "flops":
            v = float(self.value)
            return f"{v / 1e9:.3g}G" if v >= 1e9 else f"{v / 1e6:.3g}M"
        if self.kind == "rate":
            return f"keep rate {self.value:g}"
        return f"{self.value:g}x speed-up"

    def to_dict(self) -> dict[str, Any] | None:
        """As a record holds it (with the MACs the search met added, ``repro.pipeline``); None for the header,
        as in every record made before targets existed. Keys hold ``key()``."""
        return None if self.is_header else {"kind": self.kind, "value": self.value, "source": self.source}

    def key(self) -> dict[str, Any] | None:
        """What a cell's and a search's key hold: kind and value (the source's wording changes no result)."""
        return None if self.is_header else {"kind": self.kind, "value": self.value}

    def is_of(self, held: dict[str, Any] | None) -> bool:
        """Whether a record's ``target`` mapping (``to_dict``, and what the pipeline adds) is this operating
        point: None is the header's; a malformed mapping is no point's."""
        if held is None or self.is_header:
            return held is None and self.is_header
        try:
            return held["kind"] == self.kind and math.isclose(float(held["value"]), float(self.value), rel_tol=1e-9)
        except (KeyError, TypeError, ValueError):
            return False

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Target:
        return cls() if d is None else cls(d["kind"], d.get("value"), d.get("source", ""))


HEADER = Target()  # the column's header: every uniform row and the paper's method, and any cell by default
