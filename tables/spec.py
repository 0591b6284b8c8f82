"""Table specs: which (method, variant) each row of the paper's tables is, and which Constraint each column is.

Rows and columns come from the reported data (``tables/reported/paper.csv``), in the paper's order; this
module only adds what the paper's text implies about them:

* a FLOPs column's limit is its header in MACs (330M, 1.1G);
* a latency column's limit is the width multiplier in its header (0.75x): the uniform *Channel* model at
  that width, measured in the same run on the same device, is the budget;
* Table 1's latency "Proposed method" row and Table 3's "Our method" row do not say which variant they
  are; we take the richest variant the family's FLOPs table shows (``channel+input`` for MobileNet V1,
  ``channel+input+depth`` for ResNet-50). This is our reading, not the paper's statement.
"""

from __future__ import annotations

from dataclasses import dataclass

from repro.cost.flops import parse_macs
from repro.method import Constraint
from tables.reported import load_reported

FAMILY_OF_TABLE = {1: "mobilenet_v1", 2: "mobilenet_v2", 3: "resnet50"}

# (table, sub-table, group, row) -> (method, variant); None as the table means "any table"
ROWS: dict[tuple[int | None, str | None, str, str], tuple[str, str]] = {
    (None, None, "Uniform rescale baseline", "Channel"): ("uniform", "channel"),
    (None, None, "Uniform rescale baseline", "Input image"): ("uniform", "input"),
    (None, None, "Uniform rescale baseline", "Channel + Input image"): ("uniform", "channel+input"),
    (None, None, "Uniform rescale baseline", "Baseline"): ("uniform", "channel"),
    (None, None, "Uniform baseline", "Uniform"): ("uniform", "channel"),
    (None, None, "State of the art", "NetAdapt"): ("netadapt", "channel"),
    (None, None, "State of the art", "AMC"): ("amc", "channel"),
    (None, None, "State of the art", "MetaPruning"): ("metapruning", "channel"),
    (None, None, "Proposed method", "Channel"): ("proposed", "channel"),
    (None, None, "Proposed method", "Channel + Input image"): ("proposed", "channel+input"),
    (None, None, "Proposed method", "Channel + Input image + Depth"): ("proposed", "channel+input+depth"),
    (1, "gpu_latency", "Proposed method", "Proposed method"): ("proposed", "channel+input"),
    (None, None, "Traditional pruning", "AutoPruner (Luo & Wu, 2018)"): ("autopruner", "channel"),
    (None, None, "Traditional pruning", "ThiNet (Luo et al., 2017)"): ("thinet", "channel"),
    (None, None, "Traditional pruning", "CP (He et al., 2017)"): ("cp", "channel"),
    (None, None, "Traditional pruning", "SFP (He et al., 2018a)"): ("sfp", "channel"),
    (None, None, "AutoML-based", "MetaPruning (Liu et al., 2019)"): ("metapruning", "channel"),
    (None, None, "Proposed", "Our method"): ("proposed", "channel+input+depth"),
    (None, None, "Proposed", "Channel + Input image"): ("proposed", "channel+input"),
    (None, None, "Proposed", "Channel + Input image + Depth"): ("proposed", "channel+input+depth"),
}

UNIFORM_ROWS = {(g, r): mv for (t, s, g, r), mv in ROWS.items() if mv[0] == "uniform" and t is None}


def row_method(table: int, subtable: str, group: str, row: str) -> tuple[str, str]:
    for key in ((table, subtable, group, row), (None, None, group, row)):
        if key in ROWS:
            return ROWS[key]
    raise KeyError(f"table {table} {subtable}: no method is assigned to row {group!r} / {row!r} in tables/spec.py")


def column_constraint(subtable: str, column: str) -> Constraint:
    if subtable == "flops":
        return Constraint("flops", parse_macs(column))
    return Constraint(subtable, float(column.rstrip("×x")))  # "0.75×" -> 0.75


@dataclass(frozen=True)
class Cell:
    """One cell of a table: a method's variant under one column's constraint."""

    table: int
    subtable: str
    group: str
    row: str
    column: str
    method: str
    variant: str
    family: str
    constraint: Constraint
    reported: bool  # the paper gives a number for it (else "—")

    @property
    def label(self) -> str:
        return f"T{self.table} {self.subtable} | {self.row} ({self.method}) | {self.column}"


def table_cells(table: int, all_cells: bool = False) -> list[Cell]:
    """The cells of ``table`` in the paper's order (sub-table, row, column): the ones the paper reports, and
    every cell of a sub-table it reports nothing of (Table 2's CPU latency, missing from our copy: the suite
    produces it); all of them with ``all_cells``."""
    if table not in FAMILY_OF_TABLE:
        raise ValueError(f"table={table} is not one of the paper's tables ({', '.join(map(str, FAMILY_OF_TABLE))})")
    seen: dict[tuple[str, str, str, str], bool] = {}
    for c in load_reported():
        if c.table != table or c.metric == "optimization_time":
            continue
        key = (c.subtable, c.group, c.row, c.column)
        seen[key] = seen.get(key, False) or c.value is not None
    silent = {sub for (sub, *_), _r in seen.items()} - {sub for (sub, *_), r in seen.items() if r}
    cells = []
    for (subtable, group, row, column), reported in seen.items():
        if not (reported or all_cells or subtable in silent):
            continue
        method, variant = row_method(table, subtable, group, row)
        cells.append(Cell(table, subtable, group, row, column, method, variant, FAMILY_OF_TABLE[table],
                          column_constraint(subtable, column), reported))
    return cells
