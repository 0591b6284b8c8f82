"""scripts/proxy_sweep.py: one record per run keyed by its inputs, a rerun that skips what is recorded, and the
report's mean, 95% t-interval and pooled sd computed from the records."""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "proxy_sweep.py"


def _sweep(results: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--results", str(results), *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=600)


SETS = ["train.epochs=1", "train.batch_size=16", "train.eval_batch_size=32"]
RUN = ["--label", "t", "--families", "mobilenet_v1", "--cells", "0.25@224", "--train-per-class", "8",
       "--val-per-class", "4", "--sub-eval-per-class", "2", *(arg for s in SETS for arg in ("--set", s))]


def _report_rows(records: list[dict], tmp_path: Path) -> str:
    from scipy import stats

    sys.path.insert(0, str(ROOT / "scripts"))
    import proxy_sweep

    proxy_sweep.report(tmp_path / "report", records)
    acc = [100 * r["top1"] for r in sorted(records, key=lambda r: r["seed"])]
    half = stats.t.ppf(0.975, len(acc) - 1) * statistics.stdev(acc) / math.sqrt(len(acc))
    md = (tmp_path / "report.md").read_text()
    assert f"| {statistics.mean(acc):.1f} ± {half:.1f} ({len(acc)}) | {statistics.stdev(acc):.2f} |" in md
    assert f"| t | mobilenet_v1 | 1 | {statistics.stdev(acc):.2f} |" in md  # one cell: pooled sd is its sd
    assert len(json.loads((tmp_path / "report.json").read_text())) == len(records)
    return md


def test_recorded_runs_are_skipped_before_any_data_is_made_and_the_report_gives_the_interval(tmp_path):
    """Runs are named by their inputs: with seeds 0 and 1 recorded, a sweep over seeds 0-2 lists only seed 2,
    a sweep over 0-1 has nothing to do (and makes no data set), and the report's interval is scipy's."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import proxy_sweep

    results = tmp_path / "results"
    (results / "proxy_sweep").mkdir(parents=True)
    asked = argparse.Namespace(
        label="t", families=["mobilenet_v1"], profile="smoke", sets=SETS, family_sets=[], seeds=[0, 1],
        train_per_class=8, val_per_class=4, sub_eval_per_class=2, threads=1, variant="tiny")
    records = []
    for spec, top1 in zip(proxy_sweep.specs(asked, ((0.25, 224),)), (0.40, 0.46), strict=True):
        records.append({**spec, "key": proxy_sweep.run_key(spec), "top1": top1, "top5": 0.9, "train_loss": 1.0,
                        "pixels": 32, "train_seconds": 5.0, "images_per_second": 20.0, "val_images": 64})
        (results / "proxy_sweep" / f"{records[-1]['key']}.json").write_text(json.dumps(records[-1]))
    assert len({r["key"] for r in records}) == 2  # the seed is part of the name
    listed = _sweep(results, *RUN, "--seeds", "0", "1", "2", "--list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == ["1 run(s) to do", "  mobilenet_v1 0.25x@224 seed 2"]
    again = _sweep(results, *RUN, "--seeds", "0", "1")
    assert again.returncode == 0 and "0 run(s) to do" in again.stdout, again.stderr
    assert not (results / "data").exists()
    _report_rows(records, tmp_path)


@pytest.mark.slow
def test_a_sweep_records_each_run_resumes_and_reports_the_interval(tmp_path):
    results = tmp_path / "results"
    first = _sweep(results, *RUN, "--seeds", "0", "1")
    assert first.returncode == 0, first.stderr
    assert "2 run(s) to do" in first.stdout
    records = [json.loads(f.read_text()) for f in sorted((results / "proxy_sweep").glob("*.json"))]
    assert sorted(r["seed"] for r in records) == [0, 1] and len({r["key"] for r in records}) == 2
    assert all(r["val_images"] == 64 and r["recipe"]["epochs"] == 1 and 0 <= r["top1"] <= 1 for r in records)
    assert all(any(line.startswith("epoch 1/1: train loss") for line in r["log"]) for r in records)  # the curve
    again = _sweep(results, *RUN, "--seeds", "0", "1")  # everything is recorded: nothing runs again
    assert again.returncode == 0 and "0 run(s) to do" in again.stdout, again.stderr
    _report_rows(records, tmp_path)


def _children(pid: int) -> set[int]:
    kids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        if int(fields[1]) == pid:
            kids.add(int(stat.parent.name))
    return kids


def _cmdline(pid: int) -> bytes:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    """Running, not ended (a zombie has ended: only its exit status is left for a parent to read)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc (Linux)")
@pytest.mark.slow  # a research script's, 25-42 s: the default run stays under 10 minutes on 2 cores
def test_a_terminated_sweep_takes_its_workers_with_it(tmp_path):
    """``kill`` on a sweep (SIGTERM, as a scheduler's time limit sends) ends its workers too: they used to run on
    as orphans, training runs nobody waited for on the cores the next job was given."""
    # a run of a thousand epochs: a worker left behind would still be training long after the test gives up
    command = [sys.executable, str(SCRIPT), "--results", str(tmp_path), *RUN, "--set", "train.epochs=1000",
               "--seeds", "0", "1", "--jobs", "1"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    workers: set[int] = set()
    try:
        for line in proc.stdout:
            if "run(s) to do" in line:
                break
        deadline = time.monotonic() + 60
        while not (workers := {c for c in _children(proc.pid) if b"spawn_main" in _cmdline(c)}) \
                and time.monotonic() < deadline:  # the pool's worker, not the resource tracker that starts first
            time.sleep(0.2)
        assert workers, "the sweep started no worker"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) != 0
        deadline = time.monotonic() + 30
        while any(map(_alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(map(_alive, workers)), "a worker outlived its sweep"
    finally:
        proc.kill()
        proc.wait()
        for w in filter(_alive, workers):  # a failed test leaves no orphan behind it either
            os.kill(w, signal.SIGKILL)


@pytest.mark.slow  # a research script's, 25-42 s: the default run stays under 10 minutes on 2 cores
def test_the_confusion_script_trains_a_sweep_run_and_counts_every_validation_image(tmp_path):
    """scripts/proxy_confusion.py trains a sweep's cell as the sweep does (the sweep's run key: the same spec) and
    classifies every validation image once; on a variant with mirror twins it says what they cost."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import proxy_sweep

    out = tmp_path / "confusion"
    same = ["--train-per-class", "8", "--val-per-class", "4", "--sub-eval-per-class", "2", "--variant", "tiny64",
            *(arg for s in SETS for arg in ("--set", s))]  # RUN's data and recipe on the 64-class set
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "proxy_confusion.py"), "--results",
                           str(tmp_path / "results"), "--family", "mobilenet_v1", "--width", "0.25", "--seed", "1",
                           "--out", str(out), *same], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr
    (cell,) = json.loads(out.with_suffix(".json").read_text())["cells"]
    sweep = proxy_sweep.specs(argparse.Namespace(
        families=["mobilenet_v1"], profile="smoke", sets=SETS, family_sets=[], seeds=[1], label="confusion",
        train_per_class=8, val_per_class=4, threads=1, sub_eval_per_class=2, variant="tiny64"), [(0.25, 224)])[0]
    assert cell["key"] == proxy_sweep.run_key(sweep)
    matrix = cell["matrix"]
    assert len(matrix) == 64 and sum(map(sum, matrix)) == 64 * 4  # every validation image, once
    assert sum(matrix[i][i] for i in range(64)) / 256 == pytest.approx(cell["top1"]) == pytest.approx(cell["fit_top1"])
    assert "antidiagonal mirror twin" in out.with_suffix(".md").read_text()
    # unpinned (more cores than threads) it warns that its top-1 may not be the sweep record's
    assert ("not pinned" in done.stdout) == (len(os.sched_getaffinity(0)) > 1), done.stdout
    bad = subprocess.run([sys.executable, str(ROOT / "scripts" / "proxy_confusion.py"), "--variant", "tiny65",
                          "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert bad.returncode != 0 and "--variant" in bad.stderr and "tiny64f" in bad.stderr


def test_a_sweep_names_what_it_needs(tmp_path):
    no_label = _sweep(tmp_path, "--families", "mobilenet_v1")
    assert no_label.returncode != 0 and "--label is required" in no_label.stderr
    bad = _sweep(tmp_path, "--label", "x", "--family-set", "mobilenet_v3:train.lr=0.1")
    assert bad.returncode != 0 and "not a family" in bad.stderr


@pytest.mark.parametrize("values, half", [([40.0, 44.0, 49.0], 11.2016), ([1.0], math.nan)])
def test_t_half_width_is_scipys(values, half):
    from repro.stats import t_half_width

    got = t_half_width(values)
    assert (math.isnan(got) and math.isnan(half)) or got == pytest.approx(half, abs=1e-4)


def test_the_detectable_difference_is_the_t_test_power_formula():
    from repro.stats import detectable_difference

    # 5 seeds, sd 1: (t_0.975 + t_0.8 at 8 dof) * sqrt(2 / 5) = (2.306 + 0.889) * 0.632
    assert detectable_difference(1.0, 5) == pytest.approx(2.021, abs=1e-3)
    assert detectable_difference(2.0, 5) == pytest.approx(2 * detectable_difference(1.0, 5))
    assert detectable_difference(1.0, 1) == math.inf


def test_the_rank_script_pairs_the_papers_uniform_rows_with_sweep_runs(tmp_path):
    """scripts/proxy_rank.py: the published uniform networks are the ones the uniform rules build, and Kendall's
    tau (with its Fieller interval) is scipy's over the architectures that have runs."""
    from scipy import stats

    sys.path.insert(0, str(ROOT / "scripts"))
    import proxy_rank

    assert proxy_rank.uniform_point("mobilenet_v1", "channel", 330e6) == (0.75, 224)
    v1 = proxy_rank.published("mobilenet_v1")
    assert len(v1) == 9 and {(q["width"], q["resolution"]): q["imagenet_top1"] for q in v1}[(0.75, 224)] == 68.4
    folder = tmp_path / "proxy_sweep"
    folder.mkdir()
    proxy = [20.0, 35.0, 30.0, 50.0, 45.0, 60.0]  # one swap among the 6 lowest-ranked networks' order
    chosen = sorted(v1, key=lambda q: q["imagenet_top1"])[:6]
    for i, (q, acc) in enumerate(zip(chosen, proxy, strict=True)):
        for seed, d in enumerate((-1.0, 1.0)):
            (folder / f"{i}-{seed}.json").write_text(json.dumps({"label": "L", "family": "mobilenet_v1", "seed": seed,
                                                                 "width": q["width"], "resolution": q["resolution"],
                                                                 "top1": (acc + d) / 100}))
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "proxy_rank.py"), "--label", "L", "--results",
                          str(tmp_path), "--out", str(tmp_path / "rank")], capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads((tmp_path / "rank.json").read_text())["kendall"]["mobilenet_v1"]
    want = stats.kendalltau(proxy, [q["imagenet_top1"] for q in chosen])
    assert got["n"] == 6 and got["tau"] == pytest.approx(want.statistic) and got["p"] == pytest.approx(want.pvalue)
    z, half = math.atanh(want.statistic), 1.96 * math.sqrt(0.437 / 2)
    assert got["ci95"] == pytest.approx([math.tanh(z - half), math.tanh(z + half)])
    assert "| mobilenet_v1 | 1x | 63 |" in (tmp_path / "rank.md").read_text()  # a published network not run


def test_welch_interval_is_scipys():
    from scipy import stats

    from repro.stats import welch_interval

    a, b = [80.1, 82.4, 79.0, 81.7, 83.2], [81.0, 84.9, 80.2]
    diff, low, high = welch_interval(a, b)
    want = stats.ttest_ind(b, a, equal_var=False).confidence_interval(0.95)
    assert diff == pytest.approx(statistics.mean(b) - statistics.mean(a))
    assert (low, high) == pytest.approx((want.low, want.high))
    assert math.isnan(welch_interval([1.0], [2.0, 3.0])[1])


def test_the_report_compares_thread_counts_and_restore_writes_the_evidence_back(tmp_path):
    """The same cell at 1 and 2 threads gets a row with the difference of its seed means and the 1-point
    verdict; --restore turns the report's JSON back into run records (and skips those already there)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import proxy_sweep

    from repro.stats import welch_interval

    records = []
    for threads, accs in ((1, (80.0, 82.0, 81.0)), (2, (81.5, 83.5, 82.5))):
        for seed, acc in enumerate(accs):
            records.append({"label": "t", "family": "mobilenet_v1", "width": 1.0, "resolution": 224, "seed": seed,
                            "threads": threads, "key": f"k{threads}{seed}", "top1": acc / 100, "pixels": 64,
                            "val_images": 10240, "train_seconds": 5.0, "images_per_second": 20.0})
    proxy_sweep.report(tmp_path / "report", records)
    md = (tmp_path / "report.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| t | mobilenet_v1 | 1.0x@224 |"))
    diff, low, high = welch_interval([80.0, 82.0, 81.0], [81.5, 83.5, 82.5])
    assert row == (f"| t | mobilenet_v1 | 1.0x@224 | 81.0 (3) | 2: 82.5 (3) | +1.50 | [{low:+.1f}, {high:+.1f}] "
                   "| no |") and diff == pytest.approx(1.5)
    out = tmp_path / "proxy_sweep"
    out.mkdir()
    (out / "k10.json").write_text("{}")  # already there: left as it is
    assert proxy_sweep.restore(tmp_path / "report.json", out) == 5
    assert json.loads((out / "k21.json").read_text())["top1"] == pytest.approx(0.835)
    assert (out / "k10.json").read_text() == "{}"
    bad = _sweep(tmp_path, "--restore", str(tmp_path / "report.md"))
    assert bad.returncode != 0 and "cannot read it as the sweep's evidence JSON" in bad.stderr
