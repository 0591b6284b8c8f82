"""Baselines run at the operating points their authors published (issue #23): the FLOPs the paper printed for a
method run under a budget (AMC's 281M in Table 1's 330M column), the rate a pruning method was published at
(ThiNet-70 keeps 70% of the channels it prunes), CP's 2x speed-up; the uniform rows and the paper's method at the
column's header. ``--target header`` gives every cell its header. A target reaches the search as its constraint
and budget (FLOPs, speed-up) or as the keep ratio (rate), and is another cell: its own keys and records."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from repro.arch import ArchConfig
from repro.constraint import HEADER, Constraint, Target
from repro.cost.flops import count_macs
from repro.discover import load_methods
from repro.method import SearchResult
from repro.profiles import load_profile
from tables.spec import table_cells
from tests.test_keys import _data

THINET, SFP, CP = "ThiNet (Luo et al., 2017)", "SFP (He et al., 2018a)", "CP (He et al., 2017)"
AUTOPRUNER, METAPRUNING3 = "AutoPruner (Luo & Wu, 2018)", "MetaPruning (Liu et al., 2019)"


def _targets(table: int, target: str = "published") -> dict[tuple[str, str, str, str], Target]:
    return {(c.subtable, c.group, c.row, c.column): c.target for c in table_cells(table, target=target)}


def test_each_baseline_cell_aims_at_its_published_operating_point():
    t1, t2, t3 = _targets(1), _targets(2), _targets(3)
    sota = "State of the art"
    assert t1[("flops", sota, "AMC", "330M")] == Target("flops", 281e6, t1[("flops", sota, "AMC", "330M")].source)
    assert t1[("flops", sota, "NetAdapt", "330M")].value == 284e6
    assert [t1[("flops", sota, "MetaPruning", c)].value for c in ("330M", "150M", "45M")] == [324e6, 149e6, 41.1e6]
    assert t2[("flops", sota, "AMC", "200M")].value == 220e6  # above the header: what the paper printed
    assert [t2[("flops", sota, "MetaPruning", c)].value for c in ("200M", "150M", "45M")] == [217e6, 140e6, 43e6]
    pruning = "Traditional pruning"
    assert [(t3[("flops", pruning, THINET, c)].kind, t3[("flops", pruning, THINET, c)].value)
            for c in ("3G", "2G", "1G")] == [("rate", 0.7), ("rate", 0.5), ("rate", 0.3)]
    assert (t3[("flops", pruning, SFP, "3G")].kind, t3[("flops", pruning, SFP, "3G")].value) == ("rate", 0.7)
    assert [t3[("flops", pruning, AUTOPRUNER, c)].value for c in ("2G", "1G")] == [0.5, 0.3]
    assert (t3[("flops", pruning, CP, "2G")].kind, t3[("flops", pruning, CP, "2G")].value) == ("speedup", 2.0)
    assert [t3[("flops", "AutoML-based", METAPRUNING3, c)].value for c in ("3G", "2G", "1G")] == [3e9, 2e9, 1e9]
    for table in (1, 2, 3):  # the uniform rows, the paper's method and every latency cell aim at the header
        for c in table_cells(table):
            if c.method in ("uniform", "proposed") or c.subtable != "flops":
                assert c.target.is_header, c.label
            else:  # no baseline cell the tables run is left at its header by omission
                assert not c.target.is_header, c.label
            assert all(x.target.is_header for x in table_cells(table, target="header"))


def test_a_target_is_the_constraint_its_search_runs_under():
    column = Constraint("flops", 330e6)
    assert Target("flops", 281e6).constraint(column, "mobilenet_v1") == Constraint("flops", 281e6)
    full = count_macs(ArchConfig.canonical("resnet50"))
    assert Target("speedup", 2).constraint(Constraint("flops", 2e9), "resnet50") == Constraint("flops", full / 2)
    assert Target("rate", 0.7).constraint(column, "resnet50") is column  # a rate needs no budget
    assert HEADER.constraint(column, "resnet50") is column
    for bad, match in (({"kind": "rate", "value": 1.5}, "fraction of channels kept"),
                       ({"kind": "speedup", "value": 0.5}, "at least 1"), ({"kind": "flops"}, "positive value"),
                       ({"kind": "header", "value": 3.0}, "takes no value"),
                       ({"kind": "budget", "value": 1}, "not known")):
        with pytest.raises(ValueError, match=match):
            Target(**bad)
    assert Target.from_dict(None) == HEADER and Target.from_dict(Target("rate", 0.5, "x").to_dict()) == Target(
        "rate", 0.5, "x")
    # a record's target, with what the pipeline adds, is this point's; the header's is None; a malformed one none's
    assert Target("rate", 0.5).is_of({**Target("rate", 0.5, "x").to_dict(), "macs": None})
    assert not Target("rate", 0.5).is_of({"kind": "rate", "value": 0.3}) and not Target("rate", 0.5).is_of(None)
    assert HEADER.is_of(None) and not HEADER.is_of({"kind": "rate", "value": 0.5})
    assert not Target("flops", 1e8).is_of({"kind": "flops"})


def test_a_target_is_another_cell_and_the_header_keeps_its_key():
    from repro.method import search_key
    from repro.pipeline import cell_key

    profile, data, column = load_profile("smoke"), _data(), Constraint("flops", 330e6)
    pinned = json.loads((Path(__file__).with_name("expected_keys.json")).read_text())
    assert cell_key("amc", "channel", "mobilenet_v1", Constraint("flops", 150e6), profile, 0, data, HEADER) == \
        pinned["smoke/amc/channel/mobilenet_v1/flops:1.5e+08"]["cell"]  # the key test_keys pins, target or not
    plain = cell_key("amc", "channel", "mobilenet_v1", column, profile, 0, data)
    assert cell_key("amc", "channel", "mobilenet_v1", column, profile, 0, data, HEADER) == plain
    aimed = cell_key("amc", "channel", "mobilenet_v1", column, profile, 0, data, Target("flops", 281e6, "a"))
    assert aimed != plain
    # the source's wording is not an input: the same point from another line of text is the same cell
    assert cell_key("amc", "channel", "mobilenet_v1", column, profile, 0, data, Target("flops", 281e6, "b")) == aimed
    settings = {}
    plain = search_key("amc", "channel", "mobilenet_v1", column, settings, profile, 0, data)
    assert search_key("amc", "channel", "mobilenet_v1", column, settings, profile, 0, data, None, HEADER) == plain
    assert search_key("amc", "channel", "mobilenet_v1", column, settings, profile, 0, data, None,
                      Target("flops", 281e6)) != plain


def test_the_search_runs_under_its_target_and_the_pipeline_refuses_a_target_it_cannot_take(tmp_path, monkeypatch):
    from repro.pipeline import check_cell, search

    amc = load_methods()["amc"]()
    seen = []

    def fake(self, ctx):
        seen.append(ctx)
        return SearchResult(ArchConfig.uniform("mobilenet_v1", 0.5))

    monkeypatch.setattr(type(amc), "search", fake)
    column = Constraint("flops", 330e6)
    search(amc, "channel", "mobilenet_v1", column, load_profile("smoke"), 0, _data(), tmp_path,
           target=Target("flops", 281e6, "printed"))
    ctx = seen[-1]
    assert ctx.constraint == Constraint("flops", 281e6) and ctx.budget.limit == 281e6
    assert ctx.target == Target("flops", 281e6, "printed")
    with pytest.raises(ValueError, match="method 'amc' cannot run at a rate target"):
        check_cell(amc, "channel", "mobilenet_v1", column, Target("rate", 0.5))
    netadapt = load_methods()["netadapt"]()  # runs under latency too, but a latency cell aims at its header
    with pytest.raises(ValueError, match="cpu_latency cell runs at its header"):
        check_cell(netadapt, "channel", "mobilenet_v1", Constraint("cpu_latency", 0.5), Target("flops", 1e8))
    for name in ("thinet", "sfp", "autopruner", "cp"):  # the methods published at a rate take one
        check_cell(load_methods()[name](), "channel", "resnet50", Constraint("flops", 2e9), Target("rate", 0.5))


def test_a_rate_target_is_the_keep_ratio_a_pruning_search_applies(tmp_path):
    from repro.train.reconstruct import PruningSearch, bottleneck_steps, ratio_for_budget, with_ratio

    arch0 = ArchConfig.canonical("resnet50")
    slots = [s for s, _ in bottleneck_steps(arch0)]
    budget = SimpleNamespace(cost=count_macs, limit=1e9)

    def ctx(target: Target) -> SimpleNamespace:
        return SimpleNamespace(family="resnet50", budget=budget, target=target, reference=lambda: None,
                               store=SimpleNamespace(folder=Path(tmp_path)), constraint=Constraint("flops", 1e9))

    rated = PruningSearch.open(ctx(Target("rate", 0.3)), "thinet")
    assert rated.ratio == 0.3 and rated.goal == with_ratio(arch0, slots, 0.3)
    assert count_macs(rated.goal) > 1e9  # ThiNet-30 is over the 1G header: the printed 1.2G is its outcome
    assert "at keep rate 0.3" in rated.title
    fitted = PruningSearch.open(ctx(HEADER), "thinet")
    assert (fitted.ratio, fitted.goal) == ratio_for_budget(arch0, slots, count_macs, 1e9)


def test_the_command_line_takes_the_target_mode():
    from repro.cli import build_parser, main

    p = build_parser()
    assert p.parse_args(["run-table", "1"]).target is None  # the published points
    assert p.parse_args(["run-table", "3", "--target", "header"]).target == "header"
    assert p.parse_args(["run-cell", "--table", "3", "--index", "2", "--target", "header"]).target == "header"
    with pytest.raises(SystemExit):
        p.parse_args(["run-table", "1", "--target", "printed"])
    # a cell named by method and limit runs at that limit: a target there is refused, not silently ignored
    assert main(["run-cell", "--method", "amc", "--variant", "channel", "--family", "mobilenet_v1", "--flops",
                 "330M", "--target", "published"]) == 2


def test_the_sfp_note_states_the_macs_of_its_approximation():
    """SFP prunes the stem and every conv3 too (49 convolutions); ours cannot narrow conv3 per block. The table's
    note gives both networks' MACs at keep 0.7; they are recomputed here so the note cannot drift."""
    import csv

    from repro.train.reconstruct import bottleneck_steps, with_ratio
    from tables.render import NOTES_CSV

    arch = ArchConfig.canonical("resnet50")
    ours = with_ratio(arch, [s for s, _ in bottleneck_steps(arch)], 0.7)
    theirs = with_ratio(arch, range(arch.spec.num_widths), 0.7)  # the stem and the tied stage streams too
    note = next(n["note"] for n in csv.DictReader(NOTES_CSV.open()) if n["row"] == SFP)
    a, b = count_macs(ours) / 1e9, count_macs(theirs) / 1e9
    assert f"{a:.2f}G MACs at keep 0.7" in note and f"give {b:.2f}G ({a - b:.2f}G fewer)" in note
