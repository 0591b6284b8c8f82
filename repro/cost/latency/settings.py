"""How a latency is measured (``LatencySettings``, a profile's ``LatencyConfig``), what the number depends
on (``environment``), and the name of a device and settings (``device_id``, ``device_key``)."""

from __future__ import annotations

import json
import platform
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from repro.constraint import LATENCY_DEVICE

IMAGENET_CLASSES = 1000
DEFAULT_BATCH = {"cpu": 1, "cuda": 256}

# a layer: ("conv", cin, cout, kernel, stride, groups, side_in, act, add) | ("maxpool", c, side_in)
# | ("head", c, side_in, classes); act is "relu", "relu6" or "none"; add is 1 when a residual is added
LayerKey = tuple



class UnstableMeasurement(RuntimeError):
    """The samples of a measurement spread more than the settings allow."""


@dataclass(frozen=True)
class LatencySettings:
    """How a latency is measured. ``batch_size`` None means 1 on CPU and 256 on CUDA (the paper does not
    state its batch size). Measured on an H200 (docs/latency_evidence/): at batch 1 every MobileNet V1 from
    0.25x to 1.0x takes 1.4-1.5 ms, the time of its kernel launches, so a latency limit would not constrain
    widths; at 64, 1.49 / 1.52 / 2.23 / 2.75 ms at 0.25 / 0.5 / 0.75 / 1.0x, still launch-bound below 0.5x,
    and the table's sum of single layers was off by 21% (median over 20 random networks: a layer alone pays
    launch costs that a whole network overlaps); at 256, 2.84 / 5.06 / 7.43 / 9.61 ms and a median error of
    6.4% (layers timed alone; timed in chain on an H100 at 256: 1.7%)."""

    device: str = "cpu"  # cpu | cuda
    batch_size: int | None = None
    threads: int = 1  # CPU intra-op threads (ignored on CUDA)
    warmup: int = 10
    repeats: int = 30
    dtype: str = "float32"  # float32 | float16 | bfloat16
    channels_last: bool | None = None  # None: True on CUDA, False on CPU
    max_cv: float = 0.15  # refuse a measurement whose coefficient of variation is above this
    # rounds of a table fill (``measure_chain``: each round runs a network's layers once, timing each; or, with
    # layer_timing "alone", calls of one layer): fewer than a network's repeats on a CPU, where a search meets
    # thousands of new layer shapes (a 2-epoch MobileNet V2 search on the test data met 5,705). In chain on
    # this suite's CPU, 3 + 15 gave a median error of 4.2-4.7% (max 11-44%) on 20 random MobileNet V2 where
    # 2 + 5 gave 4.5-7.7% (max 44-84%), two or three runs each (docs/latency.md). CudaLatencySettings times
    # GPU layers like networks (10 + 30: see there)
    layer_warmup: int = 3
    layer_repeats: int = 15
    # how a table entry is timed: "chain" (each layer inside its network's sequence of layers: weights, inputs
    # and caches as in a forward pass) or "alone" (the layer called by itself, again and again). Measured on
    # this suite's CPU (AMD EPYC, batch 1, 1 thread; docs/latency.md): median |error| on 20 random MobileNet V2
    # 13-16% alone (the sum too low), 4-5% in chain; a layer called alone keeps its weights in the nearest
    # caches
    layer_timing: str = "chain"

    def __post_init__(self) -> None:
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"latency device {self.device!r} must be 'cpu' or 'cuda'")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"latency batch_size={self.batch_size} must be at least 1")
        if self.threads < 1 or self.warmup < 0 or self.repeats < 3:
            raise ValueError(f"latency threads={self.threads} (>= 1), warmup={self.warmup} (>= 0), repeats="
                             f"{self.repeats} (>= 3) out of range")
        if self.dtype not in ("float32", "float16", "bfloat16"):
            raise ValueError(f"latency dtype {self.dtype!r} must be float32, float16 or bfloat16")
        if self.max_cv <= 0:
            raise ValueError(f"latency max_cv={self.max_cv} must be positive")
        if self.layer_timing not in ("chain", "alone"):
            raise ValueError(f"latency layer_timing {self.layer_timing!r} must be 'chain' or 'alone'")
        if self.layer_warmup < 0 or self.layer_repeats < 1:
            raise ValueError(f"latency layer_warmup={self.layer_warmup} (>= 0) and layer_repeats="
                             f"{self.layer_repeats} (>= 1) out of range")

    @property
    def batch(self) -> int:
        return self.batch_size if self.batch_size is not None else DEFAULT_BATCH[self.device]

    @property
    def memory_format_channels_last(self) -> bool:
        return self.channels_last if self.channels_last is not None else self.device == "cuda"

    def resolved(self) -> dict[str, Any]:
        """The settings with the device-dependent defaults filled in (what a record stores)."""
        out = asdict(self)
        out.update(batch_size=self.batch, channels_last=self.memory_format_channels_last)
        if self.device == "cuda":
            out.pop("threads")
        return out


