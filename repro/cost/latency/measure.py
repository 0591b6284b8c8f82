"""Measuring a network's latency the same way every time (``measure_arch``, ``measure_module``), and a found
network against its column's reference (``compare_latency``); see ``repro.cost.latency``."""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from repro.arch import ArchConfig
from repro.cost.latency.settings import (
    IMAGENET_CLASSES,
    LatencySettings,
    Measurement,
    UnstableMeasurement,
    environment,
)
from repro.quiet import quiet


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
    """While measuring on a CPU: ``torch.set_num_threads(settings.threads)``, as it was afterwards, and the
    other cells of ``run-table --jobs`` paused (``repro.quiet``). Nothing on CUDA."""
    import torch

    if settings.device == "cuda":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        with quiet():
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


def compare_latency(arch: ArchConfig, reference: ArchConfig, settings: LatencySettings, rounds: int = 3,
                    allow_unstable: bool = False) -> dict[str, Any]:
    """``arch`` and ``reference`` measured alternately, ``rounds`` times each, in this process: the median of
    each one's round medians, their ratio, and everything the numbers depend on (a record's ``latency``).

    When ``arch`` is the reference network itself (a uniform row at its own column), it is measured once per
    round and the ratio is exactly 1 (``same_as_reference``): on this suite's CPU two alternating
    measurements of one network differed by 2.6-6.3%, which would have read as a limit exceeded."""
    same = arch.with_imagenet_geometry() == reference.with_imagenet_geometry()
    found, ref = [], []
    with _cpu_threads(settings):  # on a CPU the other cells stay paused for all rounds, not between them
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
