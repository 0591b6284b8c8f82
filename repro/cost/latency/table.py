"""The per-device table of layer latencies (``LatencyTable``): prediction, lazy filling, saving; opening a
device's table (``open_table``) and checking it against whole networks (``predictor_error``; the architectures
to fill and check it with come from ``repro.space``). See ``repro.cost.latency``."""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repro.arch import ArchConfig
from repro.cost.latency.layers import (
    key_text,
    layer_class,
    layer_keys,
    layer_work,
    measure_chain,
    measure_layer,
    parse_key,
)
from repro.cost.latency.measure import measure_arch
from repro.cost.latency.settings import (
    LatencyConfig,
    LatencySettings,
    LayerKey,
    Measurement,
    NotRunHere,
    device_available,
    device_id,
    environment,
)


@dataclass
class LatencyTable:
    """Per-layer latencies (ms) of one device and settings; ``predict(arch)`` is the sum over
    ``layer_keys(arch)``. Missing entries are measured on the spot when ``measure_missing`` (this must run on
    the device the table describes) and kept. A table with a ``path`` saves itself at most every
    ``autosave_seconds`` while it fills (so an interrupted search resumes with the entries it had measured);
    ``save`` writes atomically, adding entries that another process saved to the same file meanwhile."""

    settings: LatencySettings
    entries: dict[LayerKey, float] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    measure_missing: bool = True
    build_seconds: float = 0.0  # time spent measuring entries, over the table's life
    path: Path | None = None
    autosave_seconds: float = 30.0
    _cache: dict[ArchConfig, tuple[LayerKey, ...]] = field(default_factory=dict, repr=False)
    _saved_at: float = field(default=0.0, repr=False)
    _rate_cache: dict[tuple, float] = field(default_factory=dict, repr=False)
    _rates_at: int = field(default=-1, repr=False)

    def keys(self, arch: ArchConfig) -> tuple[LayerKey, ...]:
        found = self._cache.get(arch)
        if found is None:
            found = layer_keys(arch)
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[arch] = found
        return found

    def predict(self, arch: ArchConfig) -> float:
        """Predicted latency (ms) of ``arch``: exactly the sum of its layers' entries."""
        keys = self.keys(arch)
        try:
            return math.fsum(self.entries[k] for k in keys)
        except KeyError:
            self.fill(keys)
            return math.fsum(self.entries[k] for k in keys)

    def estimate(self, arch: ArchConfig) -> float:
        """``predict`` without measuring: an entry the table lacks is estimated as its layer's work
        (``layer_work``) times the median ms per unit of work of the table's layers of the same kind
        (``layer_class``); exactly ``predict`` when nothing is missing. The projection of a latency-constrained
        search places its bisection probes with it and checks what it returns with ``predict`` (which
        measures), so a projection measures a few architectures, not one per probe. Measures when the table
        has no layer of a missing layer's kind yet."""
        keys = self.keys(arch)
        total = []
        for k in keys:
            value = self.entries.get(k)
            if value is None:
                rate = self._rates().get(layer_class(k))
                if rate is None:
                    return self.predict(arch)
                value = rate * layer_work(k)
            total.append(value)
        return math.fsum(total)

    def _rates(self) -> dict[tuple, float]:
        if self._rates_at != len(self.entries):
            per: dict[tuple, list[float]] = {}
            for k, v in self.entries.items():
                per.setdefault(layer_class(k), []).append(v / layer_work(k))
            self._rate_cache = {c: float(statistics.median(r)) for c, r in per.items()}
            self._rates_at = len(self.entries)
        return self._rate_cache

    def missing(self, keys: Iterable[LayerKey]) -> list[LayerKey]:
        return sorted({k for k in keys if k not in self.entries}, key=key_text)

    def fill(self, keys: Sequence[LayerKey], progress: bool = False) -> int:
        """Measure the entries of ``keys`` (one network's layers in the order it runs them: ``self.keys(arch)``)
        not in the table; returns how many were measured. Timed in chain, the network's layers up to its last
        missing one run (``measure_chain``); entries already in the table are kept as they are (a run's
        predictions do not change under it). Under torch.distributed every rank must call it with the same
        keys (rank 0 measures, the others receive)."""
        todo = self.missing(keys)
        if not todo:
            return 0
        if not self.measure_missing:
            raise KeyError(f"the latency table of {device_id(self.settings)} lacks {len(todo)} layers "
                           f"(first {key_text(todo[0])}) and measure_missing is off: build them with "
                           f"`python -m repro latency-table --device {self.settings.device}` on that device")
        start = time.perf_counter()
        keys = list(keys)
        if self.settings.layer_timing == "chain":
            last = max(i for i, k in enumerate(keys) if k not in self.entries)
            measured = _measure_shared(keys[:last + 1], self.settings, self.environment, progress)
            measured = {k: v for k, v in measured.items() if k not in self.entries}
        else:
            measured = _measure_shared(todo, self.settings, self.environment, progress)
        self.entries.update(measured)
        self.build_seconds += time.perf_counter() - start
        if self.path is not None and time.perf_counter() - self._saved_at > self.autosave_seconds:
            self.save()
        return len(todo)

    def fill_archs(self, archs: Sequence[ArchConfig], progress: bool = False) -> int:
        """``fill`` each architecture's layers in turn (a progress bar over the architectures when asked);
        returns how many entries were measured."""
        it: Iterable[ArchConfig] = archs
        if progress:
            from tqdm import tqdm

            it = tqdm(archs, desc=f"latency table ({self.settings.device})", unit="network")
        return sum(self.fill(self.keys(a)) for a in it)

    def to_dict(self) -> dict[str, Any]:
        return {"device_id": device_id(self.settings), "settings": self.settings.resolved(),
                "environment": self.environment, "build_seconds": round(self.build_seconds, 3),
                "entries": dict(sorted((key_text(k), v) for k, v in self.entries.items()))}

    def save(self, path: Path | None = None) -> None:
        """Write the table (rank 0 only under torch.distributed) to ``path`` or its own path. Entries the
        file holds and this table lacks (another process's) are written too, not taken into this table: a
        run's predictions do not change under it."""
        from repro.atomic import atomic_write_text
        from repro.distributed import rank

        path = Path(path or self.path)
        if rank() != 0:
            return
        data = self.to_dict()
        if path.is_file():
            try:
                other = json.loads(path.read_text())
            except (OSError, ValueError):
                other = {}
            if other.get("settings") == data["settings"]:
                data["entries"] = dict(sorted({**other.get("entries", {}), **data["entries"]}.items()))
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(data, indent=1) + "\n")
        self._saved_at = time.perf_counter()

    @classmethod
    def load(cls, path: Path, settings: LatencySettings, measure_missing: bool = True) -> LatencyTable:
        """The saved table at ``path``; refuses one measured with other settings. Under torch.distributed
        rank 0 reads the file and the others receive its content, so every rank starts from the same table."""
        from repro.distributed import broadcast_object, rank

        data = broadcast_object(json.loads(Path(path).read_text()) if rank() == 0 else None)
        if data["settings"] != settings.resolved():
            raise ValueError(f"latency table {path} was measured with {data['settings']}, not "
                             f"{settings.resolved()}: use its settings or another file")
        return cls(settings, {parse_key(k): float(v) for k, v in data["entries"].items()}, data.get("environment", {}),
                   measure_missing, float(data.get("build_seconds", 0.0)), Path(path))

    @classmethod
    def open(cls, settings: LatencySettings, root: Path, measure_missing: bool = True) -> LatencyTable:
        """The table of this device and settings under ``root`` (``<root>/<device id>.json``), or a new,
        empty one that will be saved there."""
        from repro.distributed import broadcast_object, rank

        path = Path(root) / f"{device_id(settings)}.json"
        if broadcast_object(path.exists() if rank() == 0 else None):
            return cls.load(path, settings, measure_missing)
        return cls(settings, environment=environment(settings), measure_missing=measure_missing, path=path)


