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
from tests import local_slurm

ROOT = Path(__file__).resolve().parents[1]


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
    # after NetAdapt, AMC's task waits for the reference: in its wall time, not in its compute
    (_, amc_compute, amc_wall), = cluster.task_seconds([netadapt, amc], 1)[1:]
    assert math.isclose(amc_wall - amc_compute, ref[0][1], rel_tol=1e-9)
    # on 8 GPUs the retraining divides, AMC's one-process search does not, and its node's GPUs are allocated
    eight = cluster.estimate([amc], 8, rates)
    search = sum(s for _, s, d, _ in amc.phases if not d)
    dist = sum(s for _, s, d, _ in amc.phases if d)
    assert search > 0 and math.isclose(eight.longest_task_hours * 3600, search + dist / 8, rel_tol=1e-9)
    assert math.isclose(eight.allocated_hours, eight.longest_task_hours * 8, rel_tol=1e-9)


def test_the_imagenet_dry_run_of_table1_with_five_seeds_states_its_array_and_cost(tmp_path):
    done = _cli("submit", "--table", "1", "--profile", "imagenet", "--seeds=0,1,2,3,4", "--results",
                str(tmp_path / "r"), "--data", str(tmp_path / "no-imagenet-here"), "--dry-run")
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


def test_status_finds_a_submitted_line_by_what_it_is_not_by_its_index(tmp_path, monkeypatch):
    """Lines submitted from a 2-seed list, read from a 3-seed list (other indices): each (cell, seed) finds its
    own task; a GPU-latency line queued from a machine without a GPU shows queued, not "not available"; a task
    out of the queue without a record is failed, with its log. squeue is a stand-in."""
    results = tmp_path / "r"
    two = statuses(1, load_profile("imagenet", ["--seeds=0,1"]), None, results)
    three = statuses(1, load_profile("imagenet", ["--seeds=0,1,2"]), None, results)
    gpu = next(i for i, st in enumerate(two) if st.cell.constraint.kind == "gpu_latency")
    submitted = [0, 1, 3, gpu]  # task ids 0, 1, 3 and gpu of job 7
    (results / "slurm").mkdir(parents=True)
    (results / "slurm" / "7.json").write_text(json.dumps({
        "table": 1, "job": "7", "indices": submitted, "lines": cluster.submission_lines(two, submitted),
        "submitted": "2026-12-07T00:00:00", "logs": "L"}))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "squeue").write_text(f"#!/bin/bash\necho '7_0|RUNNING'\necho '7_1|PENDING'\necho '7_{gpu}|PENDING'\n")
    (bin_dir / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    states, note = cluster.line_states(three, results, 1)
    assert note is None
    by = {(three[s.index].cell.label, three[s.index].seed): s for s in states}
    assert by[(two[0].cell.label, 0)].state == "running" and by[(two[1].cell.label, 1)].state == "queued"
    failed = by[(two[3].cell.label, two[3].seed)]
    assert failed.state == "failed" and "L/ahpo-table-7_3.out" in failed.detail
    assert by[(two[gpu].cell.label, two[gpu].seed)].state == "queued"
    assert by[(two[0].cell.label, 2)].state == "left"  # seed 2 of the same cell was never submitted
    assert sum(s.state in ("running", "queued", "failed") for s in states) == 4


def test_a_submission_takes_the_lines_named_and_refuses_a_bad_index_or_method(tmp_path, monkeypatch):
    monkeypatch.setattr("repro.runner.device_available", lambda _device: False)  # as on a login node
    listed = statuses(1, load_profile("imagenet", ["--seeds=0,1"]), None, tmp_path / "r")
    states, _ = cluster.line_states(listed, tmp_path / "r", 1)  # nothing submitted, nothing done
    assert {s.state for s in states} == {"left", "not available"}
    gpu = [i for i, st in enumerate(listed) if st.cell.constraint.kind == "gpu_latency"]
    runnable, skipped = cluster.choose_lines(listed, states, 1, None, None, gpus=8)
    assert runnable == list(range(len(listed))) and sum(skipped.values()) == 0  # GPU nodes run the GPU lines
    runnable, skipped = cluster.choose_lines(listed, states, 1, None, None, gpus=0)
    assert not set(gpu) & set(runnable) and skipped["not available"] == len(gpu) == 12
    runnable, _ = cluster.choose_lines(listed, states, 1, "0-3", ["metapruning", "uniform"], gpus=8)
    assert runnable == [0, 1, 2, 3]  # the first lines are uniform's
    meta, _ = cluster.choose_lines(listed, states, 1, None, ["metapruning"], gpus=8)
    assert len(meta) == 6 and {listed[i].cell.method for i in meta} == {"metapruning"}
    with pytest.raises(cluster.ClusterError, match=rf"--indices 0,{len(listed)}: {len(listed)} is outside"):
        cluster.choose_lines(listed, states, 1, f"0,{len(listed)}", None, gpus=8)
    with pytest.raises(cluster.ClusterError, match="--method proposd has no line in table 1; its methods: amc, "):
        cluster.choose_lines(listed, states, 1, None, ["proposd"], gpus=8)


def test_netadapt_without_decay_has_a_cost(tmp_path):
    profile = load_profile("imagenet", ["--methods.netadapt.decay=1"])
    st = next(st for st in statuses(1, profile, None, tmp_path) if st.cell.method == "netadapt")
    cost = cluster.cell_cost(st, 0, profile, cluster.IMAGENET_SIZES, cluster.Rates.load(cluster.DEFAULT_RATES))
    assert any("iterations" in what and seconds > 0 for what, seconds, _, _ in cost.phases)


def _wait_for_queue(slurm: local_slurm.LocalSlurm, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        done = slurm.run("squeue", "-h", timeout=30)
        if done.returncode == 0 and not done.stdout.strip():
            return
        time.sleep(5)
    raise AssertionError(f"the array did not finish in {timeout:.0f} s:\n{slurm.run('squeue').stdout}\n"
                         f"{slurm.log_tail()}")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A single-node Slurm started for this module's tests and stopped after them."""
    why = local_slurm.why_not()
    if why:
        pytest.skip(why)
    started = local_slurm.start(tmp_path_factory.mktemp("slurm"))
    try:
        yield started
    finally:
        started.stop()


@pytest.mark.slurm
def test_two_smoke_cells_by_two_seeds_as_one_array_on_a_real_slurm(slurm, tmp_path):
    """Two MetaPruning cells (150M, 45M) x seeds 0, 1 as one array through the launcher, on a single-node Slurm
    started here, one CPU a task: four records, each seed's PruningNet built once and used by both its cells,
    and ``status`` reporting them done."""
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


@pytest.mark.slurm
def test_a_cancelled_task_shows_as_failed_and_its_resubmission_resumes_from_the_checkpoint(slurm, tmp_path):
    results = tmp_path / "results"
    common = ["--table", "1", "--profile", "smoke", "--results", str(results), "--train.epochs=4"]
    sub = _cli("submit", *common, "--indices", "0", "--cpus-per-task", "1", env=slurm.env)
    assert sub.returncode == 0 and "submitted job" in sub.stdout, sub.stdout + sub.stderr
    job = sub.stdout.split("submitted job ")[1].split(":")[0]
    log = results / "slurm" / "logs" / f"ahpo-table-{job}_0.out"
    deadline = time.time() + 600
    while not (log.exists() and "epoch 2/4" in log.read_text()):  # epoch 1's checkpoint is written
        assert time.time() < deadline, (log.read_text() if log.exists() else "no log") + slurm.log_tail()
        time.sleep(2)
    assert slurm.run("scancel", job).returncode == 0
    _wait_for_queue(slurm, 120)
    status = _cli("status", *common, env=slurm.env)
    line = next(x for x in status.stdout.splitlines() if x.strip().startswith("0 "))
    assert " failed " in line and "without a record" in line and str(log) in line, status.stdout
    again = _cli("submit", *common, "--cpus-per-task", "1", "--method", "uniform", "--indices", "0-2",
                 "--dry-run", env=slurm.env)
    assert "3 of 3 line(s) to submit" in again.stdout  # the failed line and the two never submitted
    resub = _cli("submit", *common, "--indices", "0", "--cpus-per-task", "1", env=slurm.env)
    assert "1 of 1 line(s) to submit" in resub.stdout, resub.stdout + resub.stderr
    _wait_for_queue(slurm, 900)
    trained = [json.loads(p.read_text()) for p in (results / "records").glob("retrain-*.json")]
    assert len(trained) == 1 and trained[0]["extra"]["resumed"]["epoch"] >= 1, trained
    assert "1 done" in _cli("status", *common, "--summary", env=slurm.env).stdout
