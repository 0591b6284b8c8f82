"""Every registered method against the seam, by looping over the registry: a new method is tested by being
registered. Each declares what it handles in a form the pipeline can check, its settings resolve from both
profiles, the pipeline refuses a cell outside what it declares (one message for every method), and a search
that is not ``distributed`` is refused under several processes before any work. The README's example method
(``tests/example_method.py``, the same text) runs end to end through ``run-cell``."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from repro.arch import FAMILIES, ArchConfig
from repro.constraint import CONSTRAINT_KINDS, Constraint
from repro.discover import load_methods
from repro.profiles import load_profile
from tests.conftest import make_tiny_data

README = Path(__file__).resolve().parents[1] / "README.md"
METHODS = sorted(name for name, cls in load_methods().items() if cls.__module__.startswith(("baselines.", "repro.")))


def test_discovery_finds_the_paper_method_and_every_baseline_module():
    assert {"proposed", "uniform", "netadapt", "amc", "metapruning", "thinet", "cp", "sfp",
            "autopruner"} <= set(METHODS)


@pytest.mark.parametrize("name", METHODS)
def test_a_method_declares_what_it_handles_and_its_settings_resolve(name):
    cls = load_methods()[name]
    assert cls.name == name and cls.variants and cls.retrain in ("scratch", "finetune")
    assert set(cls.families) <= set(FAMILIES) and cls.families
    assert set(cls.constraint_kinds) <= set(CONSTRAINT_KINDS) and cls.constraint_kinds
    assert cls.config_type is None or dataclasses.is_dataclass(cls.config_type)
    for profile in ("smoke", "imagenet"):
        methods = load_profile(profile).methods
        for family in cls.families:
            cfg = cls().config(methods, family)
            assert cls.config_type is None or isinstance(cfg, cls.config_type)
            cls().retrain_recipe(load_profile(profile), family)  # its fine-tuning changes type-check


@pytest.mark.parametrize("name", METHODS)
def test_the_pipeline_refuses_a_cell_outside_what_a_method_declares(name):
    from repro.pipeline import check_cell

    method = load_methods()[name]()
    family = method.families[0]
    check_cell(method, method.variants[0], family, Constraint("flops", 1e8))  # inside: nothing to say
    with pytest.raises(ValueError, match=rf"method '{name}' has no variant 'sideways'; it has: "):
        check_cell(method, "sideways", family, Constraint("flops", 1e8))
    other = [f for f in FAMILIES if f not in method.families]
    if other:
        with pytest.raises(ValueError, match=rf"method '{name}' is not built for {other[0]}; it handles: "):
            check_cell(method, method.variants[0], other[0], Constraint("flops", 1e8))
    kinds = [k for k in CONSTRAINT_KINDS if k not in method.constraint_kinds]
    if kinds:
        with pytest.raises(ValueError, match=rf"method '{name}' has no {kinds[0]} form; it runs under: "):
            check_cell(method, method.variants[0], family, Constraint(kinds[0], 0.5))


def _fake_data():
    from tests.test_keys import _data

    return _data()


@pytest.mark.parametrize("name", METHODS)
def test_a_single_process_search_is_refused_under_torchrun_before_any_work(name, tmp_path, monkeypatch):
    import repro.distributed as dist
    from repro.pipeline import search

    method = load_methods()[name]()
    if method.distributed:
        pytest.skip(f"{name} runs under torchrun")
    monkeypatch.setattr(dist, "world_size", lambda: 4)
    called = []
    monkeypatch.setattr(type(method), "search", lambda self, ctx: called.append(ctx))
    with pytest.raises(RuntimeError, match=rf"{name}'s search runs in one process, not under torchrun with 4"):
        search(method, method.variants[0], method.families[0], Constraint("flops", 1e8), load_profile("smoke"), 0,
               _fake_data(), tmp_path)
    assert not called and not any(tmp_path.iterdir())


@pytest.fixture(scope="module")
def example_method():
    import tests.example_method as module  # registers half_depth
    from repro.registry import REGISTRY

    yield module
    REGISTRY.pop("half_depth", None)


def test_the_readme_shows_the_example_method_as_it_is_tested():
    text = README.read_text()
    block = re.search(r"```python\n(from dataclasses import dataclass\n.*?)```\n", text, re.S)
    assert block and block.group(1) == (Path(__file__).with_name("example_method.py")).read_text()
    assert len(block.group(1).splitlines()) <= 30


def test_a_new_method_runs_end_to_end_through_run_cell(example_method, tmp_path, capsys):
    from repro.cli import main
    from repro.results import load_records

    data = make_tiny_data(tmp_path / "data", seed=3, train_per_class=6, per_class=2)
    argv = ["run-cell", "--method", "half_depth", "--variant", "depth", "--family", "mobilenet_v2", "--flops",
            "100M", "--data", str(data), "--results", str(tmp_path / "results"), "--quiet", "--train.epochs=1",
            "--train.batch_size=32", "--train.lr_reference_batch=32", "--methods.half_depth.width=0.9"]
    assert main(argv) == 0
    assert "\nran: half_depth depth mobilenet_v2" in capsys.readouterr().out
    frame, _ = load_records(tmp_path / "results" / "records")
    cell = next(r for r in frame.to_dict("records") if r["kind"] == "cell")
    assert cell["macs"] <= 100e6 and cell["arch"]["depths"] == [1, 1, 1, 2, 1, 1, 1]
    assert cell["extra"]["search"]["width"] <= 0.9 and cell["retrain_protocol"] == "scratch"
    assert 0 <= cell["top1"] <= 1
    assert main(argv) == 0 and "already done: half_depth" in capsys.readouterr().out
    assert main([*argv[:-1], "--methods.half_depth.widht=0.9"]) == 2  # its typed settings refuse a typo
    assert "widht" in capsys.readouterr().err


def test_search_only_runs_a_one_process_search_alone_and_the_cell_then_reuses_it(example_method, tmp_path, capsys):
    """What a Slurm task on several GPUs runs before torchrun: the search alone (cached), nothing for a method
    that searches under torchrun, nothing once the cell's record exists."""
    from repro.cli import main

    data = make_tiny_data(tmp_path / "data", seed=3, train_per_class=6, per_class=2)
    common = ["--variant", "depth", "--family", "mobilenet_v2", "--flops", "100M", "--data", str(data),
              "--results", str(tmp_path / "results"), "--quiet", "--train.epochs=1", "--train.batch_size=32",
              "--train.lr_reference_batch=32"]
    assert main(["run-cell", "--method", "half_depth", "--search-only", *common]) == 0
    assert "search done in one process" in capsys.readouterr().out
    assert len(list((tmp_path / "results" / "searches").glob("*/result.pt"))) == 1
    assert not list((tmp_path / "results" / "records").glob("cell-*.json"))
    assert main(["run-cell", "--method", "half_depth", *common]) == 0
    assert "half_depth search already done" in capsys.readouterr().out
    assert main(["run-cell", "--method", "half_depth", "--search-only", *common]) == 0
    assert "the cell's record exists: nothing to search" in capsys.readouterr().out
    assert main(["run-cell", "--method", "half_depth", "--reference-only", *common]) == 0
    assert "the cell's record exists: nothing to train" in capsys.readouterr().out
    assert main(["run-cell", "--method", "half_depth", "--reference-only", *common[:5], "90M", *common[6:]]) == 0
    assert "half_depth starts from no reference network: nothing to train" in capsys.readouterr().out
    amc = ["--method", "amc", "--variant", "channel", "--family", "mobilenet_v1", "--flops", "330M", *common[6:]]
    assert main(["run-cell", "--reference-only", *amc]) == 0  # what a task on several GPUs trains with DDP first
    assert "the reference mobilenet_v1 network is trained" in capsys.readouterr().out
    trained = [json.loads(p.read_text()) for p in (tmp_path / "results" / "records").glob("retrain-*.json")]
    assert [r["arch"]["widths"] for r in trained if r["family"] == "mobilenet_v1"] == [
        list(ArchConfig.canonical("mobilenet_v1").widths)]
    common[:2] = ["--variant", "channel"]
    assert main(["run-cell", "--method", "uniform", "--search-only", *common]) == 0
    assert "uniform searches under torchrun with the retraining" in capsys.readouterr().out
