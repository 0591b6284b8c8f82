"""Finding the methods: every module of ``repro.search`` and ``baselines`` is imported once, and the
methods they define register themselves (``repro.registry.register``). A new method is one new module in
``baselines/``: nothing else lists it."""

from __future__ import annotations

import importlib
import pkgutil

from repro.config import ConfigError, nearest
from repro.method import Method
from repro.profiles import Profile
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


def check_methods(profile: Profile) -> None:
    """Refuse a profile whose ``methods`` mapping names a method that is not registered (a typo would be
    ignored: the method would run with its defaults), or holds settings that do not type for a family the
    method handles; the error names the key and the nearest known name."""
    registry = load_methods()
    for name in profile.methods:
        if name not in registry:
            raise ConfigError(f"methods.{name}: no method is named {name!r}{nearest(name, registry)}; "
                              f"registered: {', '.join(sorted(registry))}")
        method = registry[name]()
        for family in method.families:
            method.config(profile.methods, family)
            method.retrain_recipe(profile, family)
