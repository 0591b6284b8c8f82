"""The seam between the pipeline and the methods: the interface every method implements (the paper's method
and each baseline), what a method receives (``Context``) and where it keeps its files (``SearchStore``).

A method turns a ``Context`` (family, variant, constraint, its typed settings, the constraint as a
``Budget``, the data, the seed) into an architecture (``search``), and declares how that architecture is then
trained: ``"scratch"`` (from scratch on the full training split, as the paper does for its own method and the
uniform baselines) or ``"finetune"`` (the pruned weights it returns are fine-tuned, as the traditional pruning
methods do). The pipeline does everything around a search once, for every method: it builds the search's key
from its inputs, returns a finished search's result without calling the method, refuses several processes to
a method that is not ``distributed``, times the search and writes its result. A method writes only its own
logic; what it needs from the layers above (a trained reference network, a shared artifact's record) comes
through the ``Shared`` protocol, which the pipeline implements.

A new method is one module in ``baselines/`` with a class that subclasses ``Method`` and is decorated with
``repro.registry.register`` (README: "Adding a method").
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, Protocol, TypeVar

from repro.arch import ArchConfig
from repro.atomic import atomic_write_bytes, atomic_write_text
from repro.config import ConfigError, from_mapping, require_families, to_mapping
from repro.constraint import HEADER, Constraint, Target
from repro.cost.budget import Budget
from repro.dataset import PreparedData
from repro.keys import input_key

if TYPE_CHECKING:
    import torch
    from torch import nn

    from repro.profiles import Profile, TrainConfig

C = TypeVar("C")
SEARCHES, RESULT, RESULT_JSON = "searches", "result.pt", "result.json"


@dataclass
class SearchResult:
    arch: ArchConfig  # at ImageNet geometry (1000 classes): the pipeline sets the data set's class count
    weights: dict[str, Any] | None = None  # for "finetune" methods: the pruned network's state_dict
    info: dict[str, Any] = field(default_factory=dict)  # JSON-able details worth recording (history, losses)
    # the search's own wall time when the method knows it better than the pipeline's clock (a search resumed
    # after a crash counts the interrupted part too); None: the pipeline's timing of ``search``
    seconds: float | None = None


@dataclass(frozen=True)
class TrainedNetwork:
    """A network trained by the pipeline (a reference network the pruning methods start from), loaded."""

    model: nn.Module
    key: str  # the key of its training record
    top1: float | None


@dataclass(frozen=True)
class Artifact:
    """A shared artifact made by a method (MetaPruning's PruningNet): the pipeline records it (kind, key, the
    architecture it holds, its settings and files under the results folder) so that it is built once."""

    kind: str
    key: str
    method: str
    family: str
    arch: ArchConfig
    settings: dict[str, Any]
    files: dict[str, Path]
    seconds: float
    epochs: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Shared(Protocol):
    """What a method may ask of the layers above it; the pipeline implements it."""

    def reference(self, family: str) -> TrainedNetwork:
        """The family's full network trained from scratch with the profile's recipe (built once, shared)."""

    def artifact_done(self, key: str) -> bool:
        """Whether an artifact with this key has its record already."""

    def publish(self, artifact: Artifact) -> None:
        """Record a finished artifact."""

    def lock(self, key: str, what: str) -> AbstractContextManager[None]:
        """Hold the artifact's lock (another process making it is waited for)."""


