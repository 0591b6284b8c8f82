"""scripts/proxy_sweep.py: one record per run keyed by its inputs, a rerun that skips what is recorded, and the
report's mean, 95% t-interval and pooled sd computed from the records."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "proxy_sweep.py"


def _sweep(results: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--results", str(results), *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=600)


def test_a_sweep_records_each_run_resumes_and_reports_the_interval(tmp_path):
    from scipy import stats

    results = tmp_path / "results"
    run = ["--label", "t", "--families", "mobilenet_v1", "--cells", "0.25@224", "--seeds", "0", "1",
           "--train-per-class", "8", "--val-per-class", "4", "--sub-eval-per-class", "2", "--set", "train.epochs=1",
           "--set", "train.batch_size=16", "--set", "train.eval_batch_size=32"]
    first = _sweep(results, *run)
    assert first.returncode == 0, first.stderr
    assert "2 run(s) to do" in first.stdout
    records = [json.loads(f.read_text()) for f in sorted((results / "proxy_sweep").glob("*.json"))]
    assert sorted(r["seed"] for r in records) == [0, 1] and len({r["key"] for r in records}) == 2
    assert all(r["val_images"] == 64 and r["recipe"]["epochs"] == 1 and 0 <= r["top1"] <= 1 for r in records)
    again = _sweep(results, *run)  # everything is recorded: nothing runs again
    assert again.returncode == 0 and "0 run(s) to do" in again.stdout, again.stderr
    rep = _sweep(results, "--report", str(tmp_path / "report"))
    assert rep.returncode == 0, rep.stderr
    acc = [100 * r["top1"] for r in sorted(records, key=lambda r: r["seed"])]
    half = stats.t.ppf(0.975, 1) * statistics.stdev(acc) / math.sqrt(2)
    md = (tmp_path / "report.md").read_text()
    assert f"| {statistics.mean(acc):.1f} ± {half:.1f} (2) | {statistics.stdev(acc):.2f} |" in md
    assert f"| t | mobilenet_v1 | 1 | {statistics.stdev(acc):.2f} |" in md  # one cell: pooled sd is its sd
    assert len(json.loads((tmp_path / "report.json").read_text())) == 2


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
