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

The package, by subject: ``settings`` (how a number is measured, the device's name), ``measure`` (networks),
``layers`` (an architecture's layers, measured alone or in chain), ``table`` (the predictor). A latency
*constraint* becomes a budget in ``repro.cost.budget.make_budget``, with the table passed in explicitly.
"""


from __future__ import annotations

from repro.cost.latency.layers import key_text, layer_keys, layer_module, measure_chain, measure_layer, parse_key
from repro.cost.latency.measure import compare_latency, measure_arch, measure_module, summarize, time_calls
from repro.cost.latency.settings import (
    DEFAULT_BATCH,
    IMAGENET_CLASSES,
    CudaLatencySettings,
    LatencyConfig,
    LatencySettings,
    LayerKey,
    Measurement,
    NotRunHere,
    UnstableMeasurement,
    default_settings,
    device_available,
    device_id,
    device_key,
    environment,
)
from repro.cost.latency.table import (
    LatencyTable,
    PredictorCheck,
    open_table,
    predictor_error,
    timed_fill,
)

__all__ = [
    "DEFAULT_BATCH", "IMAGENET_CLASSES", "CudaLatencySettings", "LatencyConfig", "LatencySettings", "LayerKey",
    "LatencyTable", "Measurement", "NotRunHere", "PredictorCheck", "UnstableMeasurement", "compare_latency",
    "default_settings", "device_available", "device_id", "device_key", "environment", "key_text",
    "layer_keys", "layer_module", "measure_arch", "measure_chain", "measure_layer", "measure_module", "open_table",
    "parse_key", "predictor_error", "summarize", "time_calls", "timed_fill",
]
