"""Where one cell's CPU time goes: ``python scripts/cell_breakdown.py --out F.json -- <run-cell arguments>``.

Runs ``python -m repro run-cell <arguments>`` in this process under ``cProfile`` and sums the cumulative time of
the functions that make up a cell: the training steps, waiting for the loaders' batches, evaluation, FFCV's
compilation (numba), a proposed search's scoring and projections, latency measurement, checkpoints. The
categories overlap where one calls another (a search's weight steps are training steps), and cProfile slows
Python-heavy code more than torch's kernels: read the shares, not the seconds, and compare with the cell's
record (``seconds``) for the unprofiled time. Prints a table; writes it and the top functions as JSON.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# (label, what the pstats entry's "file:line(function)" ends with); the first match of each is summed
CATEGORIES = [
    ("the whole cell (run_cell)", "repro/pipeline.py", "run_cell"),
    ("preparing the data set", "repro/pipeline.py", "prepare_data"),
    ("the method's search", "repro/pipeline.py", "search"),
    ("the reference network (trained once, shared)", "repro/pipeline.py", "reference"),
    ("the retraining (fit)", "repro/train/trainer.py", "fit"),
    ("training steps, everywhere (train_step)", "repro/train/trainer.py", "train_step"),
    ("waiting for FFCV batches (EpochIterator.__next__)", "ffcv/loader/epoch_iterator.py", "__next__"),
    ("evaluation (evaluate_sums)", "repro/train/loop.py", "evaluate_sums"),
    ("FFCV's numba compilation (Dispatcher.compile)", "numba/core/dispatcher.py", "compile"),
    ("importing FFCV (numba, its fields)", "ffcv/__init__.py", "<module>"),
    ("proposed: scoring architectures (NetworkProblem.score)", "repro/search/proposed.py", "score"),
    ("proposed: projections onto the budget (space.project)", "repro/space.py", "project"),
    ("proposed: decoding vectors (SearchSpace.decode)", "repro/space.py", "decode"),
    ("latency: filling the table (LatencyTable.fill)", "repro/cost/latency/table.py", "fill"),
    ("latency: found vs reference (compare_latency)", "repro/cost/latency/measure.py", "compare_latency"),
    ("checkpoints (save_state)", "repro/train/trainer.py", "save_state"),
]


def breakdown(stats: pstats.Stats) -> list[dict]:
    entries = stats.stats  # {(file, line, function): (cc, nc, tt, ct, callers)}
    rows = []
    for label, file_end, function in CATEGORIES:
        found = [(k, v) for k, v in entries.items() if k[0].endswith(file_end) and k[2] == function]
        seconds = max((v[3] for _k, v in found), default=0.0)  # recursive entries: the outermost
        calls = sum(v[1] for _k, v in found)
        rows.append({"what": label, "seconds": round(seconds, 1), "calls": calls})
    return rows


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        raise SystemExit("usage: scripts/cell_breakdown.py --out F.json -- <run-cell arguments>")
    mine, cell = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(mine)
    from repro.cli import main as repro_main

    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    try:
        repro_main(["run-cell", *cell])
    finally:
        profiler.disable()
    wall = time.perf_counter() - start
    stats = pstats.Stats(profiler)
    rows = breakdown(stats)
    total = rows[0]["seconds"] or wall
    print(f"\n{'':52s} {'s':>7s} {'share':>6s} {'calls':>7s}")
    for r in rows:
        print(f"{r['what'][:52]:52s} {r['seconds']:7.1f} {100 * r['seconds'] / total:5.1f}% {r['calls']:7d}")
    top = io.StringIO()
    stats.stream = top
    stats.sort_stats("tottime").print_stats(25)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"run_cell": cell, "profiled_wall_s": round(wall, 1), "rows": rows,
                                    "top_by_own_time": top.getvalue().splitlines()[-30:]}, indent=1) + "\n")


if __name__ == "__main__":
    main()
