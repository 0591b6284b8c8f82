"""``python -m tables render --table 1 --profile smoke [--format md|tex|csv|all] [--out DIR]``.

Prints the table (Markdown by default) and, with ``--out`` (or ``--format all``), writes
``table<N>.{md,tex,csv}``, ``claims<N>.{md,tex,csv}`` and the plots ``table<N>_<sub-table>.{png,pdf}`` there
(default ``results/<profile>``). Records are read from ``results/<profile>/records`` unless ``--results DIR``.
``python -m tables claims --table 1 --profile proxy`` prints (and with ``--out`` or ``--format all`` writes)
the paper's claims judged on the same records alone (``tables.claims``).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from repro.constraint import TARGET_MODES
from repro.results import RecordError
from tables.render import Tolerances, build_view, render, write_all
from tables.spec import FAMILY_OF_TABLE


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tables", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render", help="the paper's table beside ours, with a verdict per cell")
    c = sub.add_parser("claims", help="the paper's claims judged on our records: effects, intervals, verdicts")
    for q in (r, c):
        _common(q)
    a = p.parse_args(argv)
    return _main(a)


def _common(r: argparse.ArgumentParser) -> None:
    r.add_argument("--table", type=int, required=True, choices=sorted(FAMILY_OF_TABLE))
    r.add_argument("--profile", default="smoke", help="whose records to read (default smoke)")
    r.add_argument("--results", type=Path, help="results folder (default results/<profile>)")
    r.add_argument("--format", choices=["md", "tex", "csv", "all"], default="md",
                   help="what to print; 'all' also writes every format and the plots")
    r.add_argument("--out", type=Path, help="write table<N>.{md,tex,csv} and plots here")
    r.add_argument("--no-plots", action="store_true", help="with --out / --format all: skip the plots")
    r.add_argument("--flops-tol", type=float, default=0.02, help="relative FLOPs tolerance (default 0.02)")
    r.add_argument("--acc-tol", type=float, default=0.5, help="top-1 tolerance in points (default 0.5)")
    r.add_argument("--latency-tol", type=float, default=0.0,
                   help="allowed latency ratio above 1 (default 0: at most the reference)")
    r.add_argument("--skip-bad", action="store_true", help="render the other records when some are malformed")
    r.add_argument("--target", choices=TARGET_MODES, default="published",
                   help="show each cell's records at its operating point (default) or the records run at the "
                        "column headers (run-table --target header)")


def _main(a: argparse.Namespace) -> int:
    for name in ("flops_tol", "acc_tol", "latency_tol"):
        value = getattr(a, name)
        if not (math.isfinite(value) and value >= 0):
            print(f"error: --{name.replace('_', '-')}={value} must be a finite number of at least 0", file=sys.stderr)
            return 2
    results = a.results or Path("results") / a.profile
    if not (results / "records").is_dir():  # rendering nothing as "not run" would read as a finished table
        print(f"error: no records in {results / 'records'}: run the table first (`nox -s reproduce_table{a.table}` "
              f"or `python -m repro run-table {a.table}`), or pass --results the folder that holds them",
              file=sys.stderr)
        return 2
    try:
        view = build_view(a.table, results / "records", a.profile,
                          Tolerances(a.flops_tol, a.acc_tol, a.latency_tol), skip_bad=a.skip_bad, target=a.target)
    except RecordError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from baselines.zoo import table_notes

    view.notes = table_notes(a.table)
    out = a.out or (results if a.format == "all" else None)
    if a.command == "claims":
        return _claims(view, a.format, out, plots=not a.no_plots)
    if out is not None:
        try:
            for path in write_all(view, out, plots=not a.no_plots):
                print(f"wrote {path}", file=sys.stderr)
        except OSError as e:  # a read-only or full folder: which file, why, what to do
            print(f"error: {getattr(e, 'strerror', None) or e} (writing the table into {out}: pass --out a "
                  f"writable folder)", file=sys.stderr)
            return 2
    print(render(view, "md" if a.format == "all" else a.format), end="")
    return 0


def _claims(view, fmt: str, out: Path | None, plots: bool) -> int:
    from repro.atomic import atomic_write_text
    from tables.claims import evaluate, plot
    from tables.claims import render as claims

    verdicts = evaluate(view)
    if out is not None:
        try:
            out.mkdir(parents=True, exist_ok=True)
            for f in (("md", "tex", "csv") if fmt == "all" else (fmt,)):
                path = out / f"claims{view.table}.{f}"
                atomic_write_text(path, claims(view, f, verdicts))
                print(f"wrote {path}", file=sys.stderr)
            for path in plot(view, verdicts, out) if plots else []:
                print(f"wrote {path}", file=sys.stderr)
        except OSError as e:
            print(f"error: {getattr(e, 'strerror', None) or e} (writing the claims into {out}: pass --out a "
                  f"writable folder)", file=sys.stderr)
            return 2
    print(claims(view, "md" if fmt == "all" else fmt, verdicts), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
