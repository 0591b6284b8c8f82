"""Running a table's cells (``run-table``, in ``--jobs`` processes), listing them, and running one by index
(``run-cell --table T --index N``, what a Slurm array task calls). Cells whose method is not built yet,
and GPU-latency cells on a machine without a GPU, are reported ("not available"), not faked.

With ``jobs`` > 1 the independent cells run in that many processes, each pinned to its own share of the cores
(``os.sched_setaffinity``; torch's threads and the loaders' workers follow the affinity), so the processes do
not oversubscribe the machine. Shared artifacts (a reference network, a PruningNet) are built once under
their locks by whichever cell needs them first; the others wait. CPU-latency cells run in the pool too: while
one of them measures (a latency table's missing layers, the found network against its reference) it pauses
the other processes (``repro.quiet``), so every measurement has the machine to itself. Each cell's log goes to
``<results>/logs/<key>.log``; one failing cell does not stop the others.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from repro.cost.latency import device_available
from repro.dataset import PreparedData
from repro.discover import load_methods
from repro.distributed import world_size
from repro.pipeline import cell_key, run_cell
from repro.profiles import Profile
from repro.quiet import register, resume_all, stop_all
from repro.results import RecordError, RunRecord, find_record, read_record
from tables.spec import Cell, table_cells


@dataclass
class CellStatus:
    cell: Cell
    seed: int
    key: str | None
    status: str  # done | pending | not available: <why>
    record: RunRecord | None = None


GPU_ONLY = "GPU latency needs a CUDA GPU"  # why a GPU-latency cell is not available here (a GPU task can run it)


def blocked_reason(cell: Cell) -> str | None:
    """Why a cell cannot run in this build, or None."""
    registry = load_methods()
    if cell.method not in registry:
        return f"method {cell.method!r} is not built yet"
    if cell.constraint.device == "cuda" and not device_available("cuda"):
        return f"{GPU_ONLY}: not run here"
    method = registry[cell.method]
    if cell.family not in method.families:
        return f"method {cell.method!r} is not built for {cell.family} yet"
    if cell.constraint.kind not in method.constraint_kinds:
        return f"method {cell.method!r} has no {cell.constraint.kind.replace('_', ' ')}-constrained form yet"
    if cell.target.kind not in method.target_kinds:
        return f"method {cell.method!r} cannot run at a {cell.target.kind} target ({cell.target.label()})"
    return None


def statuses(table: int, profile: Profile, data: PreparedData | None, results: Path,
             all_cells: bool = False, target: str = "published", controls: bool = False) -> list[CellStatus]:
    """Every cell of ``table`` (at its operating point, or at its header with ``target="header"``) and seed of
    the profile, with its key and whether its record exists."""
    out = []
    for cell in table_cells(table, all_cells, target, controls):
        for seed in profile.seeds:
            why = blocked_reason(cell)
            key = None if data is None else cell_key(cell.method, cell.variant, cell.family, cell.constraint,
                                                     profile, seed, data, cell.target)
            record = None if key is None else find_record(results / "records", key)
            status = "done" if record else (f"not available: {why}" if why else "pending")
            out.append(CellStatus(cell, seed, key, status, record))
    return out


def run_one(st: CellStatus, profile: Profile, data: PreparedData, results: Path, log: Callable[[str], None],
            quiet: bool = False) -> tuple[RunRecord, bool]:
    c = st.cell
    return run_cell(c.method, c.variant, c.family, c.constraint, profile, st.seed, data, results, log=log,
                    quiet=quiet, target=c.target)


def cores() -> list[int]:
    """The cores this process may run on."""
    return sorted(os.sched_getaffinity(0))


def default_jobs(cells: int) -> int:
    """How many cells to run at once by default: one on a machine with a CUDA GPU (the cells would share
    it); otherwise one process per core (docs/speed.md: on 2 cores two pinned one-thread processes trained
    1.3-1.5x the images of one two-thread process), at most one per 3 GiB of available memory (a smoke cell
    peaks at about 2.1 GiB), and never more than there are cells."""
    import psutil
    import torch

    if torch.cuda.is_available():
        return 1
    return max(1, min(len(cores()), psutil.virtual_memory().available // (3 << 30), cells))


def share_cores(jobs: int, mine: list[int] | None = None) -> list[list[int]]:
    """``mine`` (this process's cores) split into ``jobs`` disjoint, as-equal-as-can-be shares."""
    mine = cores() if mine is None else mine
    if not 1 <= jobs <= len(mine):
        raise ValueError(f"--jobs={jobs}: this machine gives this process {len(mine)} core(s); give 1 to "
                         f"{len(mine)} (each job needs a core of its own)")
    return [mine[i::jobs] for i in range(jobs)]


def run_table(table: int, profile: Profile, data: PreparedData, results: Path, all_cells: bool = False,
              log: Callable[[str], None] = print, quiet: bool = False,
              methods: list[str] | None = None, jobs: int | None = 1, target: str = "published",
              controls: bool = False) -> dict[str, int]:
    """Run every runnable cell (of ``methods`` only, when given) in ``jobs`` processes (None: ``default_jobs``),
    each at its operating point (``target="header"``: at its column's header); a failing cell is reported and
    the others go on. Returns counts."""
    counts = {"ran": 0, "cached": 0, "failed": 0, "not available": 0}
    todo = statuses(table, profile, data, results, all_cells, target, controls)
    if methods:
        known = {st.cell.method for st in todo}
        unknown = sorted(set(methods) - known)
        if unknown:
            hint = "" if controls or "random" not in unknown else " (the random control's rows run with --controls)"
            raise ValueError(f"--method {', '.join(unknown)}: table {table} has no such rows; its methods: "
                             f"{', '.join(sorted(known))}{hint}")
        todo = [st for st in todo if st.cell.method in methods]
    runnable = [st for st in todo if st.status == "pending"]
    jobs = default_jobs(len(runnable)) if jobs is None else jobs
    if runnable:
        log(estimate(runnable, profile, results, jobs))
    if jobs > 1:
        if world_size() > 1:
            raise ValueError(f"--jobs={jobs} under torchrun: the ranks train each cell together; give --jobs 1")
        shares = share_cores(jobs)
        parallel = schedule(runnable)
        if len(parallel) > 1:
            _run_parallel(parallel, shares, profile, data, results, counts, log, quiet)
            handed = {id(st) for st in parallel}
            todo = [st for st in todo if id(st) not in handed]
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
        _report(st, record, ran, profile, log)
    return counts


def estimate(pending: list[CellStatus], profile: Profile, results: Path, jobs: int) -> str:
    """What running ``pending`` will take, from the times of the cell records already in ``results`` (this
    profile's): a cell's own earlier seeds if any, else its method's cells of the same family; cells with
    neither are counted as unknown. The wall time assumes ``jobs`` cells at a time, kept busy."""
    earlier: list[RunRecord] = []
    for path in sorted((Path(results) / "records").glob("*.json")):
        try:
            r = read_record(path)
        except RecordError:
            continue  # a bad record is reported where the tables read it
        if r.kind == "cell" and r.profile == profile.name:
            earlier.append(r)

    def seconds(r: RunRecord) -> float:
        return (r.search_seconds or 0.0) + (r.retrain_seconds or 0.0)

    total, known, used = 0.0, 0, set()
    for st in pending:
        c = st.cell
        same = [r for r in earlier if (r.method, r.variant, r.family) == (c.method, c.variant, c.family)
                and r.constraint == c.constraint.to_dict() and c.target.is_of(r.target)]
        like = same or [r for r in earlier if (r.method, r.family) == (c.method, c.family)]
        if like:
            total += sum(map(seconds, like)) / len(like)
            known += 1
            used.update(r.key for r in like)
    where = f"{Path(results) / 'records'}"
    if not known:
        return (f"estimate: {len(pending)} cell(s) to run; no earlier {profile.name} record of their methods in "
                f"{where}, so no estimate (each cell's record keeps its time for the next one)")
    unknown = len(pending) - known
    return (f"estimate: {len(pending)} cell(s) to run, about {total / 60:.0f} min of cell time, {total / 60 / jobs:.0f}"
            f" min at {jobs} at a time, from {len(used)} earlier record(s) in {where}"
            + (f"; {unknown} cell(s) with no earlier record of their method are not counted" if unknown else ""))


def schedule(cells: list[CellStatus]) -> list[CellStatus]:
    """The order parallel cells start in: the cells that search first, taking their methods in turn (a
    method's cells share an artifact, MetaPruning's PruningNet say, and two of them started together would
    leave one process waiting for the other's), then the uniform rows, whose one retraining each fills the
    processes' gaps at the end."""
    by_method: dict[str, list[CellStatus]] = {}
    for st in cells:
        if st.cell.method != "uniform":
            by_method.setdefault(st.cell.method, []).append(st)
    queues = list(by_method.values())
    out = []
    while any(queues):
        for q in queues:
            if q:
                out.append(q.pop(0))
    return out + [st for st in cells if st.cell.method == "uniform"]


def _report(st: CellStatus, record: RunRecord, ran: bool, profile: Profile, log: Callable[[str], None]) -> None:
    acc = "—" if record.top1 is None else f"{100 * record.top1:.1f}%"
    log(f"{'ran   ' if ran else 'cached'} {st.cell.label} seed {st.seed}: {record.macs / 1e6:.2f}M MACs, "
        f"top-1 {acc} (proxy on {profile.name})")


def _run_parallel(todo: list[CellStatus], shares: list[list[int]], profile: Profile, data: PreparedData,
                  results: Path, counts: dict[str, int], log: Callable[[str], None], quiet: bool) -> None:
    """``todo`` in ``len(shares)`` worker processes, one share of the cores each; results as they finish."""
    import multiprocessing
    import tempfile
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")  # fork would copy this process's torch thread pools
    queue = context.Queue()
    for share in shares:
        queue.put(share)
    logs = Path(results) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log(f"running {len(todo)} cells in {len(shares)} processes ({', '.join(str(len(s)) for s in shares)} core(s) "
        f"each); each cell's log is {logs}/<key>.log")
    bar = tqdm(total=len(todo), desc="cells", unit="cell", disable=True if quiet else None)
    start, running = time.perf_counter(), {}
    # a SIGTERM (kill, a scheduler's time limit) unwinds like Ctrl-C, so the workers are stopped below: by default
    # this process died alone and its workers ran their cells on as orphans, on cores the next job was given
    previous = _unwind_on_sigterm()
    try:  # the handler stays until the pool's exit has waited for its workers
        # the workers' PIDs, for repro.quiet; removed after the pool's exit, when no worker measures any more
        with tempfile.TemporaryDirectory(prefix="repro-quiet-") as quiet_dir, \
                ProcessPoolExecutor(len(shares), mp_context=context, initializer=_pin,
                                    initargs=(queue, quiet_dir)) as pool:
            try:
                for st in todo:
                    running[pool.submit(_cell_in_worker, st, profile, data, str(results))] = st
                pending = set(running)
                while pending:
                    done, pending = wait(pending, timeout=5, return_when=FIRST_COMPLETED)
                    resume_all(quiet_dir)  # a worker killed while it held the others paused leaves them paused
                    for future in done:
                        st = running[future]
                        try:
                            record, ran, error = future.result()
                        except BrokenProcessPool as e:  # a worker was killed (out of memory, a signal)
                            record, ran, error = None, False, f"its process died ({e})"
                        if error is None:
                            counts["ran" if ran else "cached"] += 1
                            _report(st, record, ran, profile, log)
                        else:
                            counts["failed"] += 1
                            log(f"FAILED {st.cell.label} (seed {st.seed}): {error}; log: {logs / f'{st.key}.log'}")
                        bar.update(1)
                    left = len(pending)
                    elapsed = time.perf_counter() - start
                    finished = len(todo) - left
                    eta = "" if not finished else f", about {elapsed / finished * left / 60:.0f} min left"
                    bar.set_postfix_str(f"{min(left, len(shares))} running, {max(0, left - len(shares))} waiting{eta}")
            except BaseException as e:  # Ctrl-C, SIGTERM (above), or this process's own failure: no cell outlives it
                ended = _stop_workers(pool, quiet_dir)
                why = "interrupted" if isinstance(e, KeyboardInterrupt | SystemExit) else f"failed ({type(e).__name__})"
                log(f"{why}: ended its {ended} worker process(es); a cell they were running wrote no record, and a "
                    f"rerun runs it again (the finished cells' records are kept)")
                raise
            finally:
                resume_all(quiet_dir)  # before the pool's exit waits for its workers
    finally:
        _restore_sigterm(previous)
        bar.close()


def _stop_workers(pool, quiet_dir: str) -> int:
    """End every worker of ``pool`` and cancel the cells not started; how many processes were ended. The
    registered workers are resumed and terminated (``repro.quiet.stop_all``); one still starting has not
    registered yet, so the pool's own process handles are terminated too (read before ``shutdown``, which
    drops them)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    ended = set(stop_all(quiet_dir))
    for process in processes:
        if process.is_alive():
            ended.add(process.pid)
            process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    return len(ended)


def _unwind_on_sigterm():
    """SIGTERM raises SystemExit in this process from now on (the main thread only: elsewhere Python refuses a
    handler, and the default stays); the previous handler, for ``_restore_sigterm``."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum, _frame):
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, stop)