@dataclass(frozen=True)
class Measurement:
    median_ms: float
    cv: float
    samples_ms: tuple[float, ...]
    settings: dict[str, Any]
    environment: dict[str, Any]


def environment(settings: LatencySettings) -> dict[str, Any]:
    """What the number depends on beyond the settings: device name and library versions."""
    import torch

    env: dict[str, Any] = {"torch": torch.__version__, "python": platform.python_version(),
                           "machine": platform.machine()}
    if settings.device == "cuda":
        env.update(device_name=torch.cuda.get_device_name(), cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version())
    else:
        from repro.hardware import cpu_name

        env.update(device_name=cpu_name(), threads=settings.threads, cpu_count=_cpu_count())
    return env


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def device_id(settings: LatencySettings) -> str:
    """A file-name-safe name of the device and the settings a table was measured with, ending in a hash of
    all of them (a table is valid for exactly these): ``cpu-amd-epyc-b1-float32-t1-3f2a9c1d``,
    ``cuda-nvidia-h200-b256-float32-cl-0b7e55aa``."""
    import hashlib

    name = environment(settings)["device_name"]
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60]
    layout = "cl" if settings.memory_format_channels_last else "nchw"
    tail = f"t{settings.threads}" if settings.device == "cpu" else layout
    digest = hashlib.sha256(json.dumps(settings.resolved(), sort_keys=True).encode()).hexdigest()[:8]
    return f"{settings.device}-{slug}-b{settings.batch}-{settings.dtype}-{tail}-{digest}"



@dataclass(frozen=True)
class CudaLatencySettings(LatencySettings):
    """``LatencySettings`` whose device defaults to CUDA (a profile's ``latency.cuda`` section). A GPU table
    entry gets the whole network's warm-up and repetitions: measured on an H200 (docs/latency_evidence/,
    layers timed alone), 2 + 5 calls per layer gave a median error of 13.3% on 20 random MobileNet V1 (mean
    +17.1%) where 10 + 30 gave 6.4% (+7.0%), and were not faster (59 s against 47 s for 402 layers:
    cuDNN's autotuning of each new shape dominates)."""

    device: str = "cuda"
    layer_warmup: int = 10
    layer_repeats: int = 30


def default_settings(device: str, **changes: Any) -> LatencySettings:
    """The default settings of ``device`` ("cpu" or "cuda"), with ``changes``."""
    return (CudaLatencySettings if device == "cuda" else LatencySettings)(device=device, **changes)


@dataclass(frozen=True)
class LatencyConfig:
    """A profile's ``latency`` section: how each device's latency is measured, and where tables live."""

    cpu: LatencySettings = field(default_factory=LatencySettings)
    cuda: CudaLatencySettings = field(default_factory=CudaLatencySettings)
    tables: str = "results/latency"  # per-device tables (<device id>.json), shared by every profile

    def __post_init__(self) -> None:
        if self.cpu.device != "cpu" or self.cuda.device != "cuda":
            raise ValueError(f"latency.cpu.device must be 'cpu' and latency.cuda.device 'cuda' (got "
                             f"{self.cpu.device!r}, {self.cuda.device!r})")

    def settings_for(self, kind: str) -> LatencySettings:
        if kind not in LATENCY_DEVICE:
            raise ValueError(f"{kind!r} is not a latency constraint kind; allowed: {', '.join(LATENCY_DEVICE)}")
        return self.cpu if LATENCY_DEVICE[kind] == "cpu" else self.cuda


class NotRunHere(RuntimeError):
    """The cell needs a device this machine lacks (GPU latency without CUDA)."""


def device_available(device: str) -> bool:
    if device == "cpu":
        return True
    import torch

    return torch.cuda.is_available()


def device_key(settings: LatencySettings) -> dict[str, Any]:
    """What a latency cell's cache key holds of its device: the settings and the device's name (None where
    the device is missing; such a cell does not run here)."""
    name = environment(settings)["device_name"] if device_available(settings.device) else None
    return {**settings.resolved(), "device_name": name}
