"""The zoo of released baseline architectures (baselines/zoo): every file validates, the CLI lists every
entry, each entry's MACs agree with what its authors report or the entry says why not, and the layouts that
ArchConfig cannot express are counted as hand-computed figures say."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from baselines import zoo
from baselines.zoo.__main__ import main as zoo_main
from repro.arch import FAMILIES, ArchConfig
from repro.cost.flops import count_macs

NAMES = zoo.names()
REPO = Path(__file__).resolve().parents[1]


def test_zoo_is_not_empty_and_holds_the_required_mobilenets():
    required = {"amc_mobilenet_v1_0.5flops", "amc_mobilenet_v1_0.5time", "amc_mobilenet_v2_0.7flops",
                "metapruning_mobilenet_v1_0.75x"}
    assert required <= set(NAMES)
    assert [e.name for e in zoo.entries()] == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_entry_loads_and_validates(name):
    entry = zoo.load(name)
    assert entry.name == name
    assert entry.family in FAMILIES and entry.arch.family == entry.family
    assert entry.method in zoo.METHODS
    assert isinstance(entry.arch, ArchConfig)
    assert ArchConfig.from_dict(entry.arch.to_dict()) == entry.arch  # JSON round trip
    for key in ("repository", "path", "raw", "conversion"):
        assert entry.source[key], f"{name}: source.{key} is empty"
    assert entry.reported["paper"] and entry.reported["where"]


@pytest.mark.parametrize("name", NAMES)
def test_macs_agree_with_reported_or_are_explained(name):
    """Our exact count (or the released layout's) lies within the reported figure's tolerance, or the entry
    records the discrepancy in macs_note. Fails on an unexplained gap and on a stale note."""
    entry = zoo.load(name)
    check = entry.macs_check()
    assert check.status in ("agrees", "agrees_native", "noted"), (
        f"{name}: ours {check.ours / 1e6:.2f}M, native {check.native}, reported {entry.reported['macs']}")
    if check.status == "noted":
        assert entry.macs_note and len(entry.macs_note) > 40
    else:
        assert entry.macs_note is None, f"{name}: MACs agree, the macs_note is stale"


# --- the check can fail --------------------------------------------------------------------------------------

def _data(name: str) -> dict:
    return json.loads((zoo.ZOO_DIR / f"{name}.json").read_text())


def test_unexplained_macs_gap_is_rejected(tmp_path):
    data = _data("amc_mobilenet_v1_0.5flops")  # 293.9M ours vs 285M reported: needs its note
    del data["macs_note"]
    path = tmp_path / "amc_mobilenet_v1_0.5flops.json"
    path.write_text(json.dumps(data))
    with pytest.raises(zoo.ZooError, match=r"reported\.macs.*no macs_note"):
        zoo.load_file(path)


def test_stale_macs_note_is_rejected(tmp_path):
    data = _data("amc_mobilenet_v2_0.7flops")  # agrees (210.6M vs 210M)
    data["macs_note"] = "a note that no longer applies because the counts agree with each other"
    path = tmp_path / "amc_mobilenet_v2_0.7flops.json"
    path.write_text(json.dumps(data))
    with pytest.raises(zoo.ZooError, match="stale"):
        zoo.load_file(path)


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.update(family="mobilenet_v3"), "'family'"),
    (lambda d: d.update(method="magic"), "'method'"),
    (lambda d: d["arch"]["widths"].pop(), "'arch'"),
    (lambda d: d["source"].pop("commit"), "'source'"),
    (lambda d: d["source"].update(commit="abc"), "'source.commit'"),
    (lambda d: d["reported"].update(macs="lots"), "'reported.macs'"),
    (lambda d: d["reported"].update(top1="70.5"), "'reported.top1'"),
    (lambda d: d.update(extra=1), "'<top level>'"),
    (lambda d: d.update(name="other_name"), "'name'"),
])
def test_bad_files_fail_naming_file_and_field(tmp_path, mutate, field):
    data = _data("amc_mobilenet_v1_0.5time")
    mutate(data)
    path = tmp_path / "amc_mobilenet_v1_0.5time.json"
    path.write_text(json.dumps(data))
    with pytest.raises(zoo.ZooError) as info:
        zoo.load_file(path)
    assert str(path) in str(info.value) and field in str(info.value)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(zoo.ZooError, match="amc_mobilenet_v1_0.5flops"):
        zoo.load("no_such_entry")


# --- conversions and native layouts, against hand-computed figures -------------------------------------------

def test_amc_v1_widths_are_the_released_cfg():
    arch = zoo.load("amc_mobilenet_v1_0.5flops").arch
    assert arch.widths == (24, 48, 96, 80, 192, 200, 328, 352, 368, 360, 328, 400, 736, 752)
    # by hand: stem 27*24*112^2 = 8,128,512; classifier 752*1000; dw + pw of the 13 blocks 284,989,488
    assert count_macs(arch) == 8_128_512 + 752_000 + 284_989_488


def test_metapruning_v1_uses_the_evaluate_codes_shifted_index():
    """evaluating/mobilenet_v1.py reads rngs[i-1] for layer i: the stem gets rngs[12] = 29 -> int(32 * 0.97)."""
    entry = zoo.load("metapruning_mobilenet_v1_0.75x")
    rngs = entry.source["raw"]["rngs"]
    scale = [(10 + i * 3) / 100 for i in range(31)]
    assert entry.arch.widths[0] == int(32 * scale[rngs[12]]) == 31
    assert entry.arch.widths[1] == int(64 * scale[rngs[0]]) == 60
    assert entry.arch.widths[-1] == 1024


def test_caffe_layout_reproduces_thinets_published_counts():
    """ThiNet_Code's README: original ResNet-50 7.72B FLOPs and ThiNet-70 4.88B, 2 FLOPs per multiply-add."""
    canonical = ArchConfig.canonical("resnet50")
    assert round(2 * zoo.NATIVE_LAYOUTS["caffe_resnet50"](canonical, {}) / 1e9, 2) == 7.72
    thinet70 = zoo.load("thinet_resnet50_70")
    assert thinet70.native_macs() == 2_440_026_340
    assert round(2 * thinet70.native_macs() / 1e9, 2) == 4.88
    # stride on conv1 only removes 3/4 of the strided blocks' conv1 MACs: c_in * c1 * (56^2 - 28^2) etc.
    saved = 256 * 89 * (56**2 - 28**2) + 512 * 179 * (28**2 - 14**2) + 1024 * 358 * (14**2 - 7**2)
    assert thinet70.macs() - thinet70.native_macs() == saved


def test_sfp_layout_narrows_only_conv3():
    entry = zoo.load("sfp_resnet50_30pct")
    full = {"conv3_kept": [256, 512, 1024, 2048]}
    assert zoo.NATIVE_LAYOUTS["sfp_resnet50"](entry.arch, full) == entry.macs()
    kept = entry.native["params"]["conv3_kept"]
    assert kept == [180, 359, 717, 1434]
    blocks = [(3, 45, 56**2), (4, 90, 28**2), (6, 180, 14**2), (3, 359, 7**2)]  # (n, mid, area) per stage
    saved = sum(n * mid * (full_w - k) * area
                for (n, mid, area), k, full_w in zip(blocks, kept, full["conv3_kept"], strict=True))
    assert entry.macs() - entry.native_macs() == saved


def test_metapruning_v2_layout_adds_the_first_blocks_expansion():
    entry = zoo.load("metapruning_mobilenet_v2_104m")
    stem, project, mid = entry.arch.widths[0], entry.arch.widths[1], entry.native["params"]["first_block_mid"]
    assert (stem, project, mid) == (22, 10, 12)
    expected = entry.macs() + 112**2 * ((stem * mid + 9 * mid + mid * project) - (9 * stem + stem * project))
    assert entry.native_macs() == expected


def test_amc_v2_keeps_the_residual_ties_and_the_pruned_last_conv():
    arch = zoo.load("amc_mobilenet_v2_0.7flops").arch
    assert arch.widths[0] == 24 and arch.widths[-1] == 848
    assert count_macs(arch) == 210_620_528


# --- the command line --------------------------------------------------------------------------------------

def test_list_prints_every_entry(capsys):
    assert zoo_main(["list"]) == 0
    out = capsys.readouterr().out
    for name in NAMES:
        assert name in out
    assert "unexplained" not in out


def test_show_prints_the_archconfig_json(capsys):
    assert zoo_main(["show", "amc_mobilenet_v1_0.5time"]) == 0
    arch = ArchConfig.from_json(capsys.readouterr().out)
    assert arch == zoo.load("amc_mobilenet_v1_0.5time").arch


def test_show_unknown_name_fails(capsys):
    assert zoo_main(["show", "nope"]) == 2
    assert "no zoo entry 'nope'" in capsys.readouterr().err


def test_module_runs_as_a_script():
    result = subprocess.run([sys.executable, "-m", "baselines.zoo", "list"], cwd=REPO, capture_output=True,
                            text=True, timeout=120, env={"PYTHONPATH": str(REPO), "PATH": ""})
    assert result.returncode == 0, result.stderr
    assert all(name in result.stdout for name in NAMES)