def _restore_sigterm(previous) -> None:
    import signal

    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def _pin(queue, quiet_dir: str) -> None:
    """A worker's start: its own cores, torch's threads to match, and its PID in the quiet folder (other
    workers pause it while they measure latency, ``repro.quiet``)."""
    share = queue.get()
    os.sched_setaffinity(0, share)
    register(Path(quiet_dir))
    import torch

    torch.set_num_threads(len(share))


def _cell_in_worker(st: CellStatus, profile: Profile, data: PreparedData, results: str
                    ) -> tuple[RunRecord | None, bool, str | None]:
    """One cell in a worker process, its output in its log; (record, ran, None) or (None, False, why)."""
    import traceback

    path = Path(results) / "logs" / f"{st.key}.log"
    with open(path, "a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        def log(line: str) -> None:
            print(line, file=f, flush=True)

        log(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {st.cell.label} seed {st.seed} on core(s) "
            f"{sorted(os.sched_getaffinity(0))}")
        try:
            record, ran = run_one(st, profile, data, Path(results), log, quiet=True)
        except Exception as e:  # noqa: BLE001 - reported by the parent with the log's path; the others go on
            traceback.print_exc(file=f)
            return None, False, f"{type(e).__name__}: {e}"
        finally:
            sys.stdout.flush()
        return record, ran, None
