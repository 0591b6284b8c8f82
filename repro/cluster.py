"""A table's cells and seeds as one Slurm array (``python -m repro submit``), its cost stated first, and where
each stands (``python -m repro status``).

``submit`` lists the table as ``run-table T --list`` does (cells x the profile's seeds, in that order: a line's
index is an array task's ``SLURM_ARRAY_TASK_ID``), keeps the lines that can run and are neither done nor in the
queue already, prints what they will cost, and submits ``scripts/slurm_table.sh`` over them with ``sbatch``
(``--dry-run``: only prints, the ``sbatch`` line included). Each submission is written to
``<results>/slurm/<job>.json`` (its lines, their keys and seeds, the ``sbatch`` line), and its task logs go to
``<results>/slurm/logs/``. A task killed by its time limit resumes from its checkpoint when submitted again:
``submit`` again submits what is left.

The cost is a model, not a measurement (it says so where it prints): each cell's phases as its method declares
them (``repro.method.Work``) plus the retraining, in images through a network; a network's training time per
image is the family's measured rate (images/s of its canonical network at 224 px on one GPU:
``docs/latency_evidence``'s GPU check, or ``--rates FILE``) times ``(cell MACs / full MACs) ** 0.5`` (the
exponent fits the GPU-latency of the uniform MobileNet widths at batch 256 on that GPU: 0.47-0.49 for V1 and
0.54-0.70 for V2, ``docs/latency.md``); a forward pass counts a third of a training step. The distributed parts
(retraining, the paper's joint search) divide by the node's GPUs; a search written for one process runs on one
GPU of the node while the others wait, so its node time counts every GPU of the node.
"""

from __future__ import annotations

import json
import math
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repro.arch import ArchConfig
from repro.atomic import atomic_write_text
from repro.cost.flops import count_macs
from repro.discover import get_method
from repro.method import Work
from repro.profiles import Profile
from repro.runner import GPU_ONLY

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = "scripts/slurm_table.sh"
DEFAULT_RATES = ROOT / "docs" / "latency_evidence" / "gpu_check_h100_b256_chain_v3.json"
# ImageNet-1k as the imagenet profile splits it (50 sub-eval images per class), for an estimate made before the
# data is prepared (a login node without the data)
IMAGENET_SIZES = {"train": 1_281_167, "subeval": 50_000, "subtrain": 1_281_167 - 50_000}
EXPONENT = 0.5  # time per image ~ MACs ** EXPONENT within a family (see the module docstring)
FORWARD = 1 / 3  # a forward pass against a training step's forward + backward
MAX_HOURS = 72  # the script's own time limit, and the most ``--time`` the estimate sets


class ClusterError(ValueError):
    """A submission that cannot be made as asked: one line naming the value and the fix."""


@dataclass(frozen=True)
class Rates:
    """Training images/s per GPU of each family's canonical network at 224 px, and where they come from."""

    per_family: dict[str, float]
    device: str
    source: str

    @classmethod
    def load(cls, path: Path) -> Rates:
        try:
            d = json.loads(Path(path).read_text())
            per_family = {t["family"]: float(t["images_per_s"]) for t in d["throughput"]}
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ClusterError(f"--rates {path} is not a GPU check's JSON with a 'throughput' list of "
                               f"{{family, images_per_s}} ({type(e).__name__}: {e}): give the file "
                               f"scripts/gpu_check.py wrote") from None
        device = str(d.get("device_id") or d.get("device") or "unnamed device")
        path = Path(path).resolve()
        return cls(per_family, device, str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path))


@dataclass
class CellCost:
    """One line's GPU-seconds: ``phases`` as (what, seconds on one GPU, distributed, shared name or None)."""

    index: int
    label: str
    seed: int
    phases: list[tuple[str, float, bool, str | None]] = field(default_factory=list)
    declared: bool = True  # the method declared its search's work (else only the retraining is counted)
    known: bool = True  # a rate for the family exists


def found_macs(cell, family: str) -> float:
    """The MACs a cell's network is modelled at: its FLOPs budget (a target's, or the column's), or for a latency
    column or a keep rate the uniform Channel network at the column's width or the full network's."""
    constraint = cell.target.constraint(cell.constraint, family)
    if constraint.kind == "flops":
        return float(constraint.limit)
    return float(count_macs(ArchConfig.uniform(family, float(constraint.limit))))


