"""Baseline methods, one module each, all implementing ``repro.method.Method``. Importing this package
registers every one of them."""

from baselines import uniform  # noqa: F401
