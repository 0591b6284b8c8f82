"""Latency: measurement settings and refusal, the layer table and its predictor, same-run references, and the
GPU check's code path on the CPU. Timings themselves are benchmarks (test_latency_benchmark.py)."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from repro.arch import ArchConfig
from repro.constraint import Constraint
from repro.cost.budget import make_budget
from repro.cost.latency import (
    LatencyConfig,
    LatencySettings,
    LatencyTable,
    NotRunHere,
    UnstableMeasurement,
    compare_latency,
    device_id,
    layer_keys,
    measure_arch,
    open_table,
    summarize,
)
from repro.reference import reference_arch
from repro.space import random_archs

QUICK = LatencySettings("cpu", warmup=1, repeats=3, max_cv=10.0)  # tests check what is recorded, not speed
ROOT = Path(__file__).resolve().parents[1]


def test_a_measurement_is_positive_and_records_its_settings():
    arch = ArchConfig.uniform("mobilenet_v1", 0.25, 64)
    m = measure_arch(arch, QUICK)
    assert m.median_ms > 0 and m.cv >= 0 and len(m.samples_ms) == 3
    assert m.settings == {"device": "cpu", "batch_size": 1, "threads": 1, "warmup": 1, "repeats": 3,
                          "dtype": "float32", "channels_last": False, "max_cv": 10.0, "layer_warmup": 3,
                          "layer_repeats": 15, "layer_timing": "chain"}
    assert m.environment["threads"] == 1 and m.environment["torch"] == torch.__version__
    assert m.environment["device_name"]


def test_thread_count_is_restored_after_measuring():
    before = torch.get_num_threads()
    measure_arch(ArchConfig.uniform("mobilenet_v1", 0.25, 32), LatencySettings("cpu", threads=1, warmup=0,
                                                                              repeats=3, max_cv=10.0))
    assert torch.get_num_threads() == before


def test_a_spread_above_the_threshold_is_refused_unless_allowed():
    settings = LatencySettings("cpu", max_cv=0.1)
    steady = summarize([10.0, 10.1, 9.9, 10.0], settings, "steady", env={})
    assert steady.median_ms == 10.0 and steady.cv < 0.01
    refused = r"coefficient of variation 0\.500 > max_cv 0\.1 .*latency\.cpu\.max_cv"
    with pytest.raises(UnstableMeasurement, match=refused):
        summarize([5.0, 15.0, 5.0, 15.0], settings, "a noisy network", env={})
    kept = summarize([5.0, 15.0, 5.0, 15.0], settings, "a noisy network", allow_unstable=True, env={})
    assert kept.cv == pytest.approx(0.5)


def test_settings_are_checked_and_resolved_per_device():
    from repro.cost.latency import default_settings

    cuda = default_settings("cuda").resolved()
    assert cuda["layer_warmup"] == 10 and cuda["layer_repeats"] == 30  # a GPU layer is timed like a network
    assert default_settings("cpu").resolved()["layer_repeats"] == 15
    assert LatencySettings("cuda").resolved()["batch_size"] == 256
    assert LatencySettings("cuda").resolved()["channels_last"] is True
    assert "threads" not in LatencySettings("cuda").resolved()
    with pytest.raises(ValueError, match="'tpu'"):
        LatencySettings("tpu")
    with pytest.raises(ValueError, match="repeats=2"):
        LatencySettings("cpu", repeats=2)


def _traced_layers(arch: ArchConfig) -> list[tuple]:
    """The convolutions, pools and classifier the built network runs, in order (forward hooks)."""
    from repro.models import build_model

    model = build_model(arch).eval()
    seen: list[tuple] = []

    def hook(m, inputs, output):
        x = inputs[0]
        if isinstance(m, nn.Conv2d):
            seen.append(("conv", m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0], m.groups, x.shape[-1]))
        elif isinstance(m, nn.MaxPool2d):
            seen.append(("maxpool", x.shape[1], x.shape[-1]))
        elif isinstance(m, nn.Linear):
            seen.append(("fc", m.in_features, m.out_features))

    for m in model.modules():
        m.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.zeros(1, 3, arch.resolution, arch.resolution))
    return seen


@pytest.mark.parametrize("family", ["mobilenet_v1", "mobilenet_v2", "resnet50"])
def test_layer_keys_are_the_layers_the_network_runs(family):
    for arch in [ArchConfig.canonical(family), *random_archs(family, 2, seed=3)]:
        keys = layer_keys(arch)
        mine = [k[:7] if k[0] == "conv" else k if k[0] == "maxpool" else ("fc", k[1], k[3]) for k in keys]
        assert mine == _traced_layers(arch)
    # residual additions and activations as the families have them
    v2 = layer_keys(ArchConfig.canonical("mobilenet_v2"))
    assert sum(k[0] == "conv" and k[8] == 1 for k in v2) == 10  # 17 blocks in 7 stages: 10 add their input
    assert {k[7] for k in v2 if k[0] == "conv"} == {"relu6", "none"}
    r50 = layer_keys(ArchConfig.canonical("resnet50"))
    assert sum(k[0] == "conv" and k[8] == 1 for k in r50) == 16  # every bottleneck


def test_the_prediction_is_exactly_the_sum_of_its_layers_entries():
    arch = random_archs("mobilenet_v2", 1, seed=5)[0]
    keys = list(layer_keys(arch))
    entries = {k: 0.001 * (i + 1) + 1 / 3 for i, k in enumerate(sorted(set(keys)))}
    table = LatencyTable(QUICK, dict(entries), measure_missing=False)
    assert table.predict(arch) == math.fsum(entries[k] for k in keys)
    # measured lazily: the same identity, and only the missing layers are measured
    lazy = LatencyTable(QUICK, environment={"device_name": "test"})
    small = ArchConfig.uniform("mobilenet_v1", 0.25, 32)
    value = lazy.predict(small)
    assert len(lazy.entries) == len(set(layer_keys(small)))
    assert value == math.fsum(lazy.entries[k] for k in layer_keys(small)) and value > 0


def test_layers_are_timed_in_their_networks_chain_and_present_entries_are_kept(monkeypatch):
    import repro.cost.latency as latency

    settings = LatencySettings("cpu", layer_warmup=1, layer_repeats=2)
    arch = ArchConfig.uniform("mobilenet_v2", 0.35, 32)
    keys = list(layer_keys(arch))
    samples = latency.measure_chain(keys, settings)
    assert set(samples) == set(keys)
    assert all(len(samples[k]) == 2 * keys.count(k) and min(samples[k]) > 0 for k in keys)  # repeated blocks too
    # a fill times the chain up to its last missing layer, and keeps the entries it had
    chains = []
    monkeypatch.setattr(latency.table, "measure_chain", lambda ks, s: chains.append(list(ks)) or {k: [1.0] for k in ks})
    last = max(i for i, k in enumerate(keys) if keys.count(k) == 1 and i < len(keys) - 1)
    table = LatencyTable(settings, {k: 123.0 for k in keys if k != keys[last]})
    assert table.fill(keys) == 1
    assert chains == [keys[:last + 1]]
    assert table.entries[keys[last]] == 1.0 and table.entries[keys[0]] == 123.0
    # timed alone, only the missing layers are measured
    alone = LatencyTable(LatencySettings("cpu", layer_warmup=1, layer_repeats=2, layer_timing="alone"))
    small = ArchConfig.uniform("mobilenet_v1", 0.25, 32)
    assert alone.fill(layer_keys(small)) == len(set(layer_keys(small))) and chains == [keys[:last + 1]]
    assert min(alone.entries.values()) > 0
    with pytest.raises(ValueError, match="layer_timing 'sideways' must be 'chain' or 'alone'"):
        LatencySettings("cpu", layer_timing="sideways")


def test_the_estimate_is_the_prediction_where_nothing_is_missing_and_never_measures():
    from repro.cost.latency.layers import layer_class, layer_work

    arch = random_archs("mobilenet_v2", 1, seed=5)[0]
    keys = list(layer_keys(arch))
    entries = {k: 0.002 * layer_work(k) ** 0.5 for k in set(keys)}
    full = LatencyTable(QUICK, dict(entries), measure_missing=False)
    assert full.estimate(arch) == full.predict(arch)
    # one layer missing: estimated from its kind's ms per MAC, nothing measured (measure_missing is off)
    gone = keys[3]
    part = LatencyTable(QUICK, {k: v for k, v in entries.items() if k != gone}, measure_missing=False)
    same_kind = [k for k in part.entries if layer_class(k) == layer_class(gone)]
    rate = statistics.median(part.entries[k] / layer_work(k) for k in same_kind)
    assert part.estimate(arch) == pytest.approx(full.predict(arch) - entries[gone] + rate * layer_work(gone))
    assert gone not in part.entries
    with pytest.raises(KeyError, match="measure_missing is off"):
        part.predict(arch)


def test_measuring_leaves_the_callers_random_streams_and_cudnn_setting_alone(tmp_path):
    """The table fills inside a search, between training steps: it must not reseed them."""
    table = LatencyTable(QUICK, environment={"device_name": "test"})
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    before = torch.backends.cudnn.benchmark
    table.predict(ArchConfig.uniform("mobilenet_v1", 0.25, 40))  # measures its layers
    measure_arch(ArchConfig.uniform("mobilenet_v1", 0.25, 32), QUICK)
    assert len(table.entries) > 0 and torch.equal(torch.rand(3), expected)
    assert torch.backends.cudnn.benchmark == before


def test_a_table_saves_itself_while_filling_and_keeps_other_processes_entries(tmp_path):
    path = tmp_path / "t.json"
    mine = LatencyTable(QUICK, environment={"device_name": "test"}, path=path, autosave_seconds=0.0)
    mine.predict(ArchConfig.uniform("mobilenet_v1", 0.25, 32))
    assert path.is_file() and len(json.loads(path.read_text())["entries"]) == len(mine.entries)
    other = LatencyTable(QUICK, {("head", 8, 1, 1000): 0.5}, path=path)
    other.save()
    merged = LatencyTable.load(path, QUICK)
    assert set(merged.entries) == set(mine.entries) | {("head", 8, 1, 1000)}
    assert set(other.entries) == {("head", 8, 1, 1000)}  # a run's own table does not change under it


def test_each_setting_has_its_own_table_file(tmp_path):
    a, b = LatencySettings("cpu", repeats=30), LatencySettings("cpu", repeats=50)
    assert device_id(a) != device_id(b) and device_id(a) == device_id(LatencySettings("cpu"))
    LatencyTable(a, {("head", 8, 1, 1000): 0.5}, path=tmp_path / f"{device_id(a)}.json").save()
    assert LatencyTable.open(b, tmp_path).entries == {}  # not refused: another file
    assert LatencyTable.open(a, tmp_path).entries == {("head", 8, 1, 1000): 0.5}


def test_a_table_without_measuring_names_the_build_command(tmp_path):
    table = LatencyTable(QUICK, {}, measure_missing=False)
    with pytest.raises(KeyError, match="latency-table --device cpu"):
        table.predict(ArchConfig.uniform("mobilenet_v1", 0.25, 32))


def test_a_saved_table_loads_and_refuses_other_settings(tmp_path):
    table = LatencyTable(QUICK, environment={"device_name": "test"})
    arch = ArchConfig.uniform("mobilenet_v1", 0.25, 32)
    predicted = table.predict(arch)
    path = tmp_path / "t.json"
    table.save(path)
    again = LatencyTable.load(path, QUICK, measure_missing=False)
    assert again.predict(arch) == predicted and again.entries == table.entries
    with pytest.raises(ValueError, match="was measured with"):
        LatencyTable.load(path, LatencySettings("cpu", repeats=4))


def test_latency_constraints_are_against_the_same_runs_reference(tmp_path):
    """The search's limit is the table's prediction of the column's uniform Channel network; the record
    compares measurements of both taken in this process."""
    config = LatencyConfig(cpu=QUICK, tables=str(tmp_path))
    table = open_table(config, "cpu_latency")
    reference = reference_arch("mobilenet_v1", 0.5)
    assert reference == ArchConfig.uniform("mobilenet_v1", 0.5, rule="floor")
    budget = make_budget(Constraint("cpu_latency", 0.5), "mobilenet_v1", table)
    assert budget.unit == "ms" and budget.limit == table.predict(reference)
    assert budget.fits(reference) and budget.ratio(reference) == 1.0
    assert not budget.fits(reference_arch("mobilenet_v1", 1.0))
    # a new table (another run, another device) gives the budget its own reference
    other = LatencyTable(QUICK, {k: 2 * v for k, v in table.entries.items()}, measure_missing=False)
    assert make_budget(Constraint("cpu_latency", 0.5), "mobilenet_v1", other).limit == pytest.approx(2 * budget.limit)
    with pytest.raises(ValueError, match="a gpu_latency budget needs the cuda latency table \\(got a cpu table\\)"):
        make_budget(Constraint("gpu_latency", 0.5), "mobilenet_v1", table)
    small = ArchConfig.uniform("mobilenet_v1", 0.25, 64)
    out = compare_latency(small, ArchConfig.uniform("mobilenet_v1", 0.5, 64), QUICK, rounds=2)
    assert out["ratio"] == pytest.approx(out["ms"] / out["reference_ms"])
    assert out["rounds"] == 2 and out["settings"] == QUICK.resolved() and out["kind"] == "cpu"
    assert not out["same_as_reference"]
    # the reference network against itself (a uniform row at its own column): one measurement a round, ratio 1
    ref = ArchConfig.uniform("mobilenet_v1", 0.5, 64)
    same = compare_latency(ref.replace(num_classes=16), ref, QUICK, rounds=2)
    assert same["same_as_reference"] and same["ratio"] == 1.0 and same["ms"] == same["reference_ms"]


def test_gpu_latency_is_not_run_without_a_gpu(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(NotRunHere, match="not run here"):
        open_table(LatencyConfig(tables=str(tmp_path)), "gpu_latency")
    from repro.runner import blocked_reason
    from tables.spec import table_cells

    cells = table_cells(2)
    gpu = [c for c in cells if c.subtable == "gpu_latency"]
    cpu = [c for c in cells if c.subtable == "cpu_latency"]
    assert gpu and all("not run here" in blocked_reason(c) for c in gpu)
    # Table 2's CPU sub-table: nothing reported in our copy, so the suite lists its 9 cells to fill
    assert len(cpu) == 9 and all(not c.reported and blocked_reason(c) is None for c in cpu)
    assert {c.constraint for c in cpu} == {Constraint("cpu_latency", k) for k in (0.75, 0.5, 0.35)}


def test_the_gpu_check_runs_its_path_on_the_cpu(tmp_path):
    out = subprocess.run([sys.executable, "scripts/gpu_check.py", "--device", "cpu", "--quick", "--out",
                          str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result["device_id"] == device_id(LatencySettings("cpu", repeats=5, warmup=2))
    assert {r["family"] for r in result["references"]} == {"mobilenet_v1", "mobilenet_v2"}
    assert result["table_build"]["layers"] > 0 and result["checks"][0]["archs"] == 3
    assert all(r["measured_ms"] > 0 and r["predicted_ms"] > 0 for r in result["checks"][0]["rows"])
    assert (tmp_path / f"{result['device_id']}.json").is_file()