def cell_cost(st, index: int, profile: Profile, sizes: dict[str, int], rates: Rates) -> CellCost:
    cell = st.cell
    family = cell.family
    out = CellCost(index, cell.label, st.seed)
    rate = rates.per_family.get(family)
    if rate is None:
        out.known = False
        return out
    method = get_method(cell.method)
    config = method.config(profile.methods, family)
    full = float(count_macs(ArchConfig.canonical(family)))
    fraction = min(1.0, found_macs(cell, family) / full)
    works = method.work(family, cell.variant, config, profile, fraction)
    if works is None:
        out.declared, works = False, []
    recipe = method.retrain_recipe(profile, family)
    works = [*works, Work(f"{'fine-tuning' if method.retrain == 'finetune' else 'retraining'}: {recipe.epochs:g} "
                          f"epochs", recipe.epochs, "train", "found")]
    for w in works:
        images = w.images * (sizes[w.split] if w.split else 1)
        per_image = (fraction ** EXPONENT if w.network == "found" else 1.0) / rate
        seconds = images * per_image * (FORWARD if w.forward_only else 1.0)
        # what runs under torchrun: the retraining, a shared reference (trained as a retraining), and the whole
        # search of a distributed method; a one-process search (and its PruningNet) runs on one GPU
        distributed = w is works[-1] or w.shared == "reference" or method.distributed
        out.phases.append((w.what, seconds, distributed, None if w.shared is None else f"{w.shared}:{family}:"
                           f"{st.seed}"))
    return out


@dataclass
class Estimate:
    lines: list[str]
    compute_hours: float
    allocated_hours: float
    longest_task_hours: float


def task_seconds(costs: list[CellCost], gpus: int) -> list[tuple[CellCost, float, float]]:
    """(cost, compute seconds, wall seconds on its node) per task. A shared phase (a reference network, a
    PruningNet) is computed once, by the first task that needs it; a later task of the same family and seed
    waits for it under its lock and holds its node meanwhile, so the wait is in its wall time (as if every task
    started together: the most it can be), not in its compute."""
    built: dict[str, float] = {}
    out = []
    for c in costs:
        compute = wall = 0.0
        for _what, seconds, distributed, shared in c.phases:
            phase_wall = seconds / gpus if distributed and gpus > 1 else seconds
            if shared is not None and shared in built:
                wall += built[shared]
                continue
            if shared is not None:
                built[shared] = phase_wall
            compute += seconds
            wall += phase_wall
        out.append((c, compute, wall))
    return out


def estimate(costs: list[CellCost], gpus: int, rates: Rates) -> Estimate:
    """Totals over the array (``task_seconds``)."""
    undeclared = [c.index for c in costs if c.known and not c.declared]
    unknown = [c.index for c in costs if not c.known]
    per_task = [t for t in task_seconds(costs, gpus) if t[0].known]
    compute = sum(t[1] for t in per_task)
    allocated = sum(t[2] for t in per_task) * max(gpus, 1)
    longest = max((t[2] for t in per_task), default=0.0)
    lines = [f"cost model (not a measurement): {compute / 3600:,.0f} GPU-hours of compute, at most "
             f"{allocated / 3600:,.0f} GPU-hours allocated ({len(per_task)} task(s) x {max(gpus, 1)} GPU(s); a "
             f"one-process search holds its node's other GPUs idle, a task waiting for a shared network holds "
             f"its node), the longest task about {longest / 3600:,.1f} h",
             f"  rates: {', '.join(f'{k} {v:,.0f}' for k, v in sorted(rates.per_family.items()))} training images/s "
             f"per GPU at 224 px ({rates.device}, {rates.source}); time per image x (MACs / full MACs)^{EXPONENT}, "
             f"a forward pass {FORWARD:.2f} of a step, data loading not counted"]
    if undeclared:
        lines.append(f"  {len(undeclared)} task(s) whose method declares no search cost count their retraining only: "
                     f"{_ranges(undeclared)}")
    if unknown:
        lines.append(f"  {len(unknown)} task(s) of a family without a rate are not counted: {_ranges(unknown)}")
    return Estimate(lines, compute / 3600, allocated / 3600, longest / 3600)


