"""The paper's numbers, transcribed cell by cell from ``shared/paper/TABLES.md`` into
``tables/reported/paper.csv``: table, sub-table, group, row, column, metric, the value as printed, unit.
"—" (nothing reported) is kept as printed and read as ``value = None``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from repro.cost.flops import parse_macs

PAPER_CSV = Path(__file__).parent / "reported" / "paper.csv"
NOT_REPORTED = "—"


@dataclass(frozen=True)
class ReportedCell:
    table: int
    subtable: str  # flops | gpu_latency | cpu_latency
    group: str
    row: str
    column: str  # the constraint as printed: 330M, 0.75x, 3G
    metric: str  # top1 | flops | latency | optimization_time
    reported: str  # as printed in the paper: 68.4%, 325M, 5.620ms, —
    unit: str  # percent | MACs | ms | device-hours

    @property
    def value(self) -> float | None:
        """The number in ``unit`` (MACs for FLOPs, percent for accuracy, ms for latency); None for "—"."""
        if self.reported == NOT_REPORTED:
            return None
        if self.metric == "flops":
            return parse_macs(self.reported)
        return float(self.reported.rstrip("%").removesuffix("ms"))


def load_reported(path: Path = PAPER_CSV) -> list[ReportedCell]:
    with open(path, newline="", encoding="utf-8") as f:
        return [ReportedCell(**{**r, "table": int(r["table"])}) for r in csv.DictReader(f)]
