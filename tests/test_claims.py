"""The paper's claims as tests: planted records with exact values give the verdicts, the intervals are scipy's,
and the intervals cover the true effect as often as they say."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from repro.stats import Effect, holm, paired_effect, pooled_effect
from tables.claims import NOT_WORSE_MARGIN, evaluate, judge, load_claims, render
from tables.render import Tolerances, build_view, to_markdown
from tables.spec import column_constraint
from tests.test_tables import ROOT, _record

SEEDS = (0, 1, 2, 3, 4)
SPREAD = (-0.2, -0.1, 0.0, 0.1, 0.2)  # points, added seed by seed: a known spread (sd 0.158)


def _plant(tmp, family, pairs, columns, base=60.0, effect=3.0, spread=SPREAD, seeds=SEEDS, macs=None):
    """Records of two rows (``pairs``: ((method, variant), (method, variant))), ours = other + effect + spread."""
    (m1, v1), (m2, v2) = pairs
    for column in columns:
        c = column_constraint("flops", column)
        for seed, wiggle in zip(seeds, spread, strict=False):
            other = base + seed  # the rows differ seed by seed; only the pairs' difference is planted
            _record(tmp, m2, v2, c, seed=seed, top1=other / 100, family=family, macs_scaled=macs)
            _record(tmp, m1, v1, c, seed=seed, top1=(other + effect + wiggle) / 100, family=family,
                    macs_scaled=None if macs is None else macs - 1e6)


def _lines(verdicts, claim):
    return {v.column: v for v in verdicts if v.claim.claim == claim}


CHANNEL = (("proposed", "channel"), ("uniform", "channel"))
T1 = ("330M", "150M", "45M")


@pytest.mark.parametrize(("effect", "verdict"), [(3.0, "holds"), (-3.0, "reversed")])
def test_a_constant_effect_with_a_known_spread_holds_or_is_reversed(tmp_path, effect, verdict):
    _plant(tmp_path, "mobilenet_v1", CHANNEL, T1, effect=effect, macs=300e6)
    lines = _lines(evaluate(build_view(1, tmp_path, "smoke")), "T1-channel")
    diffs = [effect + w for w in SPREAD]
    low, high = stats.t.interval(0.95, 4, loc=np.mean(diffs), scale=stats.sem(diffs))
    for column in T1:
        line = lines[column]
        assert line.verdict == verdict and line.effect.n == 5
        assert line.effect.mean == pytest.approx(effect)
        assert (line.effect.low, line.effect.high) == (pytest.approx(low), pytest.approx(high))
        assert line.flops_gap == pytest.approx(-1e6)  # our cell's MACs minus the other's
        assert line.paper == pytest.approx({"330M": 2.6, "150M": 2.8, "45M": 8.0}[column])
    pooled = lines["pooled"]
    assert pooled.verdict == verdict and pooled.effect.n == 15 and pooled.effect.dof == 12
    se = math.sqrt(3 * statistics.variance(diffs) / 5) / 3
    assert pooled.effect.se == pytest.approx(se)
    assert pooled.effect.half == pytest.approx(stats.t.ppf(0.975, 12) * se)
    assert pooled.paper == pytest.approx((2.6 + 2.8 + 8.0) / 3)
    assert all(v.survives for v in lines.values())  # p ~ 1e-6 per line: Holm keeps every one


def test_no_effect_is_undecided_and_a_tie_holds_for_a_not_worse_claim(tmp_path):
    _plant(tmp_path, "mobilenet_v1", CHANNEL, T1, effect=0.0, spread=(-1.0, 0.5, 1.0, -0.5, 0.0))
    lines = _lines(evaluate(build_view(1, tmp_path, "smoke")), "T1-channel")
    assert {v.verdict for v in lines.values()} == {"undecided"}
    assert not any(v.survives for v in lines.values()) and lines["330M"].survives is None
    # Table 2's "+ Depth is not worse than Channel + Input image": a tie with spread 0.2
    t2 = tmp_path / "t2"
    _plant(t2, "mobilenet_v2", (("proposed", "channel+input+depth"), ("proposed", "channel+input")),
           ("200M", "150M", "45M"), effect=0.0, spread=(-0.2, 0.2, -0.2, 0.2, 0.0))
    lines = _lines(evaluate(build_view(2, t2, "smoke")), "T2-depth")
    assert lines["200M"].verdict == "holds" and lines["200M"].effect.low > -NOT_WORSE_MARGIN
    assert lines["200M"].effect.low < 0  # the interval covers 0: a "better" claim would be undecided
    assert judge(lines["200M"].effect, "better") == "undecided"
    # reversed means below the margin for a "not worse" claim, below 0 for a "better" one
    between = Effect(-0.45, -0.8, -0.1, 5, 4, 0.126, 0.5)
    assert judge(between, "not_worse") == "undecided" and judge(between, "better") == "reversed"
    assert judge(Effect(-0.9, -1.2, -0.6, 5, 4, 0.108, 0.4), "not_worse") == "reversed"
    assert lines["200M"].paper == pytest.approx(-0.7)  # the paper's own effect at 200M


def test_missing_cells_and_single_seeds_are_not_measured_and_name_what_to_run(tmp_path):
    _plant(tmp_path, "mobilenet_v1", CHANNEL, ("330M",), seeds=(0,), spread=(0.0,))
    verdicts = evaluate(build_view(1, tmp_path, "smoke"))
    lines = _lines(verdicts, "T1-channel")
    assert lines["330M"].verdict == "not measured" and lines["330M"].effect.n == 1
    assert lines["150M"].verdict == "not measured" and lines["150M"].effect is None
    assert lines["pooled"].verdict == "not measured"
    run = "python -m repro run-table 1 --method {} --profile smoke --seeds=0,1,2,3,4"
    assert lines["150M"].missing == [run.format("proposed"), run.format("uniform")]
    text = render(build_view(1, tmp_path, "smoke"), "md")
    assert f"- `{run.format('proposed')}`" in text and "+3.0 (1 seed: no interval)" in text
    assert "0 hold, 0 reversed, 0 undecided" in text


def test_holm_adjusts_step_down_and_every_claim_names_paper_cells():
    assert holm([0.01, 0.04, 0.03, math.nan]) == pytest.approx([0.03, 0.06, 0.06, math.nan], nan_ok=True)
    assert holm([0.5, 0.001]) == pytest.approx([0.5, 0.002])
    claims = load_claims()
    assert {c.table for c in claims} == {1, 2, 3} and len({c.claim for c in claims}) == len(claims)
    kinds = {c.claim: c.kind for c in claims}
    assert kinds["T3-vs-metapruning"] == "not_worse" and kinds["T1-channel"] == "better"


def test_a_claim_naming_a_cell_the_paper_lacks_is_refused(tmp_path):
    bad = tmp_path / "claims.csv"
    bad.write_text("claim,table,subtable,ours_group,ours_row,other_group,other_row,columns,kind,statement\n"
                   "x,1,flops,Proposed method,Channel,Uniform rescale baseline,Channel,330M;200M,better,s\n")
    with pytest.raises(ValueError, match=r"claim x names Proposed method / Channel at '200M'"):
        load_claims(path=bad)
    bad.write_text("claim,table,subtable,ours_group,ours_row,other_group,other_row,columns,kind,statement\n"
                   "y,1,flops,Proposed method,Channel,Uniform rescale baseline,Channel,330M,much_better,s\n")
    with pytest.raises(ValueError, match=r"claim y has kind 'much_better'; use one of better, not_worse"):
        load_claims(path=bad)


@pytest.mark.parametrize(("sds", "seeds"), [((0.8, 1.2, 2.0), 5), ((0.1, 0.1, 3.0), 3)],
                         ids=["unequal", "one-column-dominates"])
def test_the_intervals_cover_the_true_effect_as_often_as_they_say(sds, seeds):
    """2,000 planted replicates (a fixed generator): the 95% interval of one column and the pooled one (3
    columns, unequal spreads; one column's spread dominating, where n - C degrees of freedom covered 87.7%)
    each cover the true effect 93-97% of the time."""
    rng = np.random.default_rng(20261207)
    true = 1.5
    one = pooled = 0
    for _ in range(2000):
        columns = [list(true + sd * rng.standard_normal(seeds)) for sd in sds]
        e: Effect = paired_effect(columns[0])
        one += e.low <= true <= e.high
        p = pooled_effect(columns)
        pooled += p.low <= true <= p.high
    assert 0.93 <= one / 2000 <= 0.97, one
    assert 0.93 <= pooled / 2000 <= 0.97, pooled


def test_the_rendered_table_carries_the_claims_and_the_cli_prints_them(tmp_path):
    _plant(tmp_path / "records", "mobilenet_v1", CHANNEL, T1, macs=300e6)
    md = to_markdown(build_view(1, tmp_path / "records", "smoke", Tolerances()))
    assert "### The paper's claims, Table 1 on the smoke profile" in md
    assert md.rstrip().splitlines()[-1].startswith("Table 1 on smoke:")  # the table's summary stays last
    done = subprocess.run([sys.executable, "-m", "tables", "claims", "--table", "1", "--results", str(tmp_path),
                           "--format", "all", "--out", str(tmp_path / "out")], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "| T1-channel (better) | pooled (3 columns) | 15 | +3.0 [" in done.stdout
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == [f"claims1.{e}" for e in ("csv", "md", "pdf", "png", "tex")]
    assert "T1-channel,better,Channel,Channel,pooled,15,12,3," in (tmp_path / "out" / "claims1.csv").read_text()


def test_the_search_cost_of_each_proposed_cell_is_printed_beside_the_papers_quarter(tmp_path):
    compute = {"ratio": 0.2716, "epochs_fraction": 0.25, "search_image_macs": 2716, "retrain_image_macs": 10000}
    _record(tmp_path, "proposed", "channel", column_constraint("flops", "150M"), seed=3, macs_scaled=149e6,
            extra={"search": {"compute": compute}})
    md = render(build_view(1, tmp_path, "smoke"), "md")
    assert "(the paper: about 0.25)" in md
    assert "| Channel | 150M | 3 | 0.25 | 0.272 | — | — | — |" in md  # the record has no seconds


def test_the_search_cost_says_where_the_search_time_went(tmp_path):
    """Weight steps: 30 s for 2,000 image-MACs against the retraining's 100 s for 10,000, so 1.5 times the time
    per MAC; the scores took 8 of the search's 40 s."""
    compute = {"ratio": 0.2716, "epochs_fraction": 0.25, "search_image_macs": 2716, "weight_step_image_macs": 2000,
               "score_image_macs": 716, "retrain_image_macs": 10000}
    split = {"weight_steps": 30.0, "scores": 8.0, "other": 2.0}
    _record(tmp_path, "proposed", "channel+input", column_constraint("flops", "45M"), seed=1, macs_scaled=44e6,
            extra={"search": {"compute": compute, "seconds_split": split}}, search_seconds=40.0,
            retrain_seconds=100.0)
    md = render(build_view(1, tmp_path, "smoke"), "md")
    assert "| Channel + Input image | 45M | 1 | 0.25 | 0.272 | 0.4 | 1.5 | 20% |" in md


def test_the_random_control_is_a_row_of_ours_and_a_claim(tmp_path):
    """The best of k random architectures (a control the paper lacks): its rows show once they have records,
    under the paper's rows, and the search is judged against them."""
    candidates = [{"index": i, "sub_eval_top1": 0.5} for i in range(4)]
    _plant(tmp_path, "mobilenet_v1", (("proposed", "channel"), ("random", "channel")), T1, effect=2.0)
    for path in tmp_path.glob("cell-random-*.json"):  # the control's records: how many draws they kept the best of
        data = json.loads(path.read_text())
        data["extra"] = {"search": {"candidates": candidates}}
        path.write_text(json.dumps(data))
    view = build_view(1, tmp_path, "smoke")
    controls = [r for r in view.rows if r.group == "Control (not in the paper)"]
    assert [(r.row, r.column) for r in controls] == [("Random (best of k): Channel", c) for c in T1]
    assert all(r.metrics["top1"].n == 5 and r.metrics["top1"].paper == "—" for r in controls)
    from tables.claims import _to_run

    assert _to_run(view, controls[0]) == "python -m repro run-table 1 --controls --method random --profile smoke " \
                                         "--seeds=0,1,2,3,4"  # run-table refuses --method random without it
    lines = _lines(evaluate(view), "T1-vs-random-channel")
    assert {v.verdict for v in lines.values()} == {"holds"} and lines["pooled"].paper is None
    assert len(list(tmp_path.glob("cell-random-*.json"))) == 15
    assert "drew k = 4 architecture(s)" in render(view, "md")
    joint = _lines(evaluate(view), "T1-vs-random-joint")["330M"]
    assert joint.verdict == "not measured" and joint.missing == [
        "python -m repro run-table 1 --method proposed --profile smoke --seeds=0,1,2,3,4",
        "python -m repro run-table 1 --controls --method random --profile smoke --seeds=0,1,2,3,4"]
