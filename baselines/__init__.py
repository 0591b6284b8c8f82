"""Baseline methods, one module each, all implementing ``repro.method.Method``. ``load_all()`` imports
them, which registers them; the package import itself does not, so ``python -m baselines.uniform`` runs
that module once."""

from __future__ import annotations

import importlib

MODULES = ("baselines.uniform", "baselines.metapruning", "baselines.netadapt", "baselines.amc", "baselines.thinet",
           "baselines.cp", "baselines.sfp", "baselines.autopruner")


def load_all() -> None:
    for name in MODULES:
        importlib.import_module(name)
