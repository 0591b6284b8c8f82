"""Latency: measured the same way every time, and predicted from a per-device table of layer latencies.

**Measurement** (``measure_arch``, ``measure_module``). A network in ``eval`` mode under
``torch.inference_mode``, a fixed input of ``batch_size`` images at the architecture's resolution (ImageNet
geometry: 1000 classes), ``warmup`` untimed calls, then ``repeats`` timed calls:

* CUDA: ``cudnn.benchmark`` on, one pair of CUDA events around each call, one synchronize at the end;
  ``channels_last`` and ``dtype`` as set (both recorded).
* CPU: ``torch.set_num_threads(threads)`` for the duration (restored afterwards), ``time.perf_counter``
  around each call, batch 1 by default.

A ``Measurement`` holds the median in milliseconds, the coefficient of variation (standard deviation /
mean) of the samples and everything that affects the number: device name, batch size, dtype, memory format,
threads, warm-up, repetitions, torch / CUDA / cuDNN versions. A measurement whose CV is above ``max_cv`` is
refused (``UnstableMeasurement``) unless ``allow_unstable``: a busy machine gives numbers that do not repeat.

**Prediction** (``LatencyTable``): an architecture is a sequence of *layers*: a convolution with its batch
norm, an optional residual addition and its activation (``conv``), the stem's max-pool (``maxpool``), the
pooled classifier (``head``), each keyed by every shape that changes its cost (channels in and out, kernel,
stride, groups, input side, activation, addition). ``layer_keys(arch)`` lists them from the ArchConfig alone,
in the order the network runs them (checked against the built network in the tests). The predicted latency is
the sum of the layers' table entries (the lookup-table predictor of NetAdapt and once-for-all). An entry is
the median time of its layer *timed in chain* (``measure_chain``): the network's layers run one after
another, each timed where it runs, so it meets its weights, input and caches as in a forward pass (and, on a
GPU, overlaps its launch with the previous layer's work). Timed alone (``layer_timing: alone``), a layer
called again and again keeps its weights in the nearest caches and pays launch costs a network hides: on
this suite's CPU the sum then missed whole networks by 13-16% (median over 20 random MobileNet V2), in chain
by 4-5%; on an H100 at batch 256, 7.3% against 1.7% (MobileNet V1; docs/latency.md).

The shapes a space can produce are too many to measure up front (MobileNet V1's last pointwise layer alone
has 128 x 128 channel pairs at each of 17 resolutions), so the table is filled lazily: a missing entry is
measured when an architecture first needs it and kept. ``python -m repro latency-table --device cpu|cuda``
pre-fills the layers of the uniform networks over a grid of widths and resolutions plus random architectures
of the space, and saves the table (with its build time) under ``results/latency/<device id>.json``. Under
``torch.distributed`` rank 0 measures missing entries and broadcasts them, so every rank predicts alike.
"""

from __future__ import annotations

import contextlib
import json
import math
import platform
import re
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from repro.arch import ArchConfig

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
        from repro.results import cpu_name

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


# --- measurement -------------------------------------------------------------------------------------------


def _dtype(name: str):
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def time_calls(fn: Callable[[], Any], settings: LatencySettings, warmup: int | None = None,
               repeats: int | None = None) -> list[float]:
    """``repeats`` timings (ms) of ``fn()`` after ``warmup`` calls (default: the settings'), per the
    settings' device rules."""
    import torch

    warmup = settings.warmup if warmup is None else warmup
    repeats = settings.repeats if repeats is None else repeats

    with torch.inference_mode():
        if settings.device == "cuda":
            for _ in range(warmup):
                fn()
            torch.cuda.synchronize()
            events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                      for _ in range(repeats)]
            for start, end in events:
                start.record()
                fn()
                end.record()
            torch.cuda.synchronize()
            return [start.elapsed_time(end) for start, end in events]
        with _cpu_threads(settings):
            for _ in range(warmup):
                fn()
            samples = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn()
                samples.append((time.perf_counter() - t0) * 1e3)
            return samples


@contextlib.contextmanager
def _cpu_threads(settings: LatencySettings):
    """``torch.set_num_threads(settings.threads)`` while measuring on a CPU, as it was afterwards (nothing on
    CUDA)."""
    import torch

    if settings.device == "cuda":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def summarize(samples: Sequence[float], settings: LatencySettings, what: str,
              allow_unstable: bool = False, env: dict[str, Any] | None = None) -> Measurement:
    """The median and CV of ``samples``; refuses a spread above ``settings.max_cv`` unless allowed."""
    mean = statistics.fmean(samples)
    cv = statistics.pstdev(samples) / mean if mean > 0 else math.inf
    if cv > settings.max_cv and not allow_unstable:
        raise UnstableMeasurement(
            f"latency of {what} spread too much: coefficient of variation {cv:.3f} > max_cv {settings.max_cv} "
            f"over {len(samples)} runs (median {statistics.median(samples):.3f} ms). Measure on an idle machine, "
            f"raise repeats, or raise max_cv (profile: latency.{settings.device}.max_cv) to keep it anyway")
    return Measurement(float(statistics.median(samples)), float(cv), tuple(float(s) for s in samples),
                       settings.resolved(), env if env is not None else environment(settings))


