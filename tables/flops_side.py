"""An interim view of a table's uniform-rescale rows: the paper's FLOPs beside ours with a verdict, and our
top-1 from the run records where a cell has run (a proxy on any profile but ``imagenet``).

``python -m tables.flops_side --table 1 [--results results/smoke]``. Our FLOPs are measured
(``repro.cost.flops``) for the ArchConfig that ``baselines.uniform`` picks under the column's limit. The
full renderer with every row comes with the tables issue.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from baselines.uniform import uniform_arch
from repro.cost.flops import count_macs, count_macs_scaled, format_macs, parse_macs, reported_tolerance
from tables.reported import load_reported
from tables.spec import FAMILY_OF_TABLE, UNIFORM_ROWS


def _accuracies(results: Path | None, family: str) -> dict[tuple[str, float], list[float]]:
    """(variant, FLOPs limit) -> top-1 of every uniform cell record in ``results``."""
    if results is None or not (results / "records").is_dir():
        return {}
    from repro.results import load_records

    frame, _ = load_records(results / "records")
    out: dict[tuple[str, float], list[float]] = {}
    for r in frame.to_dict("records") if len(frame) else []:
        if r["kind"] == "cell" and r["method"] == "uniform" and r["family"] == family \
                and r["constraint"].get("kind") == "flops" and r["top1"] is not None:
            out.setdefault((r["variant"], r["constraint"]["limit"]), []).append(100 * r["top1"])
    return out


def uniform_flops_rows(table: int, relative_tol: float = 0.02, results: Path | None = None) -> list[dict]:
    family = FAMILY_OF_TABLE[table]
    accuracies = _accuracies(results, family)
    rows = []
    for cell in load_reported():
        key = (cell.group, cell.row)
        if cell.table != table or cell.subtable != "flops" or cell.metric != "flops" or key not in UNIFORM_ROWS:
            continue
        _, variant = UNIFORM_ROWS[key]
        arch = uniform_arch(family, variant, parse_macs(cell.column))
        exact, scaled = count_macs(arch), count_macs_scaled(arch)
        lo, hi = reported_tolerance(cell.reported, relative_tol)
        acc = accuracies.get((variant, parse_macs(cell.column)), [])
        rows.append({"row": cell.row, "column": cell.column, "variant": variant, "reported": cell.reported,
                     "top1": acc,
                     "resolution": arch.resolution, "macs": exact, "macs_scaled": scaled,
                     "verdict": "match" if lo <= scaled < hi else "outside"})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tables.flops_side")
    p.add_argument("--table", type=int, choices=sorted(FAMILY_OF_TABLE), default=1)
    p.add_argument("--tol", type=float, default=0.02, help="relative FLOPs tolerance (default 0.02)")
    p.add_argument("--results", type=Path, help="a results folder (results/<profile>) to take top-1 from")
    args = p.parse_args(argv)
    rows = uniform_flops_rows(args.table, args.tol, args.results)
    print(f"Table {args.table} ({FAMILY_OF_TABLE[args.table]}), uniform-rescale rows, FLOPs side")
    print(f"Verdicts compare the scaled convention MACs(224)*(r/224)^2 with the paper; tolerance: the wider "
          f"of {args.tol:.0%} and half a unit of the printed digit. Top-1: ours is a proxy (embedded data set, "
          f"16 classes) unless the records come from the imagenet profile; the paper's is ImageNet.\n")
    print("| row | column | paper FLOPs | ours (scaled) | ours (exact) | resolution | FLOPs verdict | ours top-1 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        acc = "not run" if not r["top1"] else _mean_std(r["top1"])
        print(f"| {r['row']} | {r['column']} | {r['reported']} | {format_macs(r['macs_scaled'])} | "
              f"{format_macs(r['macs'])} | {r['resolution']} | {r['verdict']} | {acc} |")
    n = sum(r["verdict"] == "match" for r in rows)
    print(f"\n{n} of {len(rows)} cells match, {len(rows) - n} outside tolerance")
    return 0


def _mean_std(values: list[float]) -> str:
    import statistics

    if len(values) == 1:
        return f"{values[0]:.1f}% (proxy)"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}% (proxy, n={len(values)})"


if __name__ == "__main__":
    sys.exit(main())
