"""Table specs: which (method, variant) each row of the paper's tables is, and which Constraint each column is.

Rows and columns come from the reported data (``tables/reported/paper.csv``), in the paper's order; which
method and variant each row is comes from ``tables/reported/rows.csv`` (data: a new method's rows are lines
there). This module adds what the paper's text implies about the columns:

* a FLOPs column's limit is its header in MACs (330M, 1.1G);
* a latency column's limit is the width multiplier in its header (0.75x): the uniform *Channel* model at
  that width, measured in the same run on the same device, is the budget;
* a cell's operating point (``Target``) is the header unless ``tables/reported/operating_points.csv`` names
  another: the FLOPs the paper printed for a baseline run under a budget (``printed``), or the rate or
  speed-up a baseline was published at (``rate``, ``speedup``); ``target="header"`` gives every cell its
  header (the comparison the suite made before operating points);
* Table 1's latency "Proposed method" row and Table 3's "Our method" row do not say which variant they
  are; we take the richest variant the family's FLOPs table shows (``channel+input`` for MobileNet V1,
  ``channel+input+depth`` for ResNet-50). This is our reading, not the paper's statement.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from repro.constraint import HEADER, TARGET_MODES, Constraint, Target
from repro.cost.flops import parse_macs
from tables.reported import NOT_REPORTED, load_reported

FAMILY_OF_TABLE = {1: "mobilenet_v1", 2: "mobilenet_v2", 3: "resnet50"}

# (table, sub-table, group, row) -> (method, variant); None as the table means "any table"
ROWS_CSV = Path(__file__).parent / "reported" / "rows.csv"
OPERATING_POINTS_CSV = Path(__file__).parent / "reported" / "operating_points.csv"
# rows of ours that the paper does not have: controls (tables.claims compares the paper's method with them)
CONTROLS_CSV = Path(__file__).parent / "controls.csv"


@dataclass(frozen=True)
class RowSpec:
    """Which method and variant a row of the paper's tables is (``tables/reported/rows.csv``), and whether it is
    a *baseline* row: the uniform rows, which need not meet their column's limit (the paper's do not) and whose
    latency is the one the paper's other rows are a ratio of."""

    method: str
    variant: str
    baseline: bool


def load_rows(path: Path = ROWS_CSV) -> dict[tuple[int | None, str | None, str, str], RowSpec]:
    """(table, sub-table, group, row) -> its RowSpec; an empty table or sub-table means any."""
    out = {}
    with open(path, newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            if r["baseline"] not in ("yes", "no"):
                raise ValueError(f"{path}: row {r['group']!r} / {r['row']!r}: baseline={r['baseline']!r} must be "
                                 f"'yes' or 'no'")
            key = (int(r["table"]) if r["table"] else None, r["subtable"] or None, r["group"], r["row"])
            if key in out:
                raise ValueError(f"{path}: row {key} is listed twice")
            out[key] = RowSpec(r["method"], r["variant"], r["baseline"] == "yes")
    return out


ROWS = load_rows()

UNIFORM_ROWS = {(g, r): (spec.method, spec.variant) for (t, _s, g, r), spec in ROWS.items()
                if spec.baseline and t is None}


def row_spec(table: int, subtable: str, group: str, row: str) -> RowSpec:
    for key in ((table, subtable, group, row), (None, None, group, row)):
        if key in ROWS:
            return ROWS[key]
    raise KeyError(f"table {table} {subtable}: no method is assigned to row {group!r} / {row!r} in "
                   f"tables/reported/rows.csv")



def load_operating_points(path: Path = OPERATING_POINTS_CSV) -> dict[tuple[int, str, str, str], Target]:
    """(table, sub-table, row, column) -> the cell's ``Target`` for the cells that are not run at their header.
    A ``printed`` line takes the FLOPs the paper printed for that cell (``tables/reported/paper.csv``); a
    ``rate`` or ``speedup`` line its ``value``."""
    printed = {(c.table, c.subtable, c.row, c.column): c.reported for c in load_reported() if c.metric == "flops"}
    out: dict[tuple[int, str, str, str], Target] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            key = (int(r["table"]), r["subtable"], r["row"], r["column"])
            where = f"{path.name}: {key}"
            if key in out:
                raise ValueError(f"{where} is listed twice")
            if r["kind"] == "printed":
                if printed.get(key, NOT_REPORTED) == NOT_REPORTED:
                    raise ValueError(f"{where}: kind 'printed' but the paper prints no FLOPs for that cell")
                if r["value"]:
                    raise ValueError(f"{where}: a 'printed' target takes its value from paper.csv; leave value empty")
                out[key] = Target("flops", parse_macs(printed[key]), f"{r['source']}: {printed[key]}")
            elif r["kind"] in ("rate", "speedup"):
                out[key] = Target(r["kind"], float(r["value"]), r["source"])
            else:
                raise ValueError(f"{where}: kind={r['kind']!r} must be 'printed', 'rate' or 'speedup'")
    return out


OPERATING_POINTS = load_operating_points()


def cell_target(table: int, subtable: str, row: str, column: str, mode: str = "published") -> Target:
    """The operating point of a cell: its published one (``OPERATING_POINTS``, else the header), or the
    header for every cell with ``mode="header"``."""
    if mode not in TARGET_MODES:
        raise ValueError(f"target={mode!r} is not known; allowed: {', '.join(TARGET_MODES)}")
    return HEADER if mode == "header" else OPERATING_POINTS.get((table, subtable, row, column), HEADER)


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
    constraint: Constraint  # the column's
    reported: bool  # the paper gives a number for it (else "—")
    target: Target = HEADER  # the operating point the method aims at (``cell_target``)

    @property
    def label(self) -> str:
        return f"T{self.table} {self.subtable} | {self.row} ({self.method}) | {self.column}"


@dataclass(frozen=True)
class ControlRow:
    """A row of ours the paper lacks (``tables/controls.csv``): a method and variant over some columns."""

    table: int
    subtable: str
    group: str
    row: str
    columns: tuple[str, ...]
    method: str
    variant: str


def load_controls(path: Path = CONTROLS_CSV) -> list[ControlRow]:
    with open(path, newline="", encoding="utf-8") as f:
        return [ControlRow(int(r["table"]), r["subtable"], r["group"], r["row"], tuple(r["columns"].split(";")),
                           r["method"], r["variant"]) for r in csv.DictReader(f)]


def table_cells(table: int, all_cells: bool = False, target: str = "published", controls: bool = False) -> list[Cell]:
    """The cells of ``table`` in the paper's order (sub-table, row, column): the ones the paper reports, and
    every cell of a sub-table it reports nothing of (Table 2's CPU latency, missing from our copy: the suite
    produces it); all of them with ``all_cells``. ``target``: each cell at its operating point
    (``"published"``) or at its column's header (``"header"``). ``controls``: then the control rows of
    ``tables/controls.csv`` (after the paper's, so the paper's cells keep their indices)."""
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
        spec = row_spec(table, subtable, group, row)
        cells.append(Cell(table, subtable, group, row, column, spec.method, spec.variant, FAMILY_OF_TABLE[table],
                          column_constraint(subtable, column), reported,
                          cell_target(table, subtable, row, column, target)))
    if controls:
        cells += [Cell(table, c.subtable, c.group, c.row, column, c.method, c.variant, FAMILY_OF_TABLE[table],
                       column_constraint(c.subtable, column), False)
                  for c in load_controls() if c.table == table for column in c.columns]
    return cells
