"""Profiles: one YAML file per scale of the same protocol (``smoke``: the embedded data set on a laptop CPU,
a functional check; ``proxy``: a larger embedded set and a longer recipe, for ranking (docs/proxy_protocol.md);
``imagenet``: the paper's protocol). ``load_profile(name_or_path, overrides)`` types it; unknown keys and
wrong types are errors; ``extends: NAME`` starts from another profile; ``--train.epochs=3``-style overrides
are applied before typing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from repro.config import ConfigError, apply_overrides, from_mapping, require_families
from repro.cost.latency import LatencyConfig

PROFILE_DIR = Path(__file__).parent


@dataclass(frozen=True)
class TinyConfig:
    """Which embedded set ``data.source: tiny`` makes (data_prep/tiny.py): its version and its size."""

    variant: str = "tiny"  # data_prep.tiny.VARIANTS
    train_per_class: int = 400  # training images per class (the paper's sub-eval split is drawn from them)
    val_per_class: int = 150  # validation images per class

    def __post_init__(self) -> None:
        # the variant's name is checked against data_prep.tiny.VARIANTS by repro.pipeline.prepare_data, before
        # anything is made: the profiles (core) do not import the data writers
        for name in ("train_per_class", "val_per_class"):
            if getattr(self, name) < 1:
                raise ConfigError(f"data.tiny.{name}={getattr(self, name)} must be at least 1")


@dataclass(frozen=True)
class DataConfig:
    path: str  # the prepared folder: manifest.json, train.beton, val.beton, sub_*.npy
    # how to make it when it is missing: "tiny" (the embedded set) or an ImageFolder root to prepare
    source: str | None = None
    devkit: str | None = None
    # the sub-eval split: used when this profile makes its data set (unset: the paper's 50 per class, seed 0);
    # set, a prepared data set split otherwise is refused (a data set keeps the split it was prepared with)
    per_class: int | None = None
    split_seed: int | None = None
    workers: int = 0  # loader workers per process; 0 = all cores of the process
    # "direct": the loader decodes at each network's resolution (one compiled FFCV pipeline per resolution);
    # "base": it decodes at the data set's base resolution (larger only for networks above it) and batches
    # are resized on the device, so the cells of a table share one pipeline (about 7 s of numba compile
    # saved per extra resolution on 2 cores)
    decode: Literal["direct", "base"] = "direct"
    tiny: TinyConfig = field(default_factory=TinyConfig)  # with source "tiny": which version, how many images

    def __post_init__(self) -> None:
        if self.per_class is not None and self.per_class < 1:
            raise ConfigError(f"data.per_class={self.per_class} must be at least 1")
        if self.split_seed is not None and self.split_seed < 0:
            raise ConfigError(f"data.split_seed={self.split_seed} must be 0 or more")
        if self.decode not in ("direct", "base"):
            raise ConfigError(f"data.decode={self.decode!r} must be 'direct' or 'base'")
        if self.source != "tiny" and self.tiny != TinyConfig():
            raise ConfigError(f"data.tiny says how the embedded set is made, but data.source={self.source!r}: set "
                              f"data.source: tiny, or drop data.tiny")


@dataclass(frozen=True)
class TrainConfig:
    """A from-scratch training recipe (SGD with momentum, warm-up then decay)."""

    epochs: int
    batch_size: int  # per process
    lr: float  # at lr_reference_batch images per step; scaled linearly with the global batch
    lr_reference_batch: int = 256
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 4e-5  # not applied to BatchNorm parameters and biases
    # whether depthwise convolution weights are decayed too (MetaPruning's MobileNet V1/V2 scripts: not)
    decay_depthwise: bool = True
    label_smoothing: float = 0.1
    warmup_epochs: float = 0.0
    schedule: Literal["cosine", "linear", "step"] = "cosine"
    step_milestones: tuple[float, ...] = (0.25, 0.5, 0.75)  # "step": fractions of the run, lr x step_gamma
    step_gamma: float = 0.1
    crop_scale: tuple[float, float] = (0.08, 1.0)
    eval_batch_size: int = 256
    channels_last: Literal["auto", "on", "off"] = "auto"  # auto: on for CUDA, and on CPU (measured faster)
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"  # auto: fp16 on CUDA, off (fp32) on CPU
    checkpoint_every_steps: int = 0  # 0: only at the end of every epoch
    # exponential moving average of the weights, updated after every step, is what gets evaluated and kept
    # (0: off, the last weights), with its batch-norm statistics re-estimated on up to 100 training batches
    # (repro.train.trainer.EMA_BN_BATCHES). Its horizon is about 1 / (1 - decay) steps
    ema_decay: float = 0.0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "lr_reference_batch", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name}={getattr(self, name)} must be at least 1")
        if self.lr <= 0:
            raise ConfigError(f"train.lr={self.lr} must be positive")
        if not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ConfigError(f"train.crop_scale={list(self.crop_scale)} must satisfy 0 < low <= high <= 1")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"train.ema_decay={self.ema_decay} must be within [0, 1) (0: no weight averaging)")
        if self.warmup_epochs < 0 or self.warmup_epochs > self.epochs:
            raise ConfigError(f"train.warmup_epochs={self.warmup_epochs} must be within 0..epochs")

    def scaled_lr(self, global_batch: int) -> float:
        return self.lr * global_batch / self.lr_reference_batch


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    data: DataConfig
    train: TrainConfig
    seeds: tuple[int, ...] = (0,)
    # per-family changes to ``train`` (e.g. ResNet-50's recipe differs from the MobileNets')
    train_by_family: dict[str, Any] = field(default_factory=dict)
    # per-method settings (search budgets, populations, ...), typed by each method when it runs
    methods: dict[str, Any] = field(default_factory=dict)
    sources: tuple[str, ...] = ()  # where the recipe's numbers come from
    # how latency is measured per device and where the per-device tables live (repro.cost.latency)
    latency: LatencyConfig = field(default_factory=LatencyConfig)

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ConfigError("seeds=[] runs no cell: give at least one seed, e.g. seeds: [0]")
        repeated = sorted({s for s in self.seeds if self.seeds.count(s) > 1})
        if repeated:
            raise ConfigError(f"seeds={list(self.seeds)} repeats {repeated}: each seed is its own run of every cell")
        if min(self.seeds) < 0:
            raise ConfigError(f"seeds={list(self.seeds)}: seeds are non-negative integers")
        require_families(self.train_by_family, "train_by_family")
        for family in self.train_by_family:
            self.train_for(family)  # type-check the merged recipe now, not when a cell runs

    def train_for(self, family: str, changes: dict[str, Any] | None = None, where: str = "") -> TrainConfig:
        """``train`` with this family's changes applied, then ``changes`` (a method's fine-tuning recipe,
        named ``where`` in errors)."""
        from dataclasses import asdict

        recipe = self.train
        family_changes = self.train_by_family.get(family)
        if family_changes:
            recipe = from_mapping(TrainConfig, {**asdict(recipe), **family_changes}, f"train_by_family.{family}")
        if changes:
            recipe = from_mapping(TrainConfig, {**asdict(recipe), **changes}, where or "recipe changes")
        return recipe


def profile_path(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        if not p.is_file():
            raise ConfigError(f"profile file {p} does not exist")
        return p
    builtin = PROFILE_DIR / f"{name_or_path}.yaml"
    if not builtin.is_file():
        known = ", ".join(sorted(q.stem for q in PROFILE_DIR.glob("*.yaml")))
        raise ConfigError(f"profile {name_or_path!r} is not known; built in: {known}, or give a .yaml path")
    return builtin


def load_profile(name_or_path: str | Path, overrides: list[str] | None = None) -> Profile:
    path = profile_path(name_or_path)
    data = apply_overrides(_read(path, ()), list(overrides or []))
    try:
        return from_mapping(Profile, data)
    except ConfigError as e:
        raise ConfigError(f"profile {path.name}: {e}") from None


def _read(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    """A profile file's mapping, with ``extends: NAME`` resolved: the named profile (a built-in name, or a
    .yaml path relative to this file) is read first and this file's keys are merged into it, mappings key by
    key and anything else (lists, numbers) replaced whole."""
    if path.resolve() in chain:
        cycle = " -> ".join(p.name for p in (*chain, path.resolve()))
        raise ConfigError(f"profile {path.name} extends itself ({cycle})")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must be a mapping of profile keys (name, data, train, ...), not a "
                          f"{type(data).__name__}")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"profile {path.name}: extends={parent!r} must name one profile (e.g. extends: smoke)")
    relative = path.parent / parent
    base = profile_path(relative if relative.suffix in (".yaml", ".yml") else parent)
    return _merge(_read(base, (*chain, path.resolve())), data)


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged
