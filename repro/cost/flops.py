"""The suite's FLOPs convention: multiply-accumulates of convolutions and fully-connected layers only.

"FLOPs" in the paper's tables (and in the MobileNet, MobileNetV2, AMC and MetaPruning papers) are MACs of
conv and linear layers for one image at the architecture's resolution and 1000 classes; batch norm,
activations, pooling and residual additions are not counted. Two implementations must agree exactly:

* ``fvcore_macs`` traces the built network with fvcore, restricted to the conv / linear / matmul
  operators (fvcore counts batch norm and pooling by default, and ``set_op_handle(name, None)`` does not
  stop that, so the handles are cleared and only these are set). It is the reference.
* ``count_macs`` walks the ArchConfig's layer table with feature-map arithmetic; no network is built.
  It is what the searches call (tens of thousands of configs per second).

Two conventions for resolution (``macs`` and ``macs_scaled`` in every record):

* *exact*: what the deployed network computes, with integer feature-map sizes (``ceil(h / 2)`` per
  stride-2 layer);
* *scaled*: ``MACs(224) * (r / 224) ** 2``, which is how the paper appears to count resolution: it is the
  only rule that fits all six input-image cells of Tables 1-2 (see ``baselines.uniform``).

All counts are at ImageNet geometry (1000 classes) unless ``num_classes`` says otherwise.
"""

from __future__ import annotations

import functools
import math

from repro.arch import ArchConfig, family_spec

IMAGENET_CLASSES = 1000
BASE_RESOLUTION = 224