def cost_table(costs: list[CellCost], gpus: int) -> list[str]:
    """Per line of the array: GPU-hours of compute and the task's wall hours on its node (``task_seconds``)."""
    out = []
    for c, compute, wall in task_seconds(costs, gpus):
        if not c.known:
            out.append(f"{c.index:4d}  {c.label:56}  seed {c.seed}  no rate for its family")
            continue
        out.append(f"{c.index:4d}  {c.label:56}  seed {c.seed}  {compute / 3600:8.1f} GPU-h  {wall / 3600:6.1f} h"
                   + ("" if c.declared else "  (retraining only: search cost not declared)"))
    return out


def _ranges(indices: list[int]) -> str:
    """Slurm's array syntax for sorted indices: 0-3,7,9-10."""
    out: list[str] = []
    for i in sorted(set(indices)):
        if out and out[-1][1] == i - 1:
            out[-1][1] = i
        else:
            out.append([i, i])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in out)


def parse_indices(text: str) -> list[int]:
    """``0-3,7`` -> [0, 1, 2, 3, 7] (Slurm's array syntax without steps)."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                a, b = (int(x) for x in part.split("-", 1))
                if b < a:
                    raise ValueError
                out.extend(range(a, b + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise ClusterError(f"--indices {text!r}: {part!r} is not an index or a range a-b (e.g. --indices "
                               f"0-3,7, lines of run-table --list)") from None
    return sorted(set(out))


# the queue -------------------------------------------------------------------------------------------------------

def submissions(results: Path, table: int) -> list[dict[str, Any]]:
    """This table's submission files, oldest first."""
    out = []
    for path in sorted((Path(results) / "slurm").glob("*.json")):
        try:
            d = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if d.get("table") == table:
            out.append(d)
    return sorted(out, key=lambda d: d.get("submitted", ""))


def queue(jobs: list[str]) -> dict[str, str] | None:
    """``{"<job>_<task>": state}`` of these jobs' tasks still in Slurm's queue (squeue, one line per array
    task), or None when squeue cannot be asked."""
    if not jobs:
        return {}
    if shutil.which("squeue") is None:
        return None
    listed = _squeue(",".join(jobs))
    if listed is None:  # a job id Slurm forgot makes squeue fail: ask job by job
        out: dict[str, str] = {}
        for job in jobs:
            out.update(_task_states(_squeue(job) or ""))
        return out
    return _task_states(listed)


def _squeue(jobs: str) -> str | None:
    """squeue's lines (``<job>_<task>|STATE``) for a comma-separated job list; None where it fails."""
    return _slurm(["squeue", "-h", "-r", "-j", jobs, "-o", "%i|%T"])


def _slurm(cmd: list[str]) -> str | None:
    """A Slurm command's output; None where it cannot run, times out or fails."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _task_states(text: str) -> dict[str, str]:
    """``<task>|STATE ...`` lines as {task: STATE}: the state's first word (sacct writes "CANCELLED by 0")."""
    out = {}
    for line in text.splitlines():
        if "|" in line:
            task, state = line.split("|", 1)
            out[task.strip()] = state.split()[0] if state.split() else ""
    return out


def accounting(jobs: list[str]) -> dict[str, str]:
    """Finished tasks' states from ``sacct`` where Slurm keeps accounting (FAILED, TIMEOUT, CANCELLED, ...);
    empty where it does not."""
    if not jobs or shutil.which("sacct") is None:
        return {}
    return _task_states(_slurm(["sacct", "-n", "-P", "-X", "-j", ",".join(jobs), "-o", "JobID,State"]) or "")


def label_id(st) -> str:
    """A line's name without its key (no data prepared): its cell, operating point and seed."""
    return f"{st.cell.label} | {st.cell.target.label()} | seed {st.seed}"


