"""A behaviour snapshot for refactors: what a change of structure must not change, as one JSON file.

* the budget of every cell of Tables 1-3 (FLOPs limits; for latency columns the reference architecture the
  budget is measured from) and, for the deterministic rows (uniform and the zoo), their architectures and MACs;
* every method's search and retraining run end to end through ``run_cell`` on a tiny copy of the embedded data
  set with each setting at its smallest (seed 0): the found architecture, its MACs, top-1, the search's info
  without times, keys and paths, and the proposed method's whole trajectory.

Run it before and after a refactor on the same machine and compare the two files (``--compare A B``): on one
machine the numerics are bitwise repeatable, so any difference is a change of behaviour.

    python scripts/behaviour_snapshot.py --out before.json
    python scripts/behaviour_snapshot.py --compare before.json after.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.test_baselines_cells import SMALL as CELL_SETTINGS  # noqa: E402

SMALL = CELL_SETTINGS
CELLS = [("uniform", "channel", "mobilenet_v1", 150e6), ("proposed", "channel+input", "mobilenet_v1", 150e6),
         ("metapruning", "channel", "mobilenet_v1", 150e6), ("netadapt", "channel", "mobilenet_v1", 330e6),
         ("amc", "channel", "mobilenet_v1", 330e6), ("thinet", "channel", "resnet50", 2e9),
         ("cp", "channel", "resnet50", 2e9), ("sfp", "channel", "resnet50", 2e9),
         ("autopruner", "channel", "resnet50", 2e9), ("proposed", "channel+input+depth", "mobilenet_v2", 150e6)]
VOLATILE = {"key", "folder", "seconds", "reference", "resumed_at_step", "trajectory", "search_key"}


def _clean(value):
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def budgets() -> list[dict]:
    from repro.arch import ArchConfig
    from repro.cost.budget import make_budget
    from repro.cost.flops import count_macs
    from repro.reference import reference_arch, uniform_arch
    from tables.spec import table_cells

    out = []
    for table in (1, 2, 3):
        for cell in table_cells(table, all_cells=True):
            row = {"cell": cell.label, "method": cell.method, "variant": cell.variant,
                   "constraint": [cell.constraint.kind, cell.constraint.limit]}
            if cell.constraint.kind == "flops":
                budget = make_budget(cell.constraint, cell.family)
                row.update(limit=budget.limit, canonical_cost=budget.cost(ArchConfig.canonical(cell.family)))
                if cell.method == "uniform":
                    arch = uniform_arch(cell.family, cell.variant, cell.constraint.limit)
                    row.update(arch=arch.to_dict(), macs=count_macs(arch))
            else:
                row["reference_arch"] = reference_arch(cell.family, cell.constraint.limit).to_dict()
            out.append(row)
    return out


def zoo() -> list[dict]:
    from baselines.zoo import entries
    from repro.cost.flops import count_macs

    return [{"name": e.name, "arch": e.arch.to_dict(), "macs": count_macs(e.arch)} for e in entries()]


def cells(work: Path) -> list[dict]:
    from repro.constraint import Constraint
    from repro.pipeline import prepare_data, run_cell
    from repro.profiles import load_profile
    from tests.conftest import make_tiny_data

    folder = make_tiny_data(work / "data", seed=3, train_per_class=6, per_class=2)
    profile = load_profile("smoke", [f"data.path={folder}", *SMALL])
    data = prepare_data(profile, log=lambda s: None)
    out = []
    for method, variant, family, limit in CELLS:
        start = time.perf_counter()
        record, _ = run_cell(method, variant, family, Constraint("flops", limit), profile, 0, data, work / "results",
                             log=lambda s: None, quiet=True)
        row = {"cell": [method, variant, family, limit], "arch": record.arch, "macs": record.macs,
               "top1": record.top1, "top5": record.top5, "search": _clean(record.extra["search"])}
        if method == "proposed":
            folder_ = next((work / "results" / "searches").glob(f"{record.extra['search']['key']}*"), None)
            if folder_ is None:
                folder_ = work / "results" / record.extra["search"]["folder"]
            row["trajectory"] = (folder_ / "trajectory.jsonl").read_text().splitlines()
        out.append(row)
        print(f"{method} {variant} {family}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return out


def compare(a: Path, b: Path) -> int:
    left, right = json.loads(a.read_text()), json.loads(b.read_text())
    bad = 0
    for part in ("budgets", "zoo", "cells"):
        for x, y in zip(left[part], right[part], strict=True):
            if x != y:
                bad += 1
                print(f"{part} differs:\n  {json.dumps(x)[:600]}\n  {json.dumps(y)[:600]}")
        print(f"{part}: {len(left[part])} entries, {'identical' if not bad else f'{bad} differ'}")
    return 1 if bad else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path)
    p.add_argument("--compare", type=Path, nargs=2)
    args = p.parse_args()
    if args.compare:
        return compare(*args.compare)
    with tempfile.TemporaryDirectory() as work:
        snap = {"budgets": budgets(), "zoo": zoo(), "cells": cells(Path(work))}
    args.out.write_text(json.dumps(snap, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
