"""The baselines as table cells through the pipeline, on a tiny copy of the embedded data set with every number
of their settings at its smallest: MetaPruning, NetAdapt and AMC on MobileNet V1, ThiNet, SFP (and, with
--runslow, AutoPruner and CP) on ResNet-50. Each cell meets its budget, the pruning methods start from one shared
reference network per family and fine-tune the weights they return, and a rerun is cached."""

from __future__ import annotations

import pytest

from repro.arch import ArchConfig
from repro.constraint import Constraint
from repro.profiles import load_profile
from tests.conftest import make_tiny_data

SMALL = [
    "train.epochs=1", "train.batch_size=32", "train.lr_reference_batch=32",
    "methods.metapruning.pruningnet_epochs=1", "methods.metapruning.recalibration_batches=1",
    "methods.metapruning.evolution={population: 4, iterations: 2, mutations: 1, crossovers: 1, parents: 2, "
    "keep: 4}",
    "methods.netadapt.short_steps=1", "methods.netadapt.init_reduction=0.1",
    "methods.amc.warmup_episodes=2", "methods.amc.train_episodes=2", "methods.amc.calibration_batches=1",
    "methods.thinet.calibration_images=16", "methods.thinet.block_finetune_epochs=0",
    "methods.cp.calibration_images=16", "methods.cp.lasso_points=4", "methods.cp.lasso_steps=4",
    "methods.cp.block_finetune_epochs=0.5", "methods.autopruner.stage_epochs=1",
]


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    from repro.pipeline import prepare_data

    folder = make_tiny_data(tmp_path_factory.mktemp("baseline-data"), seed=3, train_per_class=6, per_class=2)
    profile = load_profile("smoke", [f"data.path={folder}", *SMALL])
    return profile, prepare_data(profile, log=lambda s: None), tmp_path_factory.mktemp("baseline-results")


@pytest.mark.parametrize("method,limit", [("metapruning", 150e6), ("netadapt", 330e6), ("amc", 330e6)])
def test_baseline_cell_meets_its_budget_and_is_cached(setting, method, limit):
    from repro.pipeline import run_cell
    from repro.results import find_record

    profile, data, results = setting
    logs: list[str] = []
    record, ran = run_cell(method, "channel", "mobilenet_v1", Constraint("flops", limit), profile, 0, data, results,
                           log=logs.append, quiet=True)
    assert ran and record.macs <= limit and 0 <= record.top1 <= 1
    assert record.retrain_protocol == ("scratch" if method == "metapruning" else "finetune")
    retrain = find_record(results / "records", record.artifacts["retrain"])
    assert retrain is not None and retrain.method == record.retrain_protocol
    if method != "metapruning":  # fine-tuned at the method's learning rate, from the pruned weights
        assert retrain.profile_config["train"]["lr"] == 0.01
    again, ran_again = run_cell(method, "channel", "mobilenet_v1", Constraint("flops", limit), profile, 0, data,
                                results, log=logs.append, quiet=True)
    assert not ran_again and again == record


def test_pruning_baselines_share_one_reference_network(setting):
    from repro.results import load_records

    _profile, _data, results = setting
    frame, _ = load_records(results / "records")
    canonical = list(ArchConfig.canonical("mobilenet_v1").widths)
    full = [r for r in frame.to_dict("records") if r["kind"] == "retrain" and r["method"] == "scratch"
            and r["arch"]["widths"] == canonical]
    # NetAdapt and AMC both started from it; trained once
    assert len(full) == 1
    kinds = sorted(frame["kind"])
    assert kinds.count("pruningnet") == 1 and kinds.count("cell") == 3


# CP's and AutoPruner's cells add 1-2 minutes to the default run (LASSO fits, four gated stages): they run with
# --runslow; CP's selection and refit and AutoPruner's gates are tested in tests/test_baselines_resnet.py, and
# CP's cell shares prune_layerwise with ThiNet's
@pytest.mark.parametrize("method", ["thinet", "sfp", pytest.param("autopruner", marks=pytest.mark.slow),
                                    pytest.param("cp", marks=pytest.mark.slow)])
def test_resnet_pruning_cell_meets_its_budget_from_the_shared_reference(setting, method):
    from repro.pipeline import run_cell
    from repro.results import find_record, load_records

    profile, data, results = setting
    record, ran = run_cell(method, "channel", "resnet50", Constraint("flops", 2e9), profile, 0, data, results,
                           log=lambda s: None, quiet=True)
    assert ran and record.macs <= 2e9 and record.retrain_protocol == "finetune"
    search = record.extra["search"]
    assert 0.5 < search["keep_ratio"] < 0.6
    if method == "sfp":  # soft-pruned for an epoch; zeroed filters came back during it
        assert search["history"] and search["history"][-1]["filters_revived"] > 0
    elif method == "autopruner":  # gated training stage by stage, then pruned
        assert [s["stage"] for s in search["stages"]] == [0, 1, 2, 3]
    else:
        assert len(search["layers"]) == 32
        assert all(layer["error_after"] <= layer["error_before"] + 1e-6 for layer in search["layers"])
    assert find_record(results / "records", record.artifacts["retrain"]) is not None
    frame, _ = load_records(results / "records")
    canonical = list(ArchConfig.canonical("resnet50").widths)
    references = [r for r in frame.to_dict("records") if r["kind"] == "retrain" and r["method"] == "scratch"
                  and r["arch"]["widths"] == canonical]
    assert len(references) == 1  # ThiNet and CP prune the same trained ResNet-50