def submission_lines(listed, indices: list[int]) -> dict[str, dict[str, Any]]:
    """What a submission file keeps of its lines: each one's key (its cell key names the profile's settings,
    the data and the seed), its label id and seed, so that a later list with other flags or seeds finds the
    same (cell, seed) whatever its index there."""
    return {str(i): {"key": listed[i].key, "label": label_id(listed[i]), "seed": listed[i].seed,
                     "cell": listed[i].cell.label} for i in indices}


@dataclass
class LineState:
    index: int
    label: str
    seed: int
    state: str  # done | running | queued | failed | left | not available
    detail: str = ""


def line_states(listed, results: Path, table: int) -> tuple[list[LineState], str | None]:
    """Each line of the list: done (its record), running / queued (its latest submission's task in the queue),
    failed (submitted, out of the queue, no record; sacct's state where it keeps one), left (never submitted), or
    not available; and a note when the queue could not be asked. A line is found in a submission by its key
    (by its cell, operating point and seed where no data is prepared), not by its index: another --seeds or
    --all-cells numbers the lines differently."""
    by_key: dict[str, tuple[str, int, dict[str, Any]]] = {}
    by_label: dict[str, tuple[str, int, dict[str, Any]]] = {}
    for d in submissions(results, table):  # oldest first: a line's latest submission wins
        for i, line in (d.get("lines") or {}).items():
            ref = (str(d["job"]), int(i), d)
            if line.get("key"):
                by_key[line["key"]] = ref
            if line.get("label"):
                by_label[line["label"]] = ref
    jobs = sorted({job for job, _, _ in [*by_key.values(), *by_label.values()]})
    q = queue(jobs)
    acct = accounting(jobs) if q is not None else {}
    note = None if q is not None else "squeue cannot be asked here: submitted lines without a record show as " \
                                      "'submitted'"
    out = []
    for i, st in enumerate(listed):
        label = st.cell.label
        ref = by_key.get(st.key) if st.key else by_label.get(label_id(st))
        if st.status == "done":
            out.append(LineState(i, label, st.seed, "done"))
        elif ref is not None:  # before "not available": a GPU-latency line queued from a login node without GPU
            job, task_index, d = ref
            task = f"{job}_{task_index}"
            log = Path(d.get("logs", "")) / f"ahpo-table-{job}_{task_index}.out"
            if q is None:
                out.append(LineState(i, label, st.seed, "submitted", f"job {task}"))
            elif task in q:
                out.append(LineState(i, label, st.seed, "running" if q[task] in ("RUNNING", "COMPLETING")
                                     else "queued", f"job {task} {q[task]}"))
            else:
                state = acct.get(task, "")
                out.append(LineState(i, label, st.seed, "failed", f"job {task} {state or 'left the queue'} without "
                                     f"a record; log {log}"))
        elif st.status.startswith("not available"):
            out.append(LineState(i, label, st.seed, "not available", st.status.split(": ", 1)[-1]))
        else:
            out.append(LineState(i, label, st.seed, "left"))
    return out, note


def choose_lines(listed, states: list[LineState], table: int, indices: str | None, methods: list[str] | None,
                 gpus: int) -> tuple[list[int], dict[str, int]]:
    """The lines a submission takes: of those ``indices`` (``parse_indices`` text; every line without) and
    ``methods`` name, the ones left or failed, and GPU-latency lines when the tasks get GPUs; with the counts of
    those it leaves out (done, in the queue, not available). A bad index or method is refused by name."""
    chosen = parse_indices(indices) if indices else list(range(len(listed)))
    outside = [i for i in chosen if not 0 <= i < len(listed)]
    if outside:
        raise ClusterError(f"--indices {indices}: {outside[0]} is outside 0..{len(listed) - 1} of table {table}'s "
                           f"list (python -m repro run-table {table} --list with the same --profile and --seeds)")
    if methods:
        have = sorted({st.cell.method for st in listed})
        unknown = [m for m in methods if m not in have]
        if unknown:
            raise ClusterError(f"--method {unknown[0]} has no line in table {table}; its methods: {', '.join(have)}")
        chosen = [i for i in chosen if listed[i].cell.method in methods]
    runnable, skipped = [], {"done": 0, "in the queue": 0, "not available": 0}
    for i in chosen:
        s = states[i]
        if s.state in ("left", "failed") or (s.state == "not available" and gpus > 0 and GPU_ONLY in s.detail):
            runnable.append(i)
        elif s.state in ("running", "queued", "submitted"):
            skipped["in the queue"] += 1
        else:
            skipped["done" if s.state == "done" else "not available"] += 1
    return runnable, skipped