@dataclass(frozen=True)
class SearchStore:
    """One search's folder, named by the key of all its inputs: the method's checkpoints and files
    (``path``), and the finished result (``load`` / ``save``, used by the pipeline)."""

    root: Path  # <results>/searches
    key: str

    @property
    def folder(self) -> Path:
        return self.root / self.key

    def path(self, name: str) -> Path:
        """A file of this search (its folder made on the way)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder / name

    def load(self, log: Callable[[str], None] = print) -> SearchResult | None:
        """The finished search's result, or None. A result file that cannot be read whole (truncated, missing a
        key) is set aside as ``result.pt.corrupt-<time>`` with a line saying so, and the search runs again."""
        import time

        import torch

        done = self.folder / RESULT
        if not done.is_file():
            return None
        try:
            saved = torch.load(done, map_location="cpu", weights_only=False)
            return SearchResult(ArchConfig.from_dict(saved["arch"]), saved["weights"], saved["info"],
                                saved["seconds"])
        except Exception as e:  # noqa: BLE001 - whatever makes it unreadable, it is set aside, never half-used
            aside = done.with_name(f"{RESULT}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
            done.replace(aside)
            log(f"search result {done} cannot be read ({type(e).__name__}: {str(e)[:120]}); set aside as "
                f"{aside.name}, searching again")
            return None

    def save(self, result: SearchResult) -> None:
        """Write the result (``result.pt``, and ``result.json`` for people), atomically."""
        import torch

        buf = io.BytesIO()
        torch.save({"arch": result.arch.to_dict(), "weights": result.weights, "info": result.info,
                    "seconds": result.seconds}, buf)
        atomic_write_bytes(self.path(RESULT), buf.getvalue())
        summary = {"arch": result.arch.to_dict(), "seconds": result.seconds, **result.info}
        atomic_write_text(self.path(RESULT_JSON), json.dumps(summary, indent=1, default=str))


@dataclass(frozen=True)
class Context(Generic[C]):
    """Everything a method's ``search`` may use. The same fields for the paper's method and every baseline."""

    family: str
    variant: str
    constraint: Constraint  # what the search must meet: the column's, or its FLOPs target's (``Target``)
    config: C  # the method's typed settings (``Method.config_type``), its family's changes merged in
    budget: Budget  # the constraint as a cost function and limit
    store: SearchStore
    profile: Profile
    seed: int
    data: PreparedData
    shared: Shared
    results: Path  # the results folder (artifacts live under it)
    device: torch.device | None = None
    log: Callable[[str], None] = print
    quiet: bool = False
    # the cell's operating point: a pruning method published at a rate applies ``target.value`` (a FLOPs or
    # speed-up target is already the constraint and budget above)
    target: Target = HEADER

    @property
    def recipe(self) -> TrainConfig:
        """The family's training recipe in the profile."""
        return self.profile.train_for(self.family)

    def reference(self) -> TrainedNetwork:
        return self.shared.reference(self.family)

    def artifact_folder(self, kind: str, **inputs: Any) -> tuple[str, Path]:
        """(key, folder) of a shared artifact of ``kind`` named by ``inputs`` (with the data and seed)."""
        key = input_key(kind=kind, data=self.data.identity(), seed=self.seed, **inputs)
        return key, self.results / f"{kind}s" / key


@dataclass(frozen=True)
class Work:
    """One phase of a cell's compute as a method declares it (``Method.work``), for the cost a Slurm
    submission prints before it starts (``repro.cluster``): a model, not a measurement. ``images`` is a
    number of passes over ``split`` (``"train"``, ``"subtrain"``, ``"subeval"``), or a number of images when
    ``split`` is None; ``network`` is ``"full"`` (the family's canonical network) or ``"found"`` (a network at
    the cell's budget); a phase ``shared`` under a name (``"reference"``, ``"pruningnet"``) is one artifact per
    family and seed, counted once however many cells use it."""

    what: str
    images: float
    split: str | None = "train"
    network: Literal["full", "found"] = "full"
    forward_only: bool = False
    shared: str | None = None

    def __post_init__(self) -> None:
        if self.split not in (None, "train", "subtrain", "subeval"):
            raise ValueError(f"Work split={self.split!r}: one of train, subtrain, subeval, or None for a count")
        if not self.images >= 0:
            raise ValueError(f"Work images={self.images!r} must be at least 0")


def reference_work(profile: Profile, family: str) -> Work:
    """The family's reference network (the pruning methods' start): the profile's recipe, shared."""
    return Work("reference network (full, shared per family and seed)", profile.train_for(family).epochs,
                network="full", shared="reference")


