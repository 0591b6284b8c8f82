"""The paper's ordering on a profile: the proposed method's *Channel* and *Channel + Input image* rows
beside the uniform *Channel* baseline, at each FLOPs column of a table, over several seeds.

Runs the cells through the pipeline (``run_cell``: cached, so cells already in ``--results`` are read, not
rerun), then writes a Markdown table (top-1 mean ± std over seeds, FLOPs, search and retrain seconds) and
a JSON file with every record's numbers.

    python scripts/proposed_vs_uniform.py --table 1 --seeds 0 1 2 --results results/smoke \
        --out docs/proposed_smoke_evidence
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from repro.atomic import atomic_write_text
from repro.pipeline import prepare_data, run_cell
from repro.profiles import load_profile
from tables.spec import table_cells

ROWS = (("uniform", "channel"), ("proposed", "channel"), ("proposed", "channel+input"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--table", type=int, default=1)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--profile", default="smoke")
    p.add_argument("--results", type=Path, default=None, help="default results/<profile>")
    p.add_argument("--out", type=Path, required=True, help="path without suffix: writes .json and .md")
    a = p.parse_args()
    profile = load_profile(a.profile)
    results = a.results or Path("results") / profile.name
    data = prepare_data(profile)
    cells = [c for c in table_cells(a.table, all_cells=True)
             if c.subtable == "flops" and (c.method, c.variant) in ROWS]
    done = []
    for seed in a.seeds:
        for c in cells:
            record, ran = run_cell(c.method, c.variant, c.family, c.constraint, profile, seed, data, results,
                                   log=lambda line: None, quiet=True)
            done.append({"method": c.method, "variant": c.variant, "column": c.column, "seed": seed,
                         "top1": record.top1, "macs": record.macs, "macs_scaled": record.macs_scaled,
                         "arch": record.arch, "search_seconds": record.search_seconds,
                         "retrain_seconds": record.retrain_seconds, "key": record.key})
            print(("ran   " if ran else "cached"), json.dumps(done[-1]), flush=True)
    atomic_write_text(a.out.with_suffix(".json"), json.dumps(done, indent=1))
    columns = list(dict.fromkeys(c.column for c in cells))
    header = " | ".join(f"{col} top-1 % | {col} MACs" for col in columns)
    lines = [f"| row ({profile.name}, table {a.table}) | {header} | search s (mean) | retrain s (mean) |",
             "|---|" + "---|---|" * len(columns) + "---|---|"]
    for method, variant in ROWS:
        runs = [d for d in done if (d["method"], d["variant"]) == (method, variant)]
        row = [f"{method} {variant}"]
        for col in columns:
            acc = [100 * d["top1"] for d in runs if d["column"] == col]
            macs = [d["macs"] / 1e6 for d in runs if d["column"] == col]
            sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
            row += [f"{statistics.mean(acc):.1f} ± {sd:.1f} ({', '.join(f'{x:.1f}' for x in acc)})",
                    f"{min(macs):.1f}-{max(macs):.1f}M"]
        row += [f"{statistics.mean(d['search_seconds'] or 0 for d in runs):.0f}",
                f"{statistics.mean(d['retrain_seconds'] or 0 for d in runs):.0f}"]
        lines.append("| " + " | ".join(row) + " |")
    atomic_write_text(a.out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
