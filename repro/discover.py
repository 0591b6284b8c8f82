"""Finding the methods: every module of ``repro.search`` and ``baselines`` is imported once, and the
methods they define register themselves (``repro.registry.register``). A new method is one new module in
``baselines/``: nothing else lists it."""

from __future__ import annotations

import importlib
import pkgutil

from repro.method import Method
from repro.registry import REGISTRY, registered

METHOD_PACKAGES = ("repro.search", "baselines")


def load_methods() -> dict[str, type[Method]]:
    """Import every module of the method packages (Python imports each once); returns the registry."""
    for package in METHOD_PACKAGES:
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, f"{package}."):
            if not info.name.endswith(".__main__"):
                importlib.import_module(info.name)
    return REGISTRY


def get_method(name: str) -> Method:
    load_methods()
    return registered(name)()
