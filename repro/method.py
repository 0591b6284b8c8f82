"""The one interface every method implements (the paper's method and each baseline), and its registry.

A method turns (family, variant, constraint) into an architecture (``search``), and declares how that
architecture is then trained: ``"scratch"`` (trained from scratch on the full training split, as the paper
does for its own method and the uniform baselines) or ``"finetune"`` (the pruned weights it returns are
fine-tuned, as the traditional pruning methods do). The pipeline has no per-method branches: a new method
is one module that calls ``register``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from repro.arch import ArchConfig

CONSTRAINT_KINDS = ("flops", "gpu_latency", "cpu_latency")


@dataclass(frozen=True)
class Constraint:
    """``flops``: ``limit`` in MACs (ImageNet geometry). ``gpu_latency`` / ``cpu_latency``: ``limit`` is the
    width multiplier of the uniform *Channel* reference whose latency, measured in the same run on the same
    device, is the budget (met when the ratio is <= 1)."""

    kind: Literal["flops", "gpu_latency", "cpu_latency"]
    limit: float

    def __post_init__(self) -> None:
        if self.kind not in CONSTRAINT_KINDS:
            raise ValueError(f"constraint kind={self.kind!r} is not known; allowed: {', '.join(CONSTRAINT_KINDS)}")
        if not self.limit > 0:
            raise ValueError(f"constraint limit={self.limit!r} must be positive")

    def label(self) -> str:
        if self.kind == "flops":
            from repro.cost.flops import format_macs

            return format_macs(self.limit, 0 if self.limit >= 1e6 and self.limit % 1e6 == 0 else 1)
        return f"{self.limit:g}x {self.kind.replace('_', ' ')}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "limit": self.limit}


@dataclass
class SearchResult:
    arch: ArchConfig  # at ImageNet geometry (1000 classes): the pipeline sets the data set's class count
    weights: dict[str, Any] | None = None  # for "finetune" methods: the pruned network's state_dict
    info: dict[str, Any] = field(default_factory=dict)  # anything worth recording (trajectory file, ...)
    # the search's wall time when it ran earlier and was reused (a cell rerun to measure again); None: the
    # pipeline times ``search`` itself
    seconds: float | None = None


class Method:
    """Subclass, set ``name``, ``variants`` and ``retrain``, implement ``search``, and ``register`` it."""

    name: ClassVar[str]
    variants: ClassVar[tuple[str, ...]]
    retrain: ClassVar[Literal["scratch", "finetune"]] = "scratch"
    # what this build of the method handles; the runner reports other cells as "not available"
    families: ClassVar[tuple[str, ...]] = ("mobilenet_v1", "mobilenet_v2", "resnet50")
    constraint_kinds: ClassVar[tuple[str, ...]] = ("flops",)

    def search(self, family: str, variant: str, constraint: Constraint, ctx: Any) -> SearchResult:
        raise NotImplementedError

    # the dataclass that types this method's ``methods.<name>`` entry (None: the entry is used as written)
    config_type: ClassVar[type | None] = None

    def config(self, methods: dict[str, Any], family: str | None = None) -> Any:
        """This method's typed settings from a profile's ``methods`` mapping (defaults filled in), with the
        entries of its ``by_family.<family>`` mapping merged over them (nested mappings key by key) when
        ``family`` is given: a profile can scale a shared method differently for ResNet-50 than for the
        MobileNets without changing the MobileNet cells."""
        written, where = methods.get(self.name), f"methods.{self.name}"
        entry = entry_for_family(written, where, family)
        if self.config_type is None:
            return entry
        from repro.config import from_mapping

        if family and isinstance(written, dict) and (written.get("by_family") or {}).get(family):
            where += f" (with by_family.{family})"  # an error may come from the family's changes
        return from_mapping(self.config_type, entry or {}, where)

    def settings(self, methods: dict[str, Any], family: str | None = None) -> Any:
        """This method's resolved settings for ``family`` as plain data: what a cell's cache key holds, so a
        changed default in code changes the key too (the profile's entry as written for a method without
        ``config_type``); another family's ``by_family`` entry does not enter it."""
        from repro.config import to_mapping

        return to_mapping(self.config(methods, family))

    def retrain_recipe(self, profile: Any, family: str) -> Any:
        """The recipe the found architecture is (re)trained with: the profile's for the family, with the
        changes of the settings' ``finetune`` mapping when there is one (the fine-tuning methods' shorter run
        or lower learning rate)."""
        changes = getattr(self.config(profile.methods, family), "finetune", None)
        return profile.train_for(family, changes, f"methods.{self.name}.finetune")

    def check(self, variant: str) -> None:
        if variant not in self.variants:
            raise ValueError(f"method {self.name!r} has no variant {variant!r}; it has: {', '.join(self.variants)}")


def entry_for_family(entry: Any, where: str, family: str | None) -> Any:
    """A method's profile entry with ``by_family`` removed and, for ``family``, its mapping merged in
    (nested mappings merged key by key); an unknown family name is an error naming the key."""
    if not isinstance(entry, dict) or "by_family" not in entry:
        return entry
    from repro.config import ConfigError, require_families

    entry = dict(entry)
    by_family = entry.pop("by_family") or {}
    if not isinstance(by_family, dict):
        raise ConfigError(f"{where}.by_family must be a mapping of family -> settings, got {by_family!r}")
    require_families(by_family, f"{where}.by_family")
    for name, changes in by_family.items():
        if changes is not None and not isinstance(changes, dict):
            raise ConfigError(f"{where}.by_family.{name} must be a mapping of settings, got {changes!r}")
    return _merge(entry, by_family.get(family) or {}) if family else entry


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


REGISTRY: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator; refuses a second method of the same name."""
    if cls.__module__ == "__main__":
        # `python -m baselines.uniform` runs a module that the package import has registered already
        return cls
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise ValueError(f"a method named {cls.name!r} is already registered ({REGISTRY[cls.name].__module__})")
    if cls.retrain not in ("scratch", "finetune"):
        raise ValueError(f"method {cls.name!r}: retrain={cls.retrain!r} must be 'scratch' or 'finetune'")
    REGISTRY[cls.name] = cls
    return cls


def load_methods() -> None:
    """Import (and so register) the paper's method and every baseline."""
    import baselines
    import repro.search.proposed  # noqa: F401

    baselines.load_all()


def get_method(name: str) -> Method:
    load_methods()

    if name not in REGISTRY:
        raise ValueError(f"method {name!r} is not registered; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]()