def _prepare(module, inputs: Sequence[Any], settings: LatencySettings):
    import torch

    device = torch.device(settings.device)
    fmt = torch.channels_last if settings.memory_format_channels_last else torch.contiguous_format
    module = module.eval().to(device=device, dtype=_dtype(settings.dtype), memory_format=fmt)
    inputs = [x.to(device=device, dtype=_dtype(settings.dtype)).contiguous(memory_format=fmt) if x.dim() == 4
              else x.to(device=device, dtype=_dtype(settings.dtype)) for x in inputs]
    return module, inputs


def measure_module(module, inputs: Sequence[Any], settings: LatencySettings, what: str = "a module",
                   allow_unstable: bool = False, env: dict[str, Any] | None = None) -> Measurement:
    """The latency of ``module(*inputs)`` (inputs are moved to the device, dtype and memory format)."""
    module, inputs = _prepare(module, inputs, settings)
    with _cudnn_benchmark(settings):
        samples = time_calls(lambda: module(*inputs), settings)
    return summarize(samples, settings, what, allow_unstable, env)


@contextlib.contextmanager
def _cudnn_benchmark(settings: LatencySettings):
    """``cudnn.benchmark`` on while measuring on CUDA, as it was afterwards (a search or a training running
    in the same process keeps its own setting)."""
    import torch

    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = before or settings.device == "cuda"
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


@contextlib.contextmanager
def _own_rng(settings: LatencySettings):
    """Seeded weights and inputs for a measurement without touching the caller's random streams (the lazy
    table fills inside a search, between its training steps)."""
    import torch

    devices = [torch.cuda.current_device()] if settings.device == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(0)
        yield


def measure_arch(arch: ArchConfig, settings: LatencySettings, allow_unstable: bool = False) -> Measurement:
    """The latency of the ImageNet network of ``arch`` (1000 classes) at its resolution."""
    import torch

    from repro.models import build_model

    with _own_rng(settings):
        model = build_model(arch.replace(num_classes=IMAGENET_CLASSES))
        x = torch.randn(settings.batch, 3, arch.resolution, arch.resolution)
        return measure_module(model, [x], settings, _describe(arch), allow_unstable)


def _describe(arch: ArchConfig) -> str:
    from repro.cost.flops import count_macs, format_macs

    return f"{arch.family} at {arch.resolution} px ({format_macs(count_macs(arch))} MACs)"


# --- the layers of an architecture ----------------------------------------------------------------------