class Method(Generic[C]):
    """Subclass, set ``name``, ``variants``, ``retrain`` (and ``config_type``), implement ``search``, and
    decorate the class with ``repro.registry.register``."""

    name: ClassVar[str]
    variants: ClassVar[tuple[str, ...]]
    retrain: ClassVar[Literal["scratch", "finetune"]] = "scratch"
    # what this build of the method handles; the runner reports other cells as "not available"
    families: ClassVar[tuple[str, ...]] = ("mobilenet_v1", "mobilenet_v2", "resnet50")
    constraint_kinds: ClassVar[tuple[str, ...]] = ("flops",)
    # the operating points it can run at (``repro.constraint.Target``): a FLOPs budget (the header, a printed
    # figure, a speed-up) for every method; a keep rate only for the methods published at one
    target_kinds: ClassVar[tuple[str, ...]] = ("header", "flops", "speedup")
    # the dataclass that types this method's ``methods.<name>`` entry (None: the entry is used as written)
    config_type: ClassVar[type | None] = None
    # whether ``search`` runs under torchrun with several processes (the others are refused there)
    distributed: ClassVar[bool] = False

    def search(self, ctx: Context[C]) -> SearchResult:
        raise NotImplementedError

    def cheapest(self, family: str, variant: str, config: C) -> ArchConfig | None:
        """The cheapest network this method can return for ``family`` and ``variant`` (None: not known). The
        pipeline refuses a limit below its cost before any work, with one message for every method."""
        return None

    def work(self, family: str, variant: str, config: C, profile: Profile, fraction: float) -> list[Work] | None:
        """What the search costs beyond the pipeline's retraining (which the estimate adds), for the cost a
        submission prints first; ``fraction`` is the cell's budget over the full network's MACs. None: not
        declared (the estimate says so and counts the retraining only)."""
        return None

    def cheapest_for(self, family: str, variant: str, methods: dict[str, Any]) -> ArchConfig | None:
        """``cheapest`` under a profile's ``methods`` mapping (this method's settings for the family). A method
        that draws from another method's settings (the random control, from the proposed space) overrides it, as
        it overrides ``settings``."""
        return self.cheapest(family, variant, self.config(methods, family))

    def config(self, methods: dict[str, Any], family: str | None = None) -> C:
        """This method's typed settings from a profile's ``methods`` mapping (defaults filled in), with the
        entries of its ``by_family.<family>`` mapping merged over them (nested mappings key by key) when
        ``family`` is given: a profile can scale a shared method differently for ResNet-50 than for the
        MobileNets without changing the MobileNet cells."""
        written, where = methods.get(self.name), f"methods.{self.name}"
        entry = entry_for_family(written, where, family)
        if self.config_type is None:
            return entry
        if family and isinstance(written, dict) and (written.get("by_family") or {}).get(family):
            where += f" (with by_family.{family})"  # an error may come from the family's changes
        return from_mapping(self.config_type, entry or {}, where)

    def settings(self, methods: dict[str, Any], family: str | None = None) -> Any:
        """This method's resolved settings for ``family`` as plain data: what a cell's cache key holds, so a
        changed default in code changes the key too."""
        return to_mapping(self.config(methods, family))

    def retrain_recipe(self, profile: Profile, family: str) -> TrainConfig:
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


def search_key(method: str, variant: str, family: str, constraint: Constraint, settings: Any, profile: Profile,
               seed: int, data: PreparedData, latency_device: dict[str, Any] | None = None,
               target: Target = HEADER) -> str:
    """The key of a search: the method and every input its result depends on: the cell (variant, family,
    constraint), the method's resolved settings, the family's recipe (what a reference network is trained
    with, and the paper's method's schedule), how images are decoded, the data's identity, the seed, and for a
    latency constraint the device and its measurement settings (``repro.cost.latency.device_key``), and an
    operating point other than the header (a header's key is the one it had before targets existed)."""
    extra = {} if latency_device is None else {"latency": latency_device}
    if not target.is_header:
        extra["target"] = target.key()
    return input_key(kind="search", method=method, variant=variant, family=family, constraint=constraint.to_dict(),
                     config=settings, recipe=to_mapping(profile.train_for(family)), decode=profile.data.decode,
                     data=data.identity(), seed=seed, **extra)


__all__ = ["Artifact", "Context", "Method", "SearchResult", "SearchStore", "Shared", "TrainedNetwork", "Work",
           "entry_for_family", "reference_work", "search_key"]
