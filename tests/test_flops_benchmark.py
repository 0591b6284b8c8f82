"""Benchmark: analytic MAC counts per second, per family, against the fvcore reference.

Goal (foundation issue): >= 20,000 configs/s for MobileNet V2 on one core, and >= 100x the fvcore count.
Runs only with ``pytest tests/ --benchmark``.
"""

from __future__ import annotations

import random
import time

import pytest
import torch

from repro.arch import FAMILIES, random_arch
from repro.cost.flops import count_macs, fvcore_macs

N_CONFIGS = 2000
GOAL_CONFIGS_PER_S = {"mobilenet_v2": 20_000}
GOAL_SPEEDUP = 100


@pytest.mark.parametrize("family", FAMILIES)
def test_analytic_count_speed(benchmark, family):
    rng = random.Random(f"bench-{family}")
    archs = [random_arch(family, rng, resolution_range=(96, 256)) for _ in range(N_CONFIGS)]

    def count_all():
        for a in archs:
            count_macs(a)

    benchmark.pedantic(count_all, rounds=10, iterations=1, warmup_rounds=1)
    per_s = N_CONFIGS / benchmark.stats.stats.median

    torch.set_num_threads(1)
    sample = archs[:5]
    start = time.perf_counter()
    for a in sample:
        fvcore_macs(a)
    fvcore_per_s = len(sample) / (time.perf_counter() - start)

    benchmark.extra_info.update(configs_per_s=round(per_s), fvcore_configs_per_s=round(fvcore_per_s, 2),
                                speedup=round(per_s / fvcore_per_s))
    print(f"\n{family}: analytic {per_s:,.0f} configs/s, fvcore {fvcore_per_s:.2f} configs/s, "
          f"{per_s / fvcore_per_s:,.0f}x")
    assert per_s >= GOAL_CONFIGS_PER_S.get(family, 0)
    assert per_s / fvcore_per_s >= GOAL_SPEEDUP
