"""Shared test options: ``--benchmark`` runs the speed/memory benchmarks, which are skipped otherwise, and
saves pytest-benchmark's JSON under ``.benchmarks/`` (unless ``--benchmark-json``/``--benchmark-save`` say
where), so runs can be compared with ``--benchmark-compare``."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--benchmark", action="store_true", default=False,
                     help="run the benchmarks (tests that use pytest-benchmark's `benchmark` fixture)")


@pytest.hookimpl(tryfirst=True)  # before pytest-benchmark reads its options
def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--benchmark") and not (config.getoption("benchmark_json", None)
                                                 or config.getoption("benchmark_save", None)):
        from pytest_benchmark.utils import get_tag

        config.option.benchmark_autosave = get_tag()  # what --benchmark-autosave stores: commit, branch, time


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--benchmark"):
        return
    skip = pytest.mark.skip(reason="benchmark: run with `pytest tests/ --benchmark`")
    for item in items:
        if "benchmark" in getattr(item, "fixturenames", ()):
            item.add_marker(skip)