def gpu_cost(listed, runnable: list[int], profile: Profile, data, gpus: int, rates: Path | None,
             per_task: bool) -> tuple[list[str], float | None]:
    """The modelled cost of the GPU tasks' lines, as lines to print, and the longest task's hours (None without
    an estimate: the data set is not prepared and the profile is not ImageNet's, so its size is unknown; the
    rates file, ``DEFAULT_RATES`` when None, is read only for an estimate)."""
    if data is not None:
        sizes = {"train": int(data.manifest["betons"]["train"]["num_samples"]), "subtrain": len(data.sub_train),
                 "subeval": len(data.sub_eval)}
    elif profile.name == "imagenet":
        sizes = IMAGENET_SIZES
    else:
        return ["cost: the data set is not prepared, so its size is unknown: no estimate"], None
    lines = [] if data is not None else [
        f"cost: the data set is not prepared here; ImageNet-1k's sizes assumed ({sizes['train']:,} training images, "
        f"{sizes['subeval']:,} sub-eval)"]
    model = Rates.load(rates or DEFAULT_RATES)
    costs = [cell_cost(listed[i], i, profile, sizes, model) for i in runnable]
    est = estimate(costs, gpus, model)
    return [*lines, *(cost_table(costs, gpus) if per_task else []), *est.lines], est.longest_task_hours


# submission ------------------------------------------------------------------------------------------------------

MARGIN = 2.0  # a task's time limit over the model's longest task: the model leaves data loading and evaluation out


def hours_limit(longest_hours: float) -> str:
    """A task's time limit from the estimate: ``MARGIN`` times the longest task, whole hours, 1 to 72."""
    hours = min(MAX_HOURS, max(1, math.ceil(MARGIN * longest_hours)))
    return f"{hours}:00:00"


def sbatch_line(indices: list[int], table: int, task_args: list[str], gpus: int, cpus: int, logs: Path,
                time_limit: str | None, partition: str | None, account: str | None, max_running: int | None,
                extra: list[str]) -> list[str]:
    array = _ranges(indices) + (f"%{max_running}" if max_running else "")
    cmd = ["sbatch", "--parsable", f"--array={array}", f"--gpus-per-node={gpus}", f"--cpus-per-task={cpus}",
           f"--output={logs}/%x-%A_%a.out"]
    if time_limit:
        cmd.append(f"--time={time_limit}")
    if partition:
        cmd.append(f"--partition={partition}")
    if account:
        cmd.append(f"--account={account}")
    return [*cmd, *extra, SCRIPT, str(table), *task_args]


def submit(cmd: list[str], record: dict[str, Any], results: Path) -> str:
    """Run ``sbatch`` (from the repository's root, where the tasks start) and write the submission's file;
    the job id."""
    if shutil.which("sbatch") is None:
        raise ClusterError("sbatch is not on this machine's PATH: submit from a Slurm login node (or print the "
                           "line with --dry-run and submit it there)")
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    if done.returncode != 0:
        why = done.stderr.strip() or done.stdout.strip()
        raise ClusterError(f"sbatch refused the array ({done.returncode}): {why}")
    job = done.stdout.strip().split(";")[0].strip()
    if not job.isdigit():
        raise ClusterError(f"sbatch answered {done.stdout.strip()!r}, not a job id")
    folder = Path(results) / "slurm"
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / f"{job}.json", json.dumps({**record, "job": job,
                                                          "submitted": time.strftime("%Y-%m-%dT%H:%M:%S")},
                                                         indent=1))
    return job


def quoted(cmd: list[str]) -> str:
    return " ".join(shlex.quote(c) for c in cmd)


__all__ = ["CellCost", "ClusterError", "Estimate", "LineState", "Rates", "cell_cost", "choose_lines", "cost_table",
           "estimate", "gpu_cost", "hours_limit", "label_id", "line_states", "parse_indices", "quoted", "sbatch_line",
           "submission_lines", "submissions", "submit", "task_seconds"]
