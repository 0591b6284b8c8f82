"""``run-table --jobs``: cells in parallel processes, each on its own cores, sharing artifacts built once."""

from __future__ import annotations

from pathlib import Path

import pytest

from repro.profiles import load_profile
from repro.runner import share_cores
from tests.conftest import make_tiny_data
from tests.test_baselines_cells import SMALL


def test_cores_are_shared_out_without_overlap():
    assert share_cores(2, [0, 1, 2, 3, 4]) == [[0, 2, 4], [1, 3]]
    assert share_cores(1, [3, 5]) == [[3, 5]]
    for bad in (0, 3):
        with pytest.raises(ValueError, match=rf"--jobs={bad}: this machine gives this process 2 core\(s\); give 1 "
                                             r"to 2"):
            share_cores(bad, [0, 1])


def test_two_jobs_share_the_reference_network_and_both_finish(tmp_path):
    """NetAdapt's and AMC's cells of Table 1 both start from the trained MobileNet V1: run at once, one process
    trains it while the other waits for its lock (or finds its record), and both write valid records."""
    import os

    from repro.pipeline import prepare_data
    from repro.results import load_records
    from repro.runner import run_table

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two cores")
    folder = make_tiny_data(tmp_path / "data", seed=3, train_per_class=6, per_class=2)
    profile = load_profile("smoke", [f"data.path={folder}", *SMALL])
    data = prepare_data(profile, log=lambda s: None)
    said: list[str] = []
    counts = run_table(1, profile, data, tmp_path / "results", methods=["netadapt", "amc"], jobs=2,
                       log=said.append, quiet=True)
    assert counts == {"ran": 2, "cached": 0, "failed": 0, "not available": 0}, said
    assert any("running 2 cells in 2 processes (1, 1 core(s) each)" in s for s in said)
    frame, _ = load_records(tmp_path / "results" / "records")
    cells = frame[frame["kind"] == "cell"]
    assert sorted(cells["method"]) == ["amc", "netadapt"] and (cells["macs"] <= 330e6).all()
    references = [r for r in frame.to_dict("records") if r["kind"] == "retrain" and r["method"] == "scratch"]
    assert len(references) == 1  # built once
    logs = {p.name: p.read_text() for p in (tmp_path / "results" / "logs").glob("*.log")}
    shares = [i for text in logs.values() for i, share in enumerate(share_cores(2)) if f"core(s) {share}" in text]
    assert sorted(shares) == [0, 1]  # each cell ran on its own share of the cores
    again = run_table(1, profile, data, tmp_path / "results", methods=["netadapt", "amc"], jobs=2,
                      log=said.append, quiet=True)
    assert again["cached"] == 2 and again["ran"] == 0


def test_the_searching_cells_start_first_their_methods_in_turn(tmp_path):
    from repro.runner import schedule, statuses

    cells = statuses(1, load_profile("smoke"), None, tmp_path)
    order = schedule(cells)
    assert sorted(map(id, order)) == sorted(map(id, cells))  # every cell once
    methods = [st.cell.method for st in order]
    first_uniform = methods.index("uniform")
    assert set(methods[first_uniform:]) == {"uniform"}  # the retrain-only rows last
    searching = methods[:first_uniform]
    kinds = list(dict.fromkeys(searching))
    assert len(kinds) > 2 and searching[:len(kinds)] == kinds  # one cell of each method before any second


