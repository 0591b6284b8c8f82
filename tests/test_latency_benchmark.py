"""Benchmarks of the latency issue (run with ``pytest tests/ --benchmark``, on an otherwise idle machine):

* the predictor's error against measured CPU latency on 20 random MobileNet V2 architectures of the search
  space (goal: median |error| <= 5%, at worst 10%);
* a larger network of the same family is measured slower;
* predictor calls per second (goal >= 10,000/s), for architectures seen before and new ones;
* the cost of building the CPU table (a grid of uniform MobileNet V1 networks).

The CPU settings are the smoke profile's (batch 1, one thread); the numbers go to ``extra_info``.
"""

from __future__ import annotations

import statistics
import time

import pytest

from repro.arch import ArchConfig
from repro.cost.latency import (
    LatencyTable,
    layer_keys,
    measure_arch,
    predictor_error,
    timed_fill,
)
from repro.profiles import load_profile
from repro.space import grid_archs, random_archs

SETTINGS = load_profile("smoke").latency.cpu
GOAL_ERROR, WORST_ERROR = 0.05, 0.10
GOAL_CALLS_PER_S = 10_000


def test_predictor_error_on_random_mobilenet_v2(benchmark):
    archs = random_archs("mobilenet_v2", 20, seed=0)
    table = LatencyTable(SETTINGS)
    checks = benchmark.pedantic(lambda: predictor_error(table, archs, allow_unstable=True), rounds=1, iterations=1)
    errors = [c.relative_error for c in checks]
    median_abs = statistics.median(abs(e) for e in errors)
    benchmark.extra_info.update(
        median_abs_error=round(median_abs, 4), mean_error=round(statistics.fmean(errors), 4),
        max_abs_error=round(max(abs(e) for e in errors), 4), layers=len(table.entries),
        table_seconds=round(table.build_seconds, 1), worst_cv=round(max(c.measured.cv for c in checks), 3),
        rows=[(c.arch.resolution, round(c.predicted_ms, 3), round(c.measured.median_ms, 3)) for c in checks])
    print(f"\npredictor on 20 random MobileNet V2 (CPU, batch 1, 1 thread): median |error| {100 * median_abs:.1f}%, "
          f"mean {100 * statistics.fmean(errors):+.1f}%, max {100 * max(abs(e) for e in errors):.1f}%")
    assert median_abs <= WORST_ERROR, f"median |error| {median_abs:.3f} above the worst case {WORST_ERROR}"


def test_a_larger_network_is_measured_slower(benchmark):
    small, large = ArchConfig.uniform("mobilenet_v2", 0.5), ArchConfig.uniform("mobilenet_v2", 1.0)
    out = benchmark.pedantic(lambda: (measure_arch(small, SETTINGS), measure_arch(large, SETTINGS)), rounds=1,
                             iterations=1)
    benchmark.extra_info.update(small_ms=round(out[0].median_ms, 3), large_ms=round(out[1].median_ms, 3),
                                small_cv=round(out[0].cv, 3), large_cv=round(out[1].cv, 3))
    assert out[1].median_ms > out[0].median_ms


@pytest.mark.parametrize("seen", [True, False], ids=["seen-architectures", "new-architectures"])
def test_predictor_calls_per_second(benchmark, seen):
    archs = random_archs("mobilenet_v2", 500, seed=1)
    keys = {k for a in archs for k in layer_keys(a)}
    table = LatencyTable(SETTINGS, {k: 0.01 for k in keys}, measure_missing=False)  # lookups, not measuring

    def predict_all():
        if not seen:
            table._cache.clear()
        for a in archs:
            table.predict(a)

    predict_all()
    benchmark.pedantic(predict_all, rounds=5, iterations=1)
    per_s = len(archs) / benchmark.stats.stats.median
    benchmark.extra_info.update(calls_per_s=round(per_s))
    print(f"\npredictor ({'seen' if seen else 'new'} architectures): {per_s:,.0f} calls/s")
    assert per_s >= GOAL_CALLS_PER_S


def test_building_the_cpu_table(benchmark):
    archs = grid_archs("mobilenet_v1", [0.25, 0.5, 0.75, 1.0], [128, 160, 192, 224])
    table = LatencyTable(SETTINGS)
    start = time.perf_counter()
    n, seconds = benchmark.pedantic(lambda: timed_fill(table, archs),
                                    rounds=1, iterations=1)
    benchmark.extra_info.update(layers=n, seconds=round(seconds, 1), ms_per_layer=round(1000 * seconds / n, 1),
                                wall=round(time.perf_counter() - start, 1))
    print(f"\nCPU table, 16 uniform MobileNet V1: {n} layers in {seconds:.1f} s ({1000 * seconds / n:.1f} ms a layer)")
    assert n > 0
