"""Running a table's cells one after another (``run-table``), listing them, and running one by index
(``run-cell --table T --index N``, what a Slurm array task calls). Cells whose method is not built yet,
and GPU-latency cells on a machine without a GPU, are reported ("not available"), not faked."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from repro.cost.latency import device_available
from repro.dataset import PreparedData
from repro.discover import load_methods
from repro.pipeline import cell_key, run_cell
from repro.profiles import Profile
from repro.results import RunRecord, find_record
from tables.spec import Cell, table_cells


@dataclass
class CellStatus:
    cell: Cell
    seed: int
    key: str | None
    status: str  # done | pending | not available: <why>
    record: RunRecord | None = None


def blocked_reason(cell: Cell) -> str | None:
    """Why a cell cannot run in this build, or None."""
    registry = load_methods()
    if cell.method not in registry:
        return f"method {cell.method!r} is not built yet"
    if cell.constraint.device == "cuda" and not device_available("cuda"):
        return "GPU latency needs a CUDA GPU: not run here"
    method = registry[cell.method]
    if cell.family not in method.families:
        return f"method {cell.method!r} is not built for {cell.family} yet"
    if cell.constraint.kind not in method.constraint_kinds:
        return f"method {cell.method!r} has no {cell.constraint.kind.replace('_', ' ')}-constrained form yet"
    return None


def statuses(table: int, profile: Profile, data: PreparedData | None, results: Path,
             all_cells: bool = False) -> list[CellStatus]:
    out = []
    for cell in table_cells(table, all_cells):
        for seed in profile.seeds:
            why = blocked_reason(cell)
            key = None if data is None else cell_key(cell.method, cell.variant, cell.family, cell.constraint,
                                                     profile, seed, data)
            record = None if key is None else find_record(results / "records", key)
            status = "done" if record else (f"not available: {why}" if why else "pending")
            out.append(CellStatus(cell, seed, key, status, record))
    return out


def run_one(st: CellStatus, profile: Profile, data: PreparedData, results: Path, log: Callable[[str], None],
            quiet: bool = False) -> tuple[RunRecord, bool]:
    c = st.cell
    return run_cell(c.method, c.variant, c.family, c.constraint, profile, st.seed, data, results, log=log,
                    quiet=quiet)


def run_table(table: int, profile: Profile, data: PreparedData, results: Path, all_cells: bool = False,
              log: Callable[[str], None] = print, quiet: bool = False,
              methods: list[str] | None = None) -> dict[str, int]:
    """Run every runnable cell (of ``methods`` only, when given); a failing cell is reported and the others
    go on. Returns counts."""
    counts = {"ran": 0, "cached": 0, "failed": 0, "not available": 0}
    todo = statuses(table, profile, data, results, all_cells)
    if methods:
        known = {st.cell.method for st in todo}
        unknown = sorted(set(methods) - known)
        if unknown:
            raise ValueError(f"--method {', '.join(unknown)}: table {table} has no such rows; its methods: "
                             f"{', '.join(sorted(known))}")
        todo = [st for st in todo if st.cell.method in methods]
    bar = tqdm(todo, desc=f"table {table}", unit="cell", disable=True if quiet else None)  # None: off without a TTY
    for st in bar:
        bar.set_postfix_str(st.cell.label[:60])
        if st.status.startswith("not available"):
            counts["not available"] += 1
            continue
        try:
            record, ran = run_one(st, profile, data, results, log, quiet)
        except Exception as e:  # noqa: BLE001 - one cell's failure must not lose the others; reported below
            counts["failed"] += 1
            log(f"FAILED {st.cell.label} (seed {st.seed}): {type(e).__name__}: {e}")
            continue
        counts["ran" if ran else "cached"] += 1
        acc = "—" if record.top1 is None else f"{100 * record.top1:.1f}%"
        log(f"{'ran   ' if ran else 'cached'} {st.cell.label} seed {st.seed}: {record.macs / 1e6:.2f}M MACs, "
            f"top-1 {acc} (proxy on {profile.name})")
    return counts
