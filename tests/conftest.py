"""Shared test options: ``--runslow`` also runs the tests marked slow; ``--benchmark`` runs the speed/memory
benchmarks, which are skipped otherwise, and
saves pytest-benchmark's JSON under ``.benchmarks/`` (unless ``--benchmark-json``/``--benchmark-save`` say
where), so runs can be compared with ``--benchmark-compare``."""

from __future__ import annotations

from pathlib import Path

import pytest


def make_tiny_data(base: Path, seed: int, train_per_class: int, per_class: int) -> Path:
    """A small prepared copy of the embedded data set in ``base`` (16 classes, 2 val images per class,
    ``per_class`` of each class's training images held out as sub-eval), for tests that train."""
    from data_prep import tiny
    from data_prep.write import WriteParams, prepare

    tiny.write_imagefolder(base / "imagefolder", seed=seed, train_per_class=train_per_class, val_per_class=2,
                           quiet=True)
    prepare(base / "imagefolder", base, per_class, 0, WriteParams(write_mode="raw"), None, tiny.BASE_RESOLUTION,
            workers=2, quiet=True, log=lambda s: None)
    return base


@pytest.fixture
def one_thread():
    """torch at one intra-op thread for the test, the process's count restored after: set at a module's import
    it held for every later test of the run, so the default run was a one-thread run."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--benchmark", action="store_true", default=False,
                     help="run the benchmarks (tests that use pytest-benchmark's `benchmark` fixture)")
    parser.addoption("--runslow", action="store_true", default=False,
                     help="also run the tests marked slow (minutes each; the default run skips them)")
    parser.addoption("--slurm", action="store_true", default=False,
                     help="run the tests marked slurm: a single-node Slurm started here (root, slurm-wlm and munge; "
                          "`nox -s cluster` installs them and runs these)")


@pytest.hookimpl(tryfirst=True)  # before pytest-benchmark reads its options
def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--benchmark") and not (config.getoption("benchmark_json", None)
                                                 or config.getoption("benchmark_save", None)):
        from pytest_benchmark.utils import get_tag

        config.option.benchmark_autosave = get_tag()  # what --benchmark-autosave stores: commit, branch, time


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    slow = pytest.mark.skip(reason="slow: run with `pytest tests/ --runslow`")
    slurm = pytest.mark.skip(reason="starts a local Slurm: run with `nox -s cluster` (pytest tests/ -m slurm --slurm)")
    bench = pytest.mark.skip(reason="benchmark: run with `pytest tests/ --benchmark`")
    for item in items:
        if item.get_closest_marker("slow") and not config.getoption("--runslow"):
            item.add_marker(slow)
        if item.get_closest_marker("slurm") and not config.getoption("--slurm"):
            item.add_marker(slurm)
        if "benchmark" in getattr(item, "fixturenames", ()) and not config.getoption("--benchmark"):
            item.add_marker(bench)
