"""The registry of methods: every method class registers itself by name (``@register``), a second class of
the same name is refused. Finding the modules that register (the paper's method in ``repro.search``, each
baseline in ``baselines/``) is the pipeline's job (``repro.discover``), so that the core imports no method."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from repro.method import Method

REGISTRY: dict[str, type[Method]] = {}
M = TypeVar("M", bound="type[Method]")


def register(cls: M) -> M:
    """Class decorator; refuses a second method of the same name, and a retraining protocol it does not know."""
    if cls.__module__ == "__main__":
        # `python -m baselines.uniform` runs a module that discovery has imported (and registered) already
        return cls
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise ValueError(f"a method named {cls.name!r} is already registered ({REGISTRY[cls.name].__module__})")
    if cls.retrain not in ("scratch", "finetune"):
        raise ValueError(f"method {cls.name!r}: retrain={cls.retrain!r} must be 'scratch' or 'finetune'")
    REGISTRY[cls.name] = cls
    return cls


def registered(name: str) -> type[Method]:
    if name not in REGISTRY:
        raise ValueError(f"method {name!r} is not registered; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]