def test_the_estimate_comes_from_the_earlier_records_of_the_cells_or_their_method(tmp_path):
    from repro.arch import ArchConfig
    from repro.results import RunRecord, write_record
    from repro.runner import estimate, statuses
    from tables.spec import column_constraint

    profile = load_profile("smoke")
    cells = statuses(1, profile, None, tmp_path, all_cells=True)
    pick = {(st.cell.method, st.cell.variant, st.cell.column): st for st in cells if st.cell.subtable == "flops"}
    pending = [pick[("uniform", "channel", "330M")], pick[("netadapt", "channel", "150M")],
               pick[("amc", "channel", "330M")]]
    assert "no earlier smoke record of their methods" in estimate(pending, profile, tmp_path, 2)

    def record(name, method, column, seconds, profile_name="smoke", target=None):
        write_record(tmp_path / "records", RunRecord(
            key=name, kind="cell", method=method, variant="channel", family="mobilenet_v1",
            constraint=column_constraint("flops", column).to_dict(), arch=ArchConfig.uniform("mobilenet_v1").to_dict(),
            profile=profile_name, profile_config={}, dataset={}, seed=0, search_seconds=seconds / 2,
            retrain_seconds=seconds / 2, target=target))

    record("u0", "uniform", "330M", 100)  # the cell's own earlier seeds: 150 s
    record("u1", "uniform", "330M", 200)
    record("u2", "uniform", "150M", 9999)  # another cell of the method: not used while the cell has its own
    record("n0", "netadapt", "330M", 300)  # NetAdapt at 150M has none of its own: its method's 300 s
    record("a0", "amc", "330M", 5000, profile_name="imagenet")  # another profile's: not counted
    said = estimate(pending, profile, tmp_path, 2)
    assert said.startswith("estimate: 3 cell(s) to run, about 8 min of cell time, 4 min at 2 at a time, from 3 "
                           "earlier record(s)"), said
    assert said.endswith("; 1 cell(s) with no earlier record of their method are not counted"), said
    # a cell at its operating point (AMC at the 281M Table 1 prints) takes its own earlier seeds, not the header's
    amc = pick[("amc", "channel", "330M")]
    assert amc.cell.target.value == 281e6
    record("a1", "amc", "330M", 6000)  # at the header: another cell
    record("a2", "amc", "330M", 600, target={**amc.cell.target.to_dict(), "macs": 281e6})
    assert estimate([amc], profile, tmp_path, 1).startswith("estimate: 1 cell(s) to run, about 10 min of cell time")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc (Linux)")
@pytest.mark.slow  # starts a table's processes and waits for them: the default run stays under 10 minutes
@pytest.mark.parametrize("early", [False, True], ids=["running", "starting"])
def test_a_terminated_table_run_takes_its_workers_with_it(tmp_path, early):
    """``kill`` on ``run-table --jobs 2`` (SIGTERM, as a scheduler's time limit sends) ends the cells it was
    running: its workers used to run on as orphans, training cells nobody waited for on the next job's cores.
    Killed while its workers are still starting (not yet registered), it ends them too instead of waiting for
    their cells."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.test_proxy_sweep import ROOT, _alive, _children, _cmdline

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two cores")
    folder = make_tiny_data(tmp_path / "data", seed=3, train_per_class=6, per_class=2)
    # the uniform rows retrain only; a million epochs of the tiny set, so a worker left behind would still be
    # training long after the test gives up
    command = [sys.executable, "-m", "repro", "run-table", "1", "--method", "uniform", "--jobs", "2", "--quiet",
               "--data", str(folder), "--results", str(tmp_path / "results"), "--train.epochs=1000000"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})  # its lines as it says them
    workers: set[int] = set()
    said = []
    try:
        for line in proc.stdout:
            said.append(line)
            if "cells in 2 processes" in line:
                break
        if early:  # at once: the workers are being spawned
            time.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            while proc.poll() is None:  # every worker it started before it ended
                workers |= {c for c in _children(proc.pid) if b"spawn_main" in _cmdline(c)}
                time.sleep(0.05)
        else:
            deadline = time.monotonic() + 60
            while len(workers := {c for c in _children(proc.pid) if b"spawn_main" in _cmdline(c)}) < 2 \
                    and time.monotonic() < deadline:  # the pool's workers, not the resource tracker
                time.sleep(0.2)
            assert len(workers) == 2, "".join(said)
            time.sleep(2)  # into their cells
            proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)  # it ends: it does not wait for a cell of a million epochs
        assert proc.returncode != 0
        assert early or "interrupted: ended its 2 worker process(es)" in rest, "".join(said) + rest
        deadline = time.monotonic() + 30
        while any(map(_alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(map(_alive, workers)), "a worker outlived its table run"
        assert not list((tmp_path / "results" / "records").glob("*.json"))  # no cell finished: none recorded
    finally:
        proc.kill()
        proc.wait()
        for w in filter(_alive, workers):  # a failed test leaves no orphan behind it either
            os.kill(w, signal.SIGKILL)