@functools.lru_cache(maxsize=4096)
def _sides(resolution: int, halvings: int) -> tuple[int, ...]:
    """Feature-map side after 0, 1, ..., ``halvings`` stride-2 layers (each ``ceil(h / 2)``)."""
    sides = [resolution]
    for _ in range(halvings):
        sides.append(-(-sides[-1] // 2))
    return tuple(sides)


@functools.cache
def _plan(family: str) -> tuple[tuple, ...]:
    """Per block of the maximum-depth network: (stage, index, stride, width slots by role)."""
    spec = family_spec(family)
    return tuple((b.stage, b.index, b.stride, dict(b.slots)) for b in spec.blocks)


def _macs_mobilenet_v1(w: tuple[int, ...], depths: tuple[int, ...], r: int, classes: int) -> int:
    sides = _sides(r, 6)
    level = 1
    area = sides[1] ** 2
    macs = 27 * w[0] * area  # stem 3x3/2, 3 -> w0
    cin = w[0]
    for stage, index, stride, slot in _plan("mobilenet_v1"):
        if index >= depths[stage]:
            continue
        if stride == 2:
            level += 1
            area = sides[level] ** 2
        cout = w[slot["pw"]]
        macs += (9 + cout) * cin * area  # depthwise 3x3 + pointwise
        cin = cout
    return macs + cin * classes


def _macs_mobilenet_v2(w: tuple[int, ...], depths: tuple[int, ...], r: int, classes: int) -> int:
    sides = _sides(r, 6)
    level = 1
    area = sides[1] ** 2
    macs = 27 * w[0] * area
    cin = w[0]
    for stage, index, stride, slot in _plan("mobilenet_v2"):
        if index >= depths[stage]:
            continue
        e = slot.get("expand")
        if e is None:
            hidden = cin
        else:
            hidden = w[e]
            macs += cin * hidden * area
        if stride == 2:
            level += 1
            area = sides[level] ** 2
        cout = w[slot["project"]]
        macs += (9 + cout) * hidden * area
        cin = cout
    return macs + cin * w[-1] * area + w[-1] * classes


def _macs_resnet50(w: tuple[int, ...], depths: tuple[int, ...], r: int, classes: int) -> int:
    sides = _sides(r, 6)
    macs = 147 * w[0] * sides[1] ** 2  # stem 7x7/2, 3 -> w0; then max-pool 3x3/2
    level = 2
    area = sides[2] ** 2
    cin = w[0]
    for stage, index, stride, slot in _plan("resnet50"):
        if index >= depths[stage]:
            continue
        c1, c2, c3 = w[slot["conv1"]], w[slot["conv2"]], w[slot["conv3"]]
        macs += cin * c1 * area
        if stride == 2:
            level += 1
        area_out = sides[level] ** 2
        macs += (9 * c1 * c2 + c2 * c3) * area_out
        ds = slot.get("downsample")
        if ds is not None:
            macs += cin * w[ds] * area_out
        area = area_out
        cin = c3
    return macs + cin * classes


_ANALYTIC = {
    "mobilenet_v1": _macs_mobilenet_v1,
    "mobilenet_v2": _macs_mobilenet_v2,
    "resnet50": _macs_resnet50,
}


def count_macs(arch: ArchConfig, num_classes: int = IMAGENET_CLASSES) -> int:
    """Exact conv + linear MACs of ``arch`` at its resolution, computed from the ArchConfig alone."""
    return _ANALYTIC[arch.family](arch.widths, arch.depths, arch.resolution, num_classes)


def count_macs_scaled(arch: ArchConfig, num_classes: int = IMAGENET_CLASSES,
                      base_resolution: int = BASE_RESOLUTION) -> float:
    """The paper's convention: exact MACs at ``base_resolution`` times ``(resolution / base) ** 2``."""
    at_base = _ANALYTIC[arch.family](arch.widths, arch.depths, base_resolution, num_classes)
    return at_base * (arch.resolution / base_resolution) ** 2


def fvcore_macs(arch: ArchConfig, num_classes: int = IMAGENET_CLASSES) -> int:
    """Reference count: fvcore over the built network, restricted to conv and linear operators."""
    import torch
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn import jit_handles as h

    from repro.models import build_model

    model = build_model(arch.replace(num_classes=num_classes)).eval()
    x = torch.zeros(1, 3, arch.resolution, arch.resolution)
    analysis = FlopCountAnalysis(model, x).clear_op_handles()
    analysis.set_op_handle(**{
        "aten::_convolution": h.conv_flop_jit,
        "aten::convolution": h.conv_flop_jit,
        "aten::addmm": h.addmm_flop_jit,
        "aten::linear": h.linear_flop_jit,
        "aten::matmul": h.matmul_flop_jit,
        "aten::mm": h.matmul_flop_jit,
    })
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    with torch.no_grad():
        return int(analysis.total())


def count_params(arch: ArchConfig, num_classes: int = IMAGENET_CLASSES) -> int:
    """Trainable parameters of the network (BatchNorm affine included, running statistics not). The network is
    built on PyTorch's ``meta`` device: shapes without memory, so counting a 100x-wide network costs nothing
    (built for real it took the machine's 22 GB)."""
    import torch

    from repro.models import build_model
    from repro.models import count_params as _count

    with torch.device("meta"):
        return _count(build_model(arch.replace(num_classes=num_classes)))


def format_macs(macs: float, digits: int = 2) -> str:
    """``568.74M`` / ``4.09G``: the unit the tables print."""
    if macs >= 1e9:
        return f"{macs / 1e9:.{digits}f}G"
    return f"{macs / 1e6:.{digits}f}M"


def parse_macs(text: str) -> float:
    """``'330M'`` -> 3.3e8, ``'1.1G'`` -> 1.1e9, ``'45000000'`` -> 4.5e7."""
    s = str(text).strip()
    scale = {"K": 1e3, "M": 1e6, "G": 1e9}.get(s[-1:].upper(), None)
    number = s[:-1] if scale else s
    try:
        value = float(number) * (scale or 1.0)
    except ValueError:
        raise ValueError(f"MACs {text!r} is not a number like 330M, 1.1G or 45000000") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"MACs {text!r} must be a positive number")
    return value


def reported_tolerance(reported: str, relative: float = 0.02) -> tuple[float, float]:
    """The [low, high) range that matches a reported FLOPs figure such as ``'1.1G'`` or ``'42.5M'``.

    The wider of ``relative`` and half a unit of the last printed digit: "1.1G" covers [1.05G, 1.15G).
    """
    value = parse_macs(reported)
    s = str(reported).strip()
    number = s[:-1] if s[-1:].upper() in "KMG" else s
    scale = value / float(number)
    decimals = len(number.split(".")[1]) if "." in number else 0
    half_unit = 0.5 * 10 ** (-decimals) * scale
    half_width = max(relative * value, half_unit)
    return value - half_width, value + half_width


