"""The FLOPs convention: the analytic count equals hand counts and fvcore (restricted to conv + linear)."""

from __future__ import annotations

import random

import pytest

from repro.arch import FAMILIES, ArchConfig, family_spec, random_arch
from repro.cost.flops import count_macs, count_macs_scaled, count_params, fvcore_macs, parse_macs, reported_tolerance


@pytest.mark.parametrize("family, macs, params", [
    ("mobilenet_v1", 568_740_352, 4_231_976),
    ("mobilenet_v2", 300_774_272, 3_504_872),
    ("resnet50", 4_089_184_256, 25_557_032),
])
def test_canonical_reference_counts(family, macs, params):
    arch = ArchConfig.canonical(family)
    assert count_macs(arch) == macs
    assert fvcore_macs(arch) == macs
    assert count_params(arch) == params


def _minimal(family, first_block_widths):
    spec = family_spec(family)
    return ArchConfig(family, first_block_widths, (1,) * len(spec.max_depths), 32)


def test_hand_count_mobilenet_v1():
    # stem 4; first pointwise conv of each stage 8, 16, 32, 64, 128; depth 1 per stage; 32 px.
    # sides 16 16 8 4 2 1; each block: depthwise cin*9*area + pointwise cin*cout*area
    w = [4, 8, 16, 1, 32, 1, 64, 1, 1, 1, 1, 1, 128, 1]
    hand = (27 * 4 * 256 + (4 * 9 + 4 * 8) * 256 + (8 * 9 + 8 * 16) * 64 + (16 * 9 + 16 * 32) * 16
            + (32 * 9 + 32 * 64) * 4 + (64 * 9 + 64 * 128) * 1 + 128 * 1000)
    assert hand == 214_464
    arch = _minimal("mobilenet_v1", w)
    assert count_macs(arch) == hand == fvcore_macs(arch)


def test_hand_count_resnet50():
    # stem 7x7/2 to 2 channels (16x16), max-pool to 8x8; one bottleneck (1, 1, 2, downsample 2) per stage.
    spec = family_spec("resnet50")
    w = [1] * spec.num_widths
    w[0] = 2
    for i, s in enumerate(spec.slots):
        if s.role in ("conv3", "downsample"):
            w[i] = 2
    hand = (3 * 2 * 49 * 256
            + (2 * 64 + 9 * 64 + 2 * 64 + 4 * 64)  # stage 0, 8x8 in and out
            + (2 * 64 + 9 * 16 + 2 * 16 + 4 * 16)  # stage 1, 8x8 -> 4x4
            + (2 * 16 + 9 * 4 + 2 * 4 + 4 * 4)
            + (2 * 4 + 9 * 1 + 2 * 1 + 4 * 1)
            + 2 * 1000)
    assert hand == 78_835
    arch = _minimal("resnet50", w)
    assert count_macs(arch) == hand == fvcore_macs(arch)


def test_depthwise_and_expansion_of_mobilenet_v2():
    """One hand-checked inverted residual: expand 1x1, depthwise 3x3 (groups = width), project 1x1."""
    a = ArchConfig.canonical("mobilenet_v2", resolution=32).replace(depths=(1,) * 7)
    # stage 1 first block at 16x16 in, 8x8 out: expand 16->96 at 256, dw 96 at 64, project 96->24 at 64
    full = count_macs(a)
    w = list(a.widths)
    w[2] = 48  # halve that block's expansion
    b = a.replace(widths=tuple(w))
    assert full - count_macs(b) == 16 * 48 * 256 + 48 * 9 * 64 + 48 * 24 * 64
    assert count_macs(b) == fvcore_macs(b)


@pytest.mark.parametrize("family", FAMILIES)
def test_analytic_equals_fvcore_on_60_random_configs(family):
    # 60 per family (was 200, then 100: 53 s of the test run, among its slowest); with the odd resolutions below
    # and the hand-checked blocks above, every layer kind and stride meets fvcore many times over
    rng = random.Random(f"flops-{family}")
    mismatches = []
    for _ in range(60):
        arch = random_arch(family, rng, max_width_scale=0.5, resolution_range=(7, 80))
        ours, ref = count_macs(arch), fvcore_macs(arch)
        if ours != ref:
            mismatches.append((arch.to_json(), ours, ref))
    assert not mismatches, mismatches[:3]


def test_odd_and_large_resolutions_agree():
    rng = random.Random(11)
    for family in FAMILIES:
        for r in (1, 2, 3, 161, 225, 257):
            arch = random_arch(family, rng, max_width_scale=0.25).replace(resolution=r)
            assert count_macs(arch) == fvcore_macs(arch), (family, r)


def test_scaled_convention():
    a = ArchConfig.canonical("mobilenet_v1", resolution=174)
    assert count_macs_scaled(a) == pytest.approx(568_740_352 * (174 / 224) ** 2)
    assert round(count_macs_scaled(a) / 1e6, 2) == 343.18
    # the exact count has no whole resolution near 343M (the paper counts continuously)
    assert round(count_macs(a.replace(resolution=160)) / 1e6, 2) == 290.68
    assert round(count_macs(a.replace(resolution=161)) / 1e6, 2) == 345.76
    assert count_macs_scaled(a.replace(resolution=224)) == count_macs(a.replace(resolution=224))


def test_num_classes_is_imagenet_unless_asked():
    a = ArchConfig.canonical("mobilenet_v1", num_classes=10)
    assert count_macs(a) == 568_740_352  # cost at ImageNet geometry whatever the data set
    assert count_macs(a, num_classes=10) == 568_740_352 - 1024 * 990


@pytest.mark.parametrize("text, low, high", [
    ("1.1G", 1.05e9, 1.15e9),  # half a unit of the last digit is wider than 2%
    ("3.2G", 3.2e9 * 0.98, 3.2e9 * 1.02),  # 2% is wider than 0.05G
    ("325M", 325e6 * 0.98, 325e6 * 1.02),
    ("42.5M", 42.5e6 * 0.98, 42.5e6 * 1.02),
    ("41M", 41e6 * 0.98, 41e6 * 1.02),
    ("2G", 1.5e9, 2.5e9),
])
def test_reported_tolerance(text, low, high):
    lo, hi = reported_tolerance(text)
    assert lo == pytest.approx(low) and hi == pytest.approx(high)


@pytest.mark.parametrize("bad", ["", "M", "abc", "-3M", "1.1X", "nan"])
def test_parse_macs_rejects(bad):
    with pytest.raises(ValueError, match="MACs"):
        parse_macs(bad)


def test_counting_a_huge_network_allocates_nothing():
    """``python -m repro flops --width 100`` once built the network to count it and took the machine's 22 GB:
    parameters are counted on the meta device (31.5 billion here, in milliseconds)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert count_params(ArchConfig.uniform("mobilenet_v1", 100.0)) == 31_504_980_200
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 512 * 1024  # KiB: under 0.5 GiB more
