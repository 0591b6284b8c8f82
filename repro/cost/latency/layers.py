"""The layers of an architecture as latency-table keys (``layer_keys``), a module for each key, and their
measurement alone (``measure_layer``) or in chain (``measure_chain``); see ``repro.cost.latency``."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from repro.arch import ArchConfig
from repro.cost.latency.measure import _cpu_threads, _cudnn_benchmark, _dtype, _own_rng, _prepare, summarize, time_calls
from repro.cost.latency.settings import IMAGENET_CLASSES, LatencySettings, LayerKey, Measurement


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
