"""The cluster path: ``python -m repro submit`` (a table's cells x seeds as one Slurm array, its cost first) and
``python -m repro status``; the cost model's arithmetic; and, with ``--slurm`` (``nox -s cluster``), the whole
path against a real single-node Slurm started here."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from repro import cluster
from repro.arch import ArchConfig
from repro.cost.flops import count_macs
from repro.profiles import load_profile
from repro.runner import statuses

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
import local_slurm  # noqa: E402


def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "repro", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_indices_and_slurm_ranges_round_trip():
    assert cluster.parse_indices("0-3,7, 9-10") == [0, 1, 2, 3, 7, 9, 10]
    assert cluster._ranges([10, 0, 1, 2, 3, 7, 9]) == "0-3,7,9-10"
    assert cluster._ranges([5]) == "5"
    for bad in ("3-1", "a", "1-"):
        with pytest.raises(cluster.ClusterError, match="--indices"):
            cluster.parse_indices(bad)
    assert cluster.hours_limit(0.1) == "1:00:00" and cluster.hours_limit(10) == "20:00:00"
    assert cluster.hours_limit(500) == "72:00:00"


def test_the_cost_model_is_the_stated_arithmetic_and_counts_a_shared_network_once():
    profile = load_profile("imagenet", ["--seeds=0,1"])
    rates = cluster.Rates({"mobilenet_v1": 8000.0}, "a test GPU", "test")
    sizes = {"train": 1000, "subtrain": 900, "subeval": 100}
    listed = statuses(1, profile, None, ROOT / "results" / "nonexistent")
    by = {(st.cell.method, st.cell.constraint.limit, st.seed): (i, st) for i, st in enumerate(listed)
          if st.cell.constraint.kind == "flops"}
    i, st = by[("uniform", 150e6, 0)]
    cost = cluster.cell_cost(st, i, profile, sizes, rates)
    fraction = 150e6 / count_macs(ArchConfig.canonical("mobilenet_v1"))
    assert len(cost.phases) == 1  # no search: the retraining only
    assert math.isclose(cost.phases[0][1], 256 * 1000 * fraction ** 0.5 / 8000, rel_tol=1e-9)
    # NetAdapt and AMC of one seed share the reference network: counted once between them
    netadapt = cluster.cell_cost(by[("netadapt", 330e6, 0)][1], 0, profile, sizes, rates)
    amc = cluster.cell_cost(by[("amc", 330e6, 0)][1], 1, profile, sizes, rates)
    ref = [p for p in netadapt.phases if p[3]]
    assert ref and ref[0][3] == "reference:mobilenet_v1:0" and math.isclose(ref[0][1], 256 * 1000 / 8000)
    together = cluster.estimate([netadapt, amc], 1, rates)
    alone = sum(s for _, s, _, _ in netadapt.phases) + sum(s for _, s, _, _ in amc.phases)
    assert math.isclose(together.compute_hours * 3600, alone - ref[0][1], rel_tol=1e-9)
    # another seed's reference is another network
    other = cluster.cell_cost(by[("amc", 330e6, 1)][1], 2, profile, sizes, rates)
    assert math.isclose(cluster.estimate([netadapt, other], 1, rates).compute_hours * 3600,
                        alone, rel_tol=1e-9)
    # on 8 GPUs the retraining divides, AMC's one-process search does not, and its node's GPUs are allocated
    eight = cluster.estimate([amc], 8, rates)
    search = sum(s for _, s, d, _ in amc.phases if not d)
    dist = sum(s for _, s, d, _ in amc.phases if d)
    assert search > 0 and math.isclose(eight.longest_task_hours * 3600, search + dist / 8, rel_tol=1e-9)
    assert math.isclose(eight.allocated_hours, eight.longest_task_hours * 8, rel_tol=1e-9)


def test_the_imagenet_dry_run_of_table1_with_five_seeds_states_its_array_and_cost(tmp_path):
    done = _cli("submit", "--table", "1", "--profile", "imagenet", "--seeds=0,1,2,3,4", "--results",
                str(tmp_path / "r"), "--dry-run")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "130 of 130 line(s) to submit" in out  # 26 cells x 5 seeds, GPU-latency cells on GPU nodes
    assert "ImageNet-1k's sizes assumed" in out and "cost model (not a measurement)" in out
    assert "--array=0-129 --gpus-per-node=8 --cpus-per-task=64" in out and "dry run: nothing submitted" in out
    hours = float(out.split("cost model (not a measurement): ")[1].split(" GPU-hours")[0].replace(",", ""))
    assert 100 < hours < 10_000
    assert not (tmp_path / "r" / "slurm").exists()  # nothing written by a dry run


def test_a_submission_without_prepared_data_or_sbatch_is_refused_with_the_fix(tmp_path):
    done = _cli("submit", "--table", "1", "--profile", "imagenet", "--data", str(tmp_path / "none"), "--results",
                str(tmp_path / "r"))
    assert done.returncode == 2 and "no prepared data set" in done.stderr and "--dry-run" in done.stderr
    with pytest.raises(cluster.ClusterError, match="sbatch is not on this machine's PATH"):
        old = os.environ["PATH"]
        os.environ["PATH"] = str(tmp_path)
        try:
            cluster.submit(["sbatch", "x"], {}, tmp_path)
        finally:
            os.environ["PATH"] = old


def test_status_reads_records_submissions_and_the_queue(tmp_path, monkeypatch):
    """A submission of 4 lines: one has its record, one is running, one queued, one left the queue without a
    record (failed); the rest of the table was never submitted (left). squeue is a stand-in."""
    class Cell:
        method, label = "uniform", "a cell"

    class St:
        def __init__(self, status):
            self.cell, self.seed, self.status = Cell(), 0, status
    listed = [St("done"), St("pending"), St("pending"), St("pending"), St("pending"), St("not available: x")]
    results = tmp_path / "r"
    (results / "slurm").mkdir(parents=True)
    (results / "slurm" / "7.json").write_text(json.dumps({"table": 1, "job": "7", "indices": [0, 1, 2, 3],
                                                          "submitted": "2026-12-07T00:00:00", "logs": "L"}))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "squeue").write_text("#!/bin/bash\necho '7_1|RUNNING'\necho '7_2|PENDING'\n")
    (bin_dir / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    states, note = cluster.line_states(listed, results, 1)
    assert note is None
    assert [s.state for s in states] == ["done", "running", "queued", "failed", "left", "not available"]
    assert "L/ahpo-table-7_3.out" in states[3].detail


def _wait_for_queue(slurm: local_slurm.LocalSlurm, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        done = slurm.run("squeue", "-h", timeout=30)
        if done.returncode == 0 and not done.stdout.strip():
            return
        time.sleep(5)
    raise AssertionError(f"the array did not finish in {timeout:.0f} s:\n{slurm.run('squeue').stdout}\n"
                         f"{slurm.log_tail()}")


@pytest.mark.slurm
def test_two_smoke_cells_by_two_seeds_as_one_array_on_a_real_slurm(tmp_path):
    """Two MetaPruning cells (150M, 45M) x seeds 0, 1 as one array through the launcher, on a single-node Slurm
    started here, one CPU a task: four records, each seed's PruningNet built once and used by both its cells,
    and ``status`` reporting them done."""
    why = local_slurm.why_not()
    if why:
        pytest.skip(why)
    slurm = local_slurm.start(tmp_path / "slurm")
    try:
        results = tmp_path / "results"
        common = ["--table", "1", "--profile", "smoke", "--results", str(results), "--seeds=0,1",
                  "--train.epochs=1", "--methods.metapruning.pruningnet_epochs=1"]
        listing = _cli("run-table", "1", "--list", *common[2:], env=slurm.env)
        assert listing.returncode == 0, listing.stderr
        lines = [int(line.split()[0]) for line in listing.stdout.splitlines()
                 if "MetaPruning" in line and ("| 150M" in line or "| 45M" in line)]
        assert len(lines) == 4, listing.stdout
        start = time.time()
        sub = _cli("submit", *common, "--indices", ",".join(map(str, lines)), "--cpus-per-task", "1", env=slurm.env)
        assert sub.returncode == 0, sub.stdout + sub.stderr
        assert "4 of 4 line(s) to submit" in sub.stdout and "submitted job" in sub.stdout
        again = _cli("submit", *common, "--indices", ",".join(map(str, lines)), "--dry-run", env=slurm.env)
        assert "0 of 4 line(s) to submit" in again.stdout and "4 in the queue" in again.stdout  # not twice
        _wait_for_queue(slurm, 1500)
        wall = time.time() - start
        records = [json.loads(p.read_text()) for p in (results / "records").glob("*.json")]
        cells = [r for r in records if r["kind"] == "cell"]
        nets = [r for r in records if r["kind"] == "pruningnet"]
        logs = sorted((results / "slurm" / "logs").glob("ahpo-table-*.out"))
        text = "\n".join(p.read_text() for p in logs)
        assert len(cells) == 4, text
        assert sorted((r["seed"], r["macs"] <= r["constraint"]["limit"]) for r in cells) == [
            (0, True), (0, True), (1, True), (1, True)]
        assert len(nets) == 2 and sorted(r["seed"] for r in nets) == [0, 1]
        for seed in (0, 1):  # both cells of a seed used that seed's one PruningNet
            used = {r["extra"]["search"]["pruningnet"] for r in cells if r["seed"] == seed}
            assert used == {next(r["key"] for r in nets if r["seed"] == seed)}
        assert len(logs) == 4 and text.count("training MetaPruning's PruningNet") == 2, text
        status = _cli("status", *common, "--summary", env=slurm.env)
        assert status.returncode == 0 and "4 done" in status.stdout, status.stdout + status.stderr
        print(f"4 smoke tasks on a local Slurm (1 CPU each, {len(os.sched_getaffinity(0))} CPUs): {wall:.0f} s")
    finally:
        slurm.stop()
