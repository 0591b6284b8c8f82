"""ArchConfig: canonical tables, uniform constructors, validation messages, JSON round trip."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from repro.arch import FAMILIES, ArchConfig, family_spec, make_divisible, random_arch


def test_canonical_width_tables():
    v1 = ArchConfig.canonical("mobilenet_v1")
    assert v1.widths == (32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)
    assert v1.depths == (1, 2, 2, 6, 2)
    v2 = ArchConfig.canonical("mobilenet_v2")
    assert len(v2.widths) == 35 and v2.widths[:4] == (32, 16, 96, 24) and v2.widths[-1] == 1280
    assert v2.depths == (1, 2, 3, 4, 3, 3, 1)
    r50 = ArchConfig.canonical("resnet50")
    assert len(r50.widths) == 53 and r50.widths[:5] == (64, 64, 64, 256, 256)
    assert r50.depths == (3, 4, 6, 3)


def test_ties_are_the_residual_groups():
    v2 = family_spec("mobilenet_v2")
    names = [[v2.slots[i].name for i in g] for g in v2.ties]
    assert ["s2.b0.project", "s2.b1.project", "s2.b2.project"] in names
    r50 = family_spec("resnet50")
    first = [r50.slots[i].name for i in r50.ties[0]]
    assert first == ["s0.b0.conv3", "s0.b0.downsample", "s0.b1.conv3", "s0.b2.conv3"]
    assert family_spec("mobilenet_v1").ties == ()


def test_uniform_rules():
    assert ArchConfig.uniform("mobilenet_v1", 0.75).widths[-1] == 768
    assert ArchConfig.uniform("mobilenet_v1", 0.25).widths[0] == 8
    # torchvision mobilenet_v2(width_mult=0.35): multiples of 8, last conv stays 1280
    tv = ArchConfig.uniform("mobilenet_v2", 0.35, rule="divisible8", scale_last=False)
    assert tv.widths[:4] == (16, 8, 48, 8) and tv.widths[-1] == 1280
    assert ArchConfig.uniform("mobilenet_v2", 0.35, rule="floor").widths[-1] == 448
    assert make_divisible(0.35 * 16, 8) == 8 and make_divisible(0.35 * 24, 8) == 8


def test_numpy_integers_are_accepted():
    a = ArchConfig.canonical("mobilenet_v1")
    b = ArchConfig("mobilenet_v1", np.array(a.widths), np.array(a.depths), np.int64(224))
    assert b == a and type(b.widths[0]) is int and type(b.resolution) is int


def test_json_round_trip(tmp_path):
    rng = random.Random(3)
    for family in FAMILIES:
        a = random_arch(family, rng, num_classes=10)
        assert ArchConfig.from_json(a.to_json()) == a
        path = tmp_path / f"{family}.json"
        path.write_text(json.dumps(a.to_dict()))
        assert ArchConfig.load(path) == a


def _v1(**changes):
    d = ArchConfig.canonical("mobilenet_v1").to_dict()
    d.update(changes)
    return d


@pytest.mark.parametrize("data, message", [
    (_v1(family="mobilenet_v3"), r"family='mobilenet_v3' is not known; allowed: mobilenet_v1"),
    (_v1(widths=[32] * 13), r"widths has 13 entries; mobilenet_v1 needs 14"),
    (_v1(widths=[0] + [64] * 13), r"widths\[stem\]=0: a width must be a positive integer"),
    (_v1(widths=[-4] + [64] * 13), r"widths\[stem\]=-4"),
    (_v1(widths=[32.0] + [64] * 13), r"widths\[0\]=32.0 must be an integer"),
    (_v1(depths=[1, 2, 2, 7, 2]), r"depths\[3\]=7 is outside 1..6"),
    (_v1(depths=[1, 2, 0, 6, 2]), r"depths\[2\]=0 is outside 1..2"),
    (_v1(depths=[1, 2, 2, 6]), r"depths=\[1, 2, 2, 6\] has 4 stages; mobilenet_v1 has 5"),
    (_v1(resolution=0), r"resolution=0 must be a positive integer"),
    (_v1(resolution=224.5), r"resolution=224.5 must be a positive integer"),
    (_v1(resolution="224"), r"resolution='224' must be a positive integer"),
    (_v1(num_classes=-1), r"num_classes=-1 must be a positive integer"),
    (_v1(colour="red"), r"unknown ArchConfig field\(s\) \['colour'\]"),
])
def test_validation_names_field_value_and_rule(data, message):
    with pytest.raises(ValueError, match=message):
        ArchConfig.from_dict(data)


def test_broken_tie_is_rejected_but_skipped_blocks_are_ignored():
    base = ArchConfig.canonical("resnet50")
    w = list(base.widths)
    spec = base.spec
    s1b1 = [i for i, s in enumerate(spec.slots) if s.name == "s1.b1.conv3"][0]
    w[s1b1] = 500
    with pytest.raises(ValueError, match=r"s1.b0.conv3=512, s1.b0.downsample=512, s1.b1.conv3=500"):
        ArchConfig("resnet50", w, base.depths)
    s1b3 = [i for i, s in enumerate(spec.slots) if s.name == "s1.b3.conv3"][0]
    w[s1b1] = 512
    w[s1b3] = 7  # block 3 of stage 1 is dropped by depth 3: its entries are ignored
    ArchConfig("resnet50", w, (3, 3, 6, 3))
    with pytest.raises(ValueError, match="s1.b3.conv3=7"):
        ArchConfig("resnet50", w, (3, 4, 6, 3))


def test_uniform_rejects_bad_multiplier_and_rule():
    with pytest.raises(ValueError, match=r"width_mult=0 must be a positive number"):
        ArchConfig.uniform("mobilenet_v1", 0)
    with pytest.raises(ValueError, match=r"rule='ceil' is not known; allowed: floor, nearest, divisible8"):
        ArchConfig.uniform("mobilenet_v1", 0.5, rule="ceil")


def test_from_json_rejects_garbage(tmp_path):
    with pytest.raises(ValueError, match="not valid JSON"):
        ArchConfig.from_json("{")
    with pytest.raises(ValueError, match="must be a JSON object"):
        ArchConfig.from_json("[1, 2]")
    with pytest.raises(ValueError, match="missing field"):
        ArchConfig.from_json('{"family": "resnet50"}')
    with pytest.raises(ValueError, match="does not exist"):
        ArchConfig.load(tmp_path / "nope.json")
