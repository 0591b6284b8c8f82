"""Every registered method as a table cell through the pipeline, on a tiny copy of the embedded data set with
every number of its settings at its smallest (CP's and AutoPruner's cells with --runslow). Each cell meets its
budget and is retrained as its method declares, a rerun is cached, and the pruning methods start from one shared
reference network per family and fine-tune the weights they return."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from repro.arch import ArchConfig
from repro.constraint import Constraint
from repro.discover import load_methods
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
    "methods.proposed.score_batch_size=16", "methods.proposed.epochs_fraction=1.0",
    "methods.proposed.checkpoint_every=1",
]


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    from repro.pipeline import prepare_data

    folder = make_tiny_data(tmp_path_factory.mktemp("baseline-data"), seed=3, train_per_class=6, per_class=2)
    profile = load_profile("smoke", [f"data.path={folder}", *SMALL])
    return profile, prepare_data(profile, log=lambda s: None), tmp_path_factory.mktemp("baseline-results")


# CP's and AutoPruner's cells add 1-2 minutes to the default run (LASSO fits, four gated stages): they run with
# --runslow; CP's selection and refit and AutoPruner's gates are tested in tests/test_baselines_resnet.py, and
# CP's cell shares prune_layerwise with ThiNet's
SLOW = {"cp", "autopruner"}
FLOPS = {"mobilenet_v1": 330e6, "mobilenet_v2": 150e6, "resnet50": 2e9}
METHODS = sorted(n for n, cls in load_methods().items() if cls.__module__.startswith(("baselines.", "repro.")))


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in METHODS])
def test_every_method_runs_a_cell_that_meets_its_budget_and_is_cached(setting, name):
    """Every registered method, on the first family it handles, under a FLOPs limit of that family's table:
    its record meets the budget (a uniform row may not need to, but these do), is retrained as the method
    declares with its recipe, and a rerun is read back."""
    from repro.config import to_mapping
    from repro.discover import get_method
    from repro.pipeline import run_cell
    from repro.results import find_record

    profile, data, results = setting
    method = get_method(name)
    family, variant = method.families[0], method.variants[0]
    limit = Constraint("flops", FLOPS[family])
    record, ran = run_cell(name, variant, family, limit, profile, 0, data, results, log=lambda s: None, quiet=True)
    assert ran and record.macs <= limit.limit and 0 <= record.top1 <= 1
    assert record.retrain_protocol == method.retrain
    retrain = find_record(results / "records", record.artifacts["retrain"])
    assert retrain is not None and retrain.method == method.retrain
    assert retrain.profile_config["train"] == to_mapping(method.retrain_recipe(profile, family))
    if method.retrain == "finetune":  # fine-tuned at the method's learning rate, from the pruned weights
        assert retrain.profile_config["train"]["lr"] == 0.01
    again, ran_again = run_cell(name, variant, family, limit, profile, 0, data, results, log=lambda s: None,
                                quiet=True)
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
    assert sorted(frame["kind"]).count("pruningnet") == 1


@pytest.mark.parametrize("method", ["thinet", "sfp", pytest.param("autopruner", marks=pytest.mark.slow),
                                    pytest.param("cp", marks=pytest.mark.slow)])
def test_resnet_pruning_cell_meets_its_budget_from_the_shared_reference(setting, method):
    from repro.pipeline import run_cell
    from repro.results import find_record, load_records

    profile, data, results = setting
    record, ran = run_cell(method, "channel", "resnet50", Constraint("flops", 2e9), profile, 0, data, results,
                           log=lambda s: None, quiet=True)
    assert record.macs <= 2e9 and record.retrain_protocol == "finetune"  # run here or by the loop above
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


class _Killed(Exception):
    pass


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in METHODS if n != "uniform"])
def test_every_search_killed_after_its_first_checkpoint_resumes_to_the_same_result(setting, name, monkeypatch):
    """Each registered method's search, killed right after the first checkpoint it writes (the process dies
    there), then run again: the same architecture (and, for the pruning methods, the same weights) as the
    uninterrupted search of the cell test above, whose result the pipeline had cached."""
    import shutil

    import repro.atomic
    import repro.train.trainer
    from repro.discover import get_method
    from repro.pipeline import search

    profile, data, results = setting
    method = get_method(name)
    family, variant = method.families[0], method.variants[0]
    cell = (method, variant, family, Constraint("flops", FLOPS[family]), profile, 0, data, results)
    whole = search(*cell, log=lambda s: None, quiet=True)  # the cell test's, read back
    folder = results / whole.info["folder"]
    shutil.rmtree(folder)
    writes: list[str] = []

    def dying(write):
        def wrapper(path, data):
            write(path, data)
            if folder in Path(path).parents and Path(path).name not in ("result.pt", "result.json"):
                writes.append(Path(path).name)
                raise _Killed(path)
        return wrapper

    monkeypatch.setattr(repro.train.trainer, "atomic_write_bytes", dying(repro.train.trainer.atomic_write_bytes))
    monkeypatch.setattr(repro.atomic, "atomic_write_text", dying(repro.atomic.atomic_write_text))
    with pytest.raises(_Killed):
        search(*cell, log=lambda s: None, quiet=True)
    monkeypatch.undo()
    assert writes, f"{name} wrote no checkpoint before its result"
    resumed = search(*cell, log=lambda s: None, quiet=True)
    assert resumed.arch == whole.arch
    assert (resumed.weights is None) == (whole.weights is None)
    if whole.weights is not None:
        assert resumed.weights.keys() == whole.weights.keys()
        assert all(torch.equal(resumed.weights[k], whole.weights[k]) for k in whole.weights)
