"""The FLOPs side of a table's uniform-rescale rows: the paper's value beside ours, with a verdict.

``python -m tables.flops_side --table 1``. Our value is measured (``repro.cost.flops``) for the
ArchConfig that ``baselines.uniform`` picks under the column's limit; accuracy is not trained here.
"""

from __future__ import annotations

import argparse
import sys

from baselines.uniform import uniform_arch
from repro.cost.flops import count_macs, count_macs_scaled, format_macs, parse_macs, reported_tolerance
from tables.reported import load_reported
from tables.spec import FAMILY_OF_TABLE, UNIFORM_ROWS


def uniform_flops_rows(table: int, relative_tol: float = 0.02) -> list[dict]:
    family = FAMILY_OF_TABLE[table]
    rows = []
    for cell in load_reported():
        key = (cell.group, cell.row)
        if cell.table != table or cell.subtable != "flops" or cell.metric != "flops" or key not in UNIFORM_ROWS:
            continue
        _, variant = UNIFORM_ROWS[key]
        arch = uniform_arch(family, variant, parse_macs(cell.column))
        exact, scaled = count_macs(arch), count_macs_scaled(arch)
        lo, hi = reported_tolerance(cell.reported, relative_tol)
        rows.append({"row": cell.row, "column": cell.column, "variant": variant, "reported": cell.reported,
                     "resolution": arch.resolution, "macs": exact, "macs_scaled": scaled,
                     "verdict": "match" if lo <= scaled < hi else "outside"})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tables.flops_side")
    p.add_argument("--table", type=int, choices=sorted(FAMILY_OF_TABLE), default=1)
    p.add_argument("--tol", type=float, default=0.02, help="relative FLOPs tolerance (default 0.02)")
    args = p.parse_args(argv)
    rows = uniform_flops_rows(args.table, args.tol)
    print(f"Table {args.table} ({FAMILY_OF_TABLE[args.table]}), uniform-rescale rows, FLOPs side")
    print(f"Verdicts compare the scaled convention MACs(224)*(r/224)^2 with the paper; tolerance: the wider "
          f"of {args.tol:.0%} and half a unit of the printed digit. Accuracy: not run yet.\n")
    print("| row | column | paper | ours (scaled) | ours (exact) | resolution | verdict |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['row']} | {r['column']} | {r['reported']} | {format_macs(r['macs_scaled'])} | "
              f"{format_macs(r['macs'])} | {r['resolution']} | {r['verdict']} |")
    n = sum(r["verdict"] == "match" for r in rows)
    print(f"\n{n} of {len(rows)} cells match, {len(rows) - n} outside tolerance")
    return 0


if __name__ == "__main__":
    sys.exit(main())