def _down(side: int, stride: int) -> int:
    return -(-side // stride)


def layer_keys(arch: ArchConfig, num_classes: int = IMAGENET_CLASSES) -> tuple[LayerKey, ...]:
    """The layers of the ImageNet network of ``arch`` in the order it runs them (see the module docstring)."""
    return _LAYERS[arch.family](arch, arch.resolution, num_classes)


def _conv(cin: int, cout: int, k: int, s: int, groups: int, side: int, act: str, add: bool = False) -> LayerKey:
    return ("conv", cin, cout, k, s, groups, side, act, int(add))


def _layers_mobilenet_v1(arch: ArchConfig, r: int, classes: int) -> tuple[LayerKey, ...]:
    w = arch.widths
    out = [_conv(3, w[0], 3, 2, 1, r, "relu6")]
    side, cin = _down(r, 2), w[0]
    for blk in arch.active_blocks():
        cout = w[blk.slot("pw")]
        out.append(_conv(cin, cin, 3, blk.stride, cin, side, "relu6"))
        side = _down(side, blk.stride)
        out.append(_conv(cin, cout, 1, 1, 1, side, "relu6"))
        cin = cout
    return (*out, ("head", cin, side, classes))


def _layers_mobilenet_v2(arch: ArchConfig, r: int, classes: int) -> tuple[LayerKey, ...]:
    w = arch.widths
    out = [_conv(3, w[0], 3, 2, 1, r, "relu6")]
    side, cin = _down(r, 2), w[0]
    for blk in arch.active_blocks():
        e = blk.slot("expand")
        hidden = cin if e is None else w[e]
        if e is not None:
            out.append(_conv(cin, hidden, 1, 1, 1, side, "relu6"))
        out.append(_conv(hidden, hidden, 3, blk.stride, hidden, side, "relu6"))
        side = _down(side, blk.stride)
        cout = w[blk.slot("project")]
        out.append(_conv(hidden, cout, 1, 1, 1, side, "none", add=blk.index > 0))
        cin = cout
    out.append(_conv(cin, w[-1], 1, 1, 1, side, "relu6"))
    return (*out, ("head", w[-1], side, classes))


def _layers_resnet50(arch: ArchConfig, r: int, classes: int) -> tuple[LayerKey, ...]:
    w = arch.widths
    out = [_conv(3, w[0], 7, 2, 1, r, "relu"), ("maxpool", w[0], _down(r, 2))]
    side, cin = _down(r, 4), w[0]
    for blk in arch.active_blocks():
        c1, c2, c3 = (w[blk.slot(role)] for role in ("conv1", "conv2", "conv3"))
        ds = blk.slot("downsample")
        if ds is not None:
            out.append(_conv(cin, w[ds], 1, blk.stride, 1, side, "none"))
        out.append(_conv(cin, c1, 1, 1, 1, side, "relu"))
        out.append(_conv(c1, c2, 3, blk.stride, 1, side, "relu"))
        side = _down(side, blk.stride)
        out.append(_conv(c2, c3, 1, 1, 1, side, "relu", add=True))
        cin = c3
    return (*out, ("head", cin, side, classes))


_LAYERS: dict[str, Callable[[ArchConfig, int, int], tuple[LayerKey, ...]]] = {
    "mobilenet_v1": _layers_mobilenet_v1,
    "mobilenet_v2": _layers_mobilenet_v2,
    "resnet50": _layers_resnet50,
}


def layer_class(key: LayerKey) -> tuple:
    """The kind of a layer for ``LatencyTable.estimate``: convolutions by kernel, stride and whether they are
    depthwise; the max-pool; the classifier."""
    if key[0] == "conv":
        _, cin, cout, k, s, groups, *_ = key
        return ("conv", k, s, groups > 1 and groups == cin == cout)
    return (key[0],)


def layer_work(key: LayerKey) -> float:
    """Multiply-accumulates of a layer (a max-pool: its comparisons; the classifier: its pooling and MACs),
    at least 1."""
    if key[0] == "conv":
        _, cin, cout, k, s, groups, side, *_ = key
        return max(1.0, cin / groups * cout * k * k * _down(side, s) ** 2)
    if key[0] == "maxpool":
        return max(1.0, 9.0 * key[1] * _down(key[2], 2) ** 2)
    _, c, side, classes = key
    return max(1.0, c * side * side + c * classes)


def key_text(key: LayerKey) -> str:
    return ":".join(str(x) for x in key)


def parse_key(text: str) -> LayerKey:
    parts = text.split(":")
    return tuple(p if not p.lstrip("-").isdigit() else int(p) for p in parts)


def layer_module(key: LayerKey):
    """A network of one layer and the inputs it runs on (batch 1; ``measure_layer`` scales the batch)."""
    import torch
    from torch import nn

    class Conv(nn.Module):
        def __init__(self, cin, cout, k, s, groups, act, add):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, k, s, (k - 1) // 2, groups=groups, bias=False)
            self.bn = nn.BatchNorm2d(cout)
            self.act = {"relu": nn.ReLU(inplace=True), "relu6": nn.ReLU6(inplace=True), "none": nn.Identity()}[act]
            self.add = bool(add)

        def forward(self, x, residual=None):
            y = self.bn(self.conv(x))
            return self.act(y + residual if self.add else y)

    class Head(nn.Module):
        def __init__(self, c, classes):
            super().__init__()
            self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(c, classes)

        def forward(self, x):
            return self.fc(torch.flatten(self.pool(x), 1))

    kind = key[0]
    if kind == "conv":
        _, cin, cout, k, s, groups, side, act, add = key
        inputs = [torch.randn(1, cin, side, side)]
        if add:
            inputs.append(torch.randn(1, cout, _down(side, s), _down(side, s)))
        return Conv(cin, cout, k, s, groups, act, add), inputs
    if kind == "maxpool":
        _, c, side = key
        return nn.MaxPool2d(3, 2, 1), [torch.randn(1, c, side, side)]
    if kind == "head":
        _, c, side, classes = key
        return Head(c, classes), [torch.randn(1, c, side, side)]
    raise ValueError(f"unknown layer kind {kind!r} in latency key {key!r}")


def measure_layer(key: LayerKey, settings: LatencySettings, env: dict[str, Any] | None = None) -> Measurement:
    """One layer timed alone (``layer_timing: alone``): ``layer_repeats`` timed calls after ``layer_warmup``.
    Single layers are short (microseconds on a GPU), so their spread is kept, not refused: the table's error
    is judged on whole networks (``predictor_error``)."""
    with _own_rng(settings):
        module, inputs = layer_module(key)
        inputs = [x.expand(settings.batch, *x.shape[1:]).clone() for x in inputs]
    module, inputs = _prepare(module, inputs, settings)
    with _cudnn_benchmark(settings):
        samples = time_calls(lambda: module(*inputs), settings, settings.layer_warmup, settings.layer_repeats)
    return summarize(samples, settings, key_text(key), allow_unstable=True, env=env)


def _shapes(key: LayerKey) -> tuple[tuple[int, int], tuple[int, int] | None, tuple[int, int] | None]:
    """(channels, side) of a layer's input, of its residual input (None without one) and of its output
    (None for the classifier)."""
    if key[0] == "conv":
        _, cin, cout, _k, s, _g, side, _act, add = key
        out = (cout, _down(side, s))
        return (cin, side), out if add else None, out
    if key[0] == "maxpool":
        return (key[1], key[2]), None, (key[1], _down(key[2], 2))
    return (key[1], key[2]), None, None


def measure_chain(keys: Sequence[LayerKey], settings: LatencySettings) -> dict[LayerKey, list[float]]:
    """Each layer of ``keys`` (one network's layers, in the order it runs them) timed where it runs: the
    layers are called one after another, each on the previous one's output where the shapes match (else on a
    stored tensor of its input's shape), ``layer_warmup`` untimed rounds and ``layer_repeats`` timed ones; on
    CUDA a pair of events around each layer and one synchronize a round. Returns every timing (ms) of each
    key: a key met twice in the chain (repeated blocks) has two per round."""
    import torch

    device = torch.device(settings.device)
    fmt = torch.channels_last if settings.memory_format_channels_last else torch.contiguous_format
    dtype = _dtype(settings.dtype)
    with _own_rng(settings):
        layers = [(k, _prepare(layer_module(k)[0], [], settings)[0]) for k in keys]
        stored: dict[tuple[int, int], Any] = {}

        def tensor(shape: tuple[int, int]):
            if shape not in stored:
                c, side = shape
                stored[shape] = torch.randn(settings.batch, c, side, side, device=device,
                                            dtype=dtype).contiguous(memory_format=fmt)
            return stored[shape]

        plan = [(k, m, *_shapes(k)) for k, m in layers]
        for _k, _m, shape_in, shape_res, _out in plan:  # every tensor allocated before timing starts
            tensor(shape_in)
            if shape_res is not None:
                tensor(shape_res)
    cuda = settings.device == "cuda"
    samples: dict[LayerKey, list[float]] = {k: [] for k in keys}

    def one_round(timed: bool) -> None:
        prev, prev_shape = None, None
        events = []
        for key, module, shape_in, shape_res, shape_out in plan:
            x = prev if prev_shape == shape_in else tensor(shape_in)
            args = (x,) if shape_res is None else (x, tensor(shape_res))
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                prev = module(*args)
                end.record()
                events.append((key, start, end))
            else:
                t0 = time.perf_counter()
                prev = module(*args)
                if timed:
                    samples[key].append((time.perf_counter() - t0) * 1e3)
            prev_shape = shape_out
        if cuda:
            torch.cuda.synchronize()
            if timed:
                for key, start, end in events:
                    samples[key].append(start.elapsed_time(end))

    with _cpu_threads(settings), _cudnn_benchmark(settings), torch.inference_mode():
        for _ in range(settings.layer_warmup):
            one_round(False)
        for _ in range(settings.layer_repeats):
            one_round(True)
    return samples


# --- the predictor -----------------------------------------------------------------------------------------


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


# --- building and checking a table --------------------------------------------------------------------------


def grid_archs(family: str, ratios: Sequence[float], resolutions: Sequence[int]) -> list[ArchConfig]:
    """The uniform networks of ``family`` at each width ratio and resolution, on the space's rounding grid
    (``repro.space``), full depth."""
    import numpy as np

    from repro.space import SearchSpace

    space = SearchSpace(family, "channel+input")
    out = []
    for ratio in ratios:
        for res in resolutions:
            v = space.uniform(ratio)
            v[space.names.index("resolution")] = res / 224
            out.append(space.decode(np.asarray(v)))
    return out


def random_archs(family: str, n: int, seed: int = 0, variant: str = "channel+input+depth") -> list[ArchConfig]:
    """``n`` architectures of the space, each coordinate uniform between its bounds (seeded)."""
    import numpy as np

    from repro.space import SearchSpace

    space = SearchSpace(family, variant)
    rng = np.random.default_rng(seed)
    return [space.decode(rng.uniform(space.lower, space.upper)) for _ in range(n)]


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


# --- latency constraints -----------------------------------------------------------------------------------

LATENCY_DEVICE = {"cpu_latency": "cpu", "gpu_latency": "cuda"}


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


_ACTIVE: dict[str, LatencyTable] = {}


def activate(table: LatencyTable) -> LatencyTable:
    """Make ``table`` the one latency constraints on its device use (``latency_budget``)."""
    _ACTIVE[table.settings.device] = table
    return table


def active_table(device: str) -> LatencyTable:
    if device not in _ACTIVE:
        raise RuntimeError(f"no latency table is active for {device}: latency-constrained cells open it through "
                           f"the pipeline (run-cell / run-table); elsewhere call repro.cost.latency.activate("
                           f"LatencyTable.open(settings, root))")
    return _ACTIVE[device]


def open_table(config: LatencyConfig, kind: str, measure_missing: bool = True) -> LatencyTable:
    """The device's table for a latency constraint ``kind``, activated; NotRunHere without the device."""
    settings = config.settings_for(kind)
    if not device_available(settings.device):
        raise NotRunHere(f"{kind} needs a CUDA GPU: not run here")
    return activate(LatencyTable.open(settings, Path(config.tables), measure_missing))


def device_key(settings: LatencySettings) -> dict[str, Any]:
    """What a latency cell's cache key holds of its device: the settings and the device's name (None where
    the device is missing; such a cell does not run here)."""
    name = environment(settings)["device_name"] if device_available(settings.device) else None
    return {**settings.resolved(), "device_name": name}


def reference_arch(family: str, multiplier: float) -> ArchConfig:
    """A latency column's reference: the uniform *Channel* network at ``multiplier`` (``baselines.uniform``'s
    rule for the family, 224 px), the same network as the column's uniform row."""
    from baselines.uniform import RULES

    return RULES[family].arch(family, multiplier)


def latency_budget(device: str, multiplier: float, family: str):
    """The search budget of a latency column: predicted latency (ms) at most the reference's prediction, both
    from the active table of ``device`` (the same table, so the same run and device)."""
    from repro.cost.budget import Budget
    from repro.cost.flops import count_macs

    table = active_table(device)
    reference = reference_arch(family, multiplier)
    limit = table.predict(reference)
    if table.path is not None:
        table.save()  # the limit's entries on disk before the search uses them (a resumed search reads them)
    # the projection's direction from MACs: central differences of the prediction in every coordinate would
    # measure ~2 new layer shapes per coordinate per projection (4,543 layers in a 2-epoch test search)
    return Budget(lambda arch: table.predict(arch.with_imagenet_geometry()), limit, "ms",
                  direction_cost=lambda arch: float(count_macs(arch.with_imagenet_geometry())),
                  estimate=lambda arch: table.estimate(arch.with_imagenet_geometry()))


def compare_latency(arch: ArchConfig, reference: ArchConfig, settings: LatencySettings, rounds: int = 3,
                    allow_unstable: bool = False) -> dict[str, Any]:
    """``arch`` and ``reference`` measured alternately, ``rounds`` times each, in this process: the median of
    each one's round medians, their ratio, and everything the numbers depend on (a record's ``latency``).

    When ``arch`` is the reference network itself (a uniform row at its own column), it is measured once per
    round and the ratio is exactly 1 (``same_as_reference``): on this suite's CPU two alternating
    measurements of one network differed by 2.6-6.3%, which would have read as a limit exceeded."""
    same = arch.with_imagenet_geometry() == reference.with_imagenet_geometry()
    found, ref = [], []
    for _ in range(rounds):
        ref.append(measure_arch(reference, settings, allow_unstable))
        found.append(ref[-1] if same else measure_arch(arch, settings, allow_unstable))
    ms = statistics.median(m.median_ms for m in found)
    ref_ms = statistics.median(m.median_ms for m in ref)
    return {"device": found[0].environment["device_name"], "kind": settings.device, "batch_size": settings.batch,
            "ms": ms, "reference_ms": ref_ms, "ratio": ms / ref_ms, "cv": max(m.cv for m in found),
            "reference_cv": max(m.cv for m in ref), "rounds": rounds, "same_as_reference": same,
            "reference_arch": reference.to_dict(), "settings": settings.resolved(),
            "environment": found[0].environment}