def _measure_shared(keys: list[LayerKey], settings: LatencySettings, env: dict[str, Any],
                    progress: bool) -> dict[LayerKey, float]:
    """Measure ``keys`` (a chain, or layers alone, per ``settings.layer_timing``); under torch.distributed
    rank 0 measures and broadcasts (every rank must call)."""
    from repro.distributed import broadcast_object, rank

    return broadcast_object(_measure_keys(keys, settings, env, progress) if rank() == 0 else None)


def _measure_keys(keys: list[LayerKey], settings: LatencySettings, env: dict[str, Any],
                  progress: bool) -> dict[LayerKey, float]:
    if settings.layer_timing == "chain":
        return {k: float(statistics.median(v)) for k, v in measure_chain(keys, settings).items()}
    it: Iterable[LayerKey] = keys
    if progress:
        from tqdm import tqdm

        it = tqdm(keys, desc=f"latency table ({settings.device})", unit="layer")
    env = env or environment(settings)
    return {k: measure_layer(k, settings, env).median_ms for k in it}


def timed_fill(table: LatencyTable, archs: Sequence[ArchConfig], progress: bool = False) -> tuple[int, float]:
    """``table.fill_archs(archs)`` and its wall time: (entries measured, seconds)."""
    t0 = time.perf_counter()
    n = table.fill_archs(archs, progress)
    return n, time.perf_counter() - t0


# --- checking a table ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PredictorCheck:
    arch: ArchConfig
    predicted_ms: float
    measured: Measurement

    @property
    def relative_error(self) -> float:
        return (self.predicted_ms - self.measured.median_ms) / self.measured.median_ms


def predictor_error(table: LatencyTable, archs: Sequence[ArchConfig],
                    allow_unstable: bool = False) -> list[PredictorCheck]:
    """Predicted against measured latency of each architecture (missing entries measured first)."""
    checks = []
    for arch in archs:
        predicted = table.predict(arch)
        checks.append(PredictorCheck(arch, predicted, measure_arch(arch, table.settings, allow_unstable)))
    return checks


def open_table(config: LatencyConfig, kind: str, measure_missing: bool = True) -> LatencyTable:
    """The device's table for a latency constraint ``kind`` (NotRunHere without the device)."""
    settings = config.settings_for(kind)
    if not device_available(settings.device):
        raise NotRunHere(f"{kind} needs a CUDA GPU: not run here")
    return LatencyTable.open(settings, Path(config.tables), measure_missing)
