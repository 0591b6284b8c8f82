"""The paper's numbers as data, and the renderer: verdict rules on hand-made records, formats, the CLI."""

from __future__ import annotations

import csv
import io
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from repro.arch import ArchConfig
from repro.cost.flops import parse_macs, reported_tolerance
from repro.results import RecordError, RunRecord, write_record
from tables.render import Tolerances, build_view, to_csv, to_latex, to_markdown
from tables.reported import PAPER_CSV, load_reported
from tables.spec import column_constraint

ROOT = Path(__file__).resolve().parent.parent
TABLES_MD = ROOT / "tables" / "reported" / "TABLES.md"  # the project's copy of ../shared/paper/TABLES.md
SHARED_TABLES_MD = ROOT.parent / "shared" / "paper" / "TABLES.md"
SUBTABLE_OF = {"FLOPs": "flops", "GPU latency": "gpu_latency", "CPU latency": "cpu_latency"}
METRIC_OF = {"Acc": "top1", "FLOPs": "flops", "Latency": "latency"}


def _markdown_cells(text: str) -> list[tuple[int, str, str | None, str, str, str, str]]:
    """(table, subtable, group or None, row, column, metric, printed value) for every cell of every
    Markdown table in TABLES.md."""
    cells = []
    table, subtable, header = None, "flops", None
    for line in text.splitlines():
        if m := re.match(r"## Table (\d)", line):
            table, subtable, header = int(m.group(1)), "flops", None
        elif m := re.match(r"Under (FLOPs|GPU latency|CPU latency) constraints", line):
            subtable, header = SUBTABLE_OF[m.group(1)], None
        elif line.startswith("Columns: constraint"):
            subtable = "flops"
        elif line.startswith("|") and table is not None:
            parts = [p.strip() for p in line.strip().strip("|").split("|")]
            if header is None:
                header = parts
            elif not set(line) <= set("|- "):
                named = dict(zip(header, parts, strict=True))
                for h, value in named.items():
                    if h in ("group", "row"):
                        continue
                    column, metric = h.rsplit(" ", 1)
                    cells.append((table, subtable, named.get("group"), named["row"], column, METRIC_OF[metric],
                                  value))
        elif not line.strip():
            header = None
    return cells


def test_project_copy_of_tables_md_is_the_shared_one():
    if not SHARED_TABLES_MD.is_file():
        pytest.skip(f"{SHARED_TABLES_MD} is not on this machine (a clone outside the workspace)")
    assert TABLES_MD.read_text() == SHARED_TABLES_MD.read_text()


def test_reported_data_equals_tables_md_cell_by_cell():
    md = _markdown_cells(TABLES_MD.read_text())
    assert len(md) == 168  # T1: 8x6 + 2x6, T2: 8x6 + 3x6, T3: 7x6
    data = load_reported()
    index = {(c.table, c.subtable, c.group, c.row, c.column, c.metric): c for c in data}
    matched = set()
    for table, subtable, group, row, column, metric, value in md:
        # Table 1's GPU-latency sub-table has no group column: its rows are unique within the sub-table
        keys = [k for k in index if k[:2] == (table, subtable) and k[3:] == (row, column, metric)
                and (group is None or k[2] == group)]
        assert len(keys) == 1, (table, subtable, group, row, column, metric)
        assert index[keys[0]].reported == value, keys[0]
        matched.add(keys[0])
    extra = [k for k in index if k not in matched]
    # the only cells the csv adds: Table 2's CPU-latency sub-table, all "not reported"
    assert extra and all(k[:2] == (2, "cpu_latency") and index[k].reported == "—" for k in extra)
    assert {k[5] for k in extra} == {"top1", "latency", "optimization_time"}
    assert len(data) == len(md) + len(extra) == sum(1 for _ in csv.DictReader(PAPER_CSV.open()))


# --- verdicts on hand-made records ------------------------------------------------------------------------

def _record(tmp: Path, method: str, variant: str, constraint, seed: int = 0, top1: float | None = 0.5,
            macs_scaled: float | None = None, profile: str = "smoke", family: str = "mobilenet_v1",
            latency: dict | None = None, name: str | None = None, profile_config: dict | None = None,
            dataset: dict | None = None, target: dict | None = None, extra: dict | None = None,
            **fields) -> None:
    arch = ArchConfig.uniform(family, 0.5)
    aim = "" if target is None else f"-{target['kind']}-{target['value']}"
    write_record(tmp, RunRecord(
        key=name or f"{method}-{variant}-{constraint.kind}-{constraint.limit}{aim}-{seed}-{profile}", kind="cell",
        method=method, variant=variant, family=family, constraint=constraint.to_dict(), arch=arch.to_dict(),
        profile=profile, profile_config=profile_config or {}, dataset=dataset or {}, seed=seed,
        macs=None if macs_scaled is None else int(macs_scaled), macs_scaled=macs_scaled, top1=top1,
        latency=latency, target=target, extra=extra or {}, **fields))


def _view(tmp: Path, profile: str = "smoke", gpu: bool = False, **tol):
    return build_view(1, tmp, profile, Tolerances(**tol), gpu=gpu)


def _cell(view, subtable, row, column, metric, method=None):
    return next(r for r in view.rows if (r.subtable, r.row, r.column) == (subtable, row, column)
                and method in (None, r.method)).metrics[metric]


def test_flops_match_is_half_open_at_the_tolerance_edges(tmp_path):
    lo, hi = reported_tolerance("325M")  # Channel 330M: 2% of 325M is wider than half a unit (0.5M)
    assert (lo, hi) == (pytest.approx(318.5e6), pytest.approx(331.5e6))
    c330, c150, c45 = (column_constraint("flops", c) for c in ("330M", "150M", "45M"))
    _record(tmp_path, "uniform", "channel", c330, macs_scaled=lo)
    _record(tmp_path, "uniform", "channel", c150, macs_scaled=reported_tolerance("149M")[1])
    _record(tmp_path, "uniform", "channel", c45, macs_scaled=reported_tolerance("41M")[1] - 1)
    view = _view(tmp_path)
    assert _cell(view, "flops", "Channel", "330M", "flops").verdict == "match"
    assert _cell(view, "flops", "Channel", "150M", "flops").verdict == "outside"
    assert _cell(view, "flops", "Channel", "45M", "flops").verdict == "match"
    # the tolerance is an option: at 0.1% the 330M record is outside
    assert _cell(_view(tmp_path, flops_rel=0.001), "flops", "Channel", "330M", "flops").verdict == "outside"


def test_half_a_printed_digit_sets_the_tolerance_of_short_figures():
    lo, hi = reported_tolerance("1.1G")
    assert (lo, hi) == (pytest.approx(1.05e9), pytest.approx(1.15e9))


def test_accuracy_is_a_proxy_off_imagenet_and_compared_on_it(tmp_path):
    c330, c150 = column_constraint("flops", "330M"), column_constraint("flops", "150M")
    smoke, imagenet = tmp_path / "smoke", tmp_path / "imagenet"
    _record(smoke, "uniform", "channel", c330, top1=0.9, macs_scaled=325.4e6)
    view = _view(smoke)
    acc = _cell(view, "flops", "Channel", "330M", "top1")
    assert (acc.verdict, acc.ours, acc.paper) == ("proxy", "90.0% (proxy; 1 seed: not a measurement)", "68.4%")
    _record(imagenet, "uniform", "channel", c330, top1=0.689, profile="imagenet")  # 68.9 vs 68.4: at 0.5
    _record(imagenet, "uniform", "channel", c150, top1=0.631, profile="imagenet")  # 63.1 vs 63.7: 0.6 off
    view = _view(imagenet, profile="imagenet")
    assert _cell(view, "flops", "Channel", "330M", "top1").verdict == "match"
    assert _cell(view, "flops", "Channel", "150M", "top1").verdict == "outside"
    assert _cell(view, "flops", "Channel", "45M", "top1").verdict == "not run"


def test_seeds_show_the_mean_and_its_95_percent_t_interval(tmp_path):
    """Three seeds of a cell render as mean ± the half-width of scipy's 95% t-interval of their mean (n=3)."""
    from scipy import stats

    c = column_constraint("flops", "330M")
    top1s = (0.40, 0.44, 0.49)
    for seed, top1 in enumerate(top1s):
        _record(tmp_path, "uniform", "channel", c, seed=seed, top1=top1, macs_scaled=325.4e6)
    acc = _cell(_view(tmp_path), "flops", "Channel", "330M", "top1")
    pct = [100 * t for t in top1s]
    lo, hi = stats.t.interval(0.95, len(pct) - 1, loc=statistics.mean(pct), scale=stats.sem(pct))
    assert acc.ours_half == pytest.approx((hi - lo) / 2, rel=1e-12)
    assert acc.ours_half == pytest.approx(11.20, abs=0.01)  # 4.303 x sd 4.51 / sqrt(3), by hand
    assert acc.ours == f"{statistics.mean(pct):.1f} ± {(hi - lo) / 2:.1f}% (n=3) (proxy)"
    assert acc.ours == "44.3 ± 11.2% (n=3) (proxy)"
    assert acc.n == 3 and acc.ours_value == pytest.approx(44.333, abs=1e-3)
    assert len(list(tmp_path.rglob("*.json"))) == 3  # a record per seed


def test_searched_cells_flops_show_the_range_over_seeds_and_how_many_meet(tmp_path):
    c = column_constraint("flops", "330M")
    for seed, macs in enumerate((320e6, 329e6, 334e6)):
        _record(tmp_path, "proposed", "channel", c, seed=seed, top1=0.4, macs_scaled=macs)
    view = _view(tmp_path)
    flops = next(r.metrics["flops"] for r in view.rows if r.subtable == "flops" and r.method == "proposed"
                 and r.variant == "channel" and r.column == "330M")
    assert flops.ours == "327.67M (mean; 320.00M–334.00M, n=3; 2/3 meet the constraint)"
    assert "over constraint" in flops.verdict and flops.n == 3


def test_missing_records_not_reported_cells_and_gpu_cells(tmp_path):
    view = _view(tmp_path / "nothing-here")
    assert _cell(view, "flops", "MetaPruning", "150M", "top1").verdict == "not run"
    assert _cell(view, "flops", "NetAdapt", "150M", "flops").verdict == "not reported"
    assert _cell(view, "gpu_latency", "Baseline", "0.75×", "latency").verdict == "not run here"
    assert _cell(_view(tmp_path / "nothing-here", gpu=True), "gpu_latency", "Baseline", "0.75×",
                 "latency").verdict == "not run"
    c = view.counts()
    assert c["not reported"] == 8  # NetAdapt and AMC at 150M and 45M, two metrics each
    assert c["match"] == c["outside"] == c["proxy"] == 0


def test_searched_rows_also_say_whether_they_meet_the_constraint(tmp_path):
    c150, c45 = column_constraint("flops", "150M"), column_constraint("flops", "45M")
    _record(tmp_path, "proposed", "channel", c150, macs_scaled=145.5e6)  # the paper prints 145M
    _record(tmp_path, "proposed", "channel", c45, macs_scaled=46e6)  # the paper prints 47.5M
    view = _view(tmp_path)
    assert _cell(view, "flops", "Channel", "150M", "flops", "proposed").verdict == "match; meets constraint"
    assert _cell(view, "flops", "Channel", "45M", "flops", "proposed").verdict == "outside; over constraint"
    assert parse_macs("45M") < 46e6
    # a baseline run at its header (before operating points, or with --target header) shows in the header view
    _record(tmp_path, "metapruning", "channel", c150, macs_scaled=149.9e6)
    _record(tmp_path, "metapruning", "channel", c45, macs_scaled=46e6)
    header = build_view(1, tmp_path, "smoke", gpu=False, target="header")
    assert _cell(header, "flops", "MetaPruning", "150M", "flops").verdict == "match; meets constraint"
    assert _cell(header, "flops", "MetaPruning", "45M", "flops").verdict == "outside; over constraint"
    # and not at its operating point (the FLOPs the paper printed for it): that cell has not run
    assert _cell(_view(tmp_path), "flops", "MetaPruning", "150M", "flops").verdict == "not run"


def test_the_uniform_row_says_whose_numbers_the_paper_prints_and_which_recipe_ours_used(tmp_path):
    c330 = column_constraint("flops", "330M")
    train = {"epochs": 3, "lr": 0.1, "lr_reference_batch": 256, "schedule": "cosine", "label_smoothing": 0.1}
    assert "ours has no record of it here" in _view(tmp_path / "none").row_notes[0]
    _record(tmp_path, "uniform", "channel", c330, macs_scaled=325e6, profile_config={"train": train})
    view = _view(tmp_path)
    note = view.row_notes[0]
    assert "Howard et al. (2017)" in note and "RMSprop" in note
    assert "ours retrain it with the smoke profile's recipe (SGD, 3 epochs, lr 0.1 per 256 images" in note
    assert f"- {note}" in to_markdown(view) and "\\emph{Note.} Uniform rescale baseline / Channel: " in to_latex(view)
    sfp = build_view(3, tmp_path, "smoke", gpu=False).row_notes  # Table 3's note is SFP's approximation
    assert len(sfp) == 1 and sfp[0].startswith("Traditional pruning / SFP") and "no record of it here" in sfp[0]


def _aim(kind: str, value: float, macs: float | None) -> dict:
    return {"kind": kind, "value": value, "source": "test", "macs": macs}


def test_baselines_are_judged_against_their_operating_point(tmp_path):
    """A baseline cell's FLOPs say whether the record meets the cell's target (the printed FLOPs of a budget
    method, the keep ratio of a rate method), with the target and the header beside it; a record of another
    target is not the cell's."""
    c150, c45 = column_constraint("flops", "150M"), column_constraint("flops", "45M")
    _record(tmp_path, "metapruning", "channel", c150, macs_scaled=148.9e6, target=_aim("flops", 149e6, 149e6))
    _record(tmp_path, "metapruning", "channel", c45, macs_scaled=42e6, target=_aim("flops", 41.1e6, 41.1e6))
    _record(tmp_path, "metapruning", "channel", c45, macs_scaled=40e6, target=_aim("flops", 40e6, 40e6))
    view = _view(tmp_path)
    cell = _cell(view, "flops", "MetaPruning", "150M", "flops")
    assert cell.verdict == "match; meets target" and cell.ours == "148.90M [target 149M; header 150M]"
    cell = _cell(view, "flops", "MetaPruning", "45M", "flops")  # the 40M record is another operating point's
    assert (cell.verdict, cell.n) == ("outside; over target", 1)
    assert view.counts()["meets target"] == 1 and view.counts()["over target"] == 1
    assert "1 meet and 1 miss their operating point" in view.summary()
    c3g, c2g = column_constraint("flops", "3G"), column_constraint("flops", "2G")
    thinet = "ThiNet (Luo et al., 2017)"
    for seed, applied in enumerate((0.7, 0.7)):
        _record(tmp_path, "thinet", "channel", c3g, seed=seed, macs_scaled=2.9e9, family="resnet50",
                target=_aim("rate", 0.7, None), extra={"search": {"keep_ratio": applied}})
    _record(tmp_path, "thinet", "channel", c2g, macs_scaled=2.1e9, family="resnet50",
            target=_aim("rate", 0.5, None), extra={"search": {"keep_ratio": 0.52}})
    view = build_view(3, tmp_path, "smoke", gpu=False)
    cell = _cell(view, "flops", thinet, "3G", "flops")
    assert cell.verdict == "match; meets target" and "2/2 meet the rate" in cell.ours
    assert cell.ours.endswith("[target keep rate 0.7; header 3G]")
    assert _cell(view, "flops", thinet, "2G", "flops").verdict == "match; over target"  # 0.52 applied, not 0.5


def test_latency_ratio_verdict_and_devices(tmp_path):
    c = column_constraint("gpu_latency", "0.75×")
    _record(tmp_path, "proposed", "channel+input", c, seed=0,
            latency={"device": "NVIDIA H100", "ms": 1.00, "reference_ms": 1.01, "ratio": 0.990})
    _record(tmp_path, "proposed", "channel+input", c, seed=1,
            latency={"device": "NVIDIA A100", "ms": 2.00, "reference_ms": 1.99, "ratio": 1.005})
    view = _view(tmp_path, gpu=True)
    lat = _cell(view, "gpu_latency", "Proposed method", "0.75×", "latency")
    assert lat.paper == "5.617ms (0.999x)"  # the paper's own ratio to its baseline's 5.620ms
    assert lat.verdict == "over constraint" and "NVIDIA A100, NVIDIA H100" in lat.ours
    assert _cell(_view(tmp_path, gpu=True, latency_rel=0.01), "gpu_latency", "Proposed method", "0.75×",
                 "latency").verdict == "meets constraint"


def test_optimization_time_sums_a_rows_records_in_device_hours(tmp_path):
    for i, column in enumerate(("0.75×", "0.5×")):
        write_record(tmp_path, RunRecord(
            key=f"cpu{i}", kind="cell", method="proposed", variant="channel+input", family="mobilenet_v2",
            constraint=column_constraint("cpu_latency", column).to_dict(),
            arch=ArchConfig.uniform("mobilenet_v2", 0.5).to_dict(), profile="smoke", profile_config={},
            dataset={}, seed=0, search_seconds=1800.0, retrain_seconds=900.0 * (i + 1),
            environment={"cpu": "Test CPU", "world_size": 1}))
    view = build_view(2, tmp_path, "smoke", gpu=False)
    cost = _cell(view, "cpu_latency", "Channel + Input image", "Total Optimization Time Cost", "optimization_time")
    assert cost.ours_value == pytest.approx(1.75) and cost.n == 2  # (1800 + 900 + 1800 + 1800) s
    assert cost.ours.startswith("1.75 device-hours on Test CPU") and cost.paper == "—"
    other = _cell(view, "cpu_latency", "Channel", "Total Optimization Time Cost", "optimization_time")
    assert (other.ours, other.verdict) == ("", "not run")  # a row the default run produces, no records yet


def test_bad_record_names_the_file_and_skip_bad_renders_the_rest(tmp_path):
    _record(tmp_path, "uniform", "channel", column_constraint("flops", "330M"), macs_scaled=325.4e6)
    (tmp_path / "zz-broken.json").write_text("{not json")
    with pytest.raises(RecordError, match="zz-broken.json.*--skip-bad"):
        _view(tmp_path)
    view = build_view(1, tmp_path, "smoke", skip_bad=True, gpu=False)
    assert _cell(view, "flops", "Channel", "330M", "flops").verdict == "match"
    assert len(view.skipped) == 1 and "zz-broken.json" in view.skipped[0]
    assert "zz-broken.json" in to_markdown(view)


# --- formats -----------------------------------------------------------------------------------------------

def _paper_rows(table: int) -> list[tuple[str, str, str]]:
    seen: dict[tuple[str, str, str], None] = {}
    for c in load_reported():
        if c.table == table:
            seen[(c.subtable, c.group, c.row)] = None
    return list(seen)


@pytest.mark.parametrize("table", [1, 2, 3])
def test_markdown_has_the_papers_rows_in_order(tmp_path, table):
    from tables.render import SUBTABLE_TITLES

    titles = {v: k for k, v in SUBTABLE_TITLES.items()}
    md = to_markdown(build_view(table, tmp_path, "smoke", gpu=False))
    rows: list[tuple[str, str, str]] = []
    subtable = None
    for line in md.splitlines():
        if line.startswith("### The paper's claims"):  # the claims section under the table (tables.claims)
            break
        if line.startswith("### "):
            subtable = titles[line[4:]]
        parts = [p.strip() for p in line.strip("|").split("|")]
        if line.startswith("| ") and parts[0] != "group":
            if not rows or rows[-1] != (subtable, parts[0], parts[1]):  # one line per column of a row
                rows.append((subtable, parts[0], parts[1]))
    assert rows == _paper_rows(table)
    assert md.rstrip().splitlines()[-1].startswith(f"Table {table} on smoke:")


@pytest.mark.parametrize("table", [1, 2, 3])
def test_latex_is_balanced_with_one_line_per_paper_row(tmp_path, table):
    tex = to_latex(build_view(table, tmp_path, "smoke", gpu=False))
    for env in ("table", "tabular"):
        assert tex.count(f"\\begin{{{env}}}") == tex.count(f"\\end{{{env}}}") >= 1
    assert tex.count("\\toprule") == tex.count("\\bottomrule") == tex.count("\\begin{tabular}")
    body_lines = 0
    for block in tex.split("\\begin{tabular}")[1:]:
        body = block.split("\\midrule", 1)[1].split("\\bottomrule")[0]
        body_lines += sum(1 for line in body.splitlines() if line.rstrip().endswith("\\\\"))
    assert body_lines == len(_paper_rows(table))
    assert "%" not in tex.replace("\\%", "").split("\n", 2)[2]  # every percent sign in the body is escaped
    n_cols = {len(line.split(" & ")) for line in tex.splitlines() if line.endswith("\\\\") and " & " in line
              and "multicolumn" not in line}
    assert len(n_cols) <= 3  # one width per sub-table (a table has at most 3 sub-tables)


def test_csv_has_one_line_per_reported_number(tmp_path):
    view = build_view(2, tmp_path, "smoke", gpu=False)
    rows = list(csv.DictReader(io.StringIO(to_csv(view))))
    reported = [c for c in load_reported() if c.table == 2]
    assert len(rows) == len(reported)
    assert {r["mac_convention"] for r in rows} == {"scaled"}
    cpu = [r for r in rows if r["subtable"] == "cpu_latency"]
    # the paper reports none of them, but the default run produces them: without records, "not run"
    assert cpu and {r["verdict"] for r in cpu} == {"not run"}


def test_a_cpu_latency_cell_without_its_record_is_not_run_beside_one_that_ran(tmp_path):
    # a run whose 0.5x cell failed (its measurement refused): that cell says "not run", not "not reported"
    c = column_constraint("cpu_latency", "0.75×")
    _record(tmp_path, "proposed", "channel+input", c, family="mobilenet_v2",
            latency={"device": "AMD EPYC", "ms": 10.0, "reference_ms": 12.0, "ratio": 10 / 12})
    view = build_view(2, tmp_path, "smoke", gpu=False)
    row = "Channel + Input image"
    assert _cell(view, "cpu_latency", row, "0.75×", "latency").verdict == "meets constraint"
    assert _cell(view, "cpu_latency", row, "0.5×", "latency").verdict == "not run"
    assert _cell(view, "cpu_latency", row, "0.5×", "top1").verdict == "not run"
    assert _cell(view, "cpu_latency", row, "Total Optimization Time Cost", "optimization_time").verdict \
        == "not reported"  # its record's time is there; the paper gives no figure to compare it with
    assert _cell(view, "flops", "AMC", "150M", "top1").verdict == "not reported"  # "—" and not run by default


def test_cli_writes_every_format_and_the_plots(tmp_path):
    results = tmp_path / "results"
    _record(results / "records", "uniform", "channel", column_constraint("flops", "330M"), macs_scaled=325.4e6)
    out = subprocess.run([sys.executable, "-m", "tables", "render", "--table", "1", "--results", str(results),
                          "--format", "all"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "| Uniform rescale baseline | Channel | 330M | 68.4% | 50.0% (proxy; 1 seed: not a measurement) | proxy " \
        "| 325M | 325.40M | match |" \
        in out.stdout
    names = {p.name for p in results.iterdir()}
    assert {"table1.md", "table1.tex", "table1.csv", "table1_flops.png", "table1_flops.pdf",
            "table1_gpu_latency.png"} <= names
    assert (results / "table1_flops.png").read_bytes()[:4] == b"\x89PNG"
    for flag, value, says in [("--acc-tol", "-1", "--acc-tol=-1.0 must be a finite number of at least 0"),
                              ("--flops-tol", "nan", "--flops-tol=nan must be a finite number of at least 0"),
                              ("--results", str(tmp_path / "nowhere"), f"no records in {tmp_path / 'nowhere'}")]:
        bad = subprocess.run([sys.executable, "-m", "tables", "render", "--table", "1", "--results", str(results),
                              flag, value], capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert bad.returncode == 2 and says in bad.stderr, bad.stderr
    wrong = subprocess.run([sys.executable, "-m", "tables", "render", "--table", "1", "--results", str(results),
                            "--profile", "imagenet"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert wrong.returncode == 2 and "are of the smoke profile, not 'imagenet': pass --profile smoke" in wrong.stderr


def test_records_of_another_recipe_are_not_averaged_as_seeds(tmp_path):
    """A 1-epoch and a 3-epoch record of one cell are two measurements, not two seeds of one."""
    c = column_constraint("flops", "330M")
    for seed, top1 in enumerate((0.40, 0.44)):
        _record(tmp_path, "uniform", "channel", c, seed=seed, top1=top1, macs_scaled=325.4e6)
    _record(tmp_path, "uniform", "channel", c, seed=2, top1=0.10, macs_scaled=325.4e6,
            profile_config={"train": {"epochs": 1}})
    view = _view(tmp_path)
    assert _cell(view, "flops", "Channel", "330M", "top1").ours == "42.0 ± 25.4% (n=2) (proxy)"
    assert any("1 record(s) of Channel (uniform) at 330M left out: another recipe" in s for s in view.skipped)


def test_records_of_another_data_set_are_not_seeds_and_the_data_sets_are_named(tmp_path):
    from tables.render import to_latex, to_markdown

    c = column_constraint("flops", "330M")
    tiny = {"path": "/a/tiny", "classes": 16, "base_resolution": 32, "betons": {"train": "0148b8a6aa02ff",
            "val": "e8a98329"}, "split": {"seed": 0, "per_class": 50}}
    for seed, top1 in enumerate((0.40, 0.44)):
        _record(tmp_path, "uniform", "channel", c, seed=seed, top1=top1, macs_scaled=325.4e6,
                dataset={**tiny, "path": f"/moved/{seed}"})  # moved between runs: still one data set
    view = _view(tmp_path)
    assert _cell(view, "flops", "Channel", "330M", "top1").ours == "42.0 ± 25.4% (n=2) (proxy)"
    assert len(view.datasets) == 1 and "16 classes at base resolution 32 px, train.beton 0148b8a6aa02, val.beton " \
        "e8a98329; split seed 0, 50 sub-eval images per class" in view.datasets[0]
    assert "\nData: /moved/0, /moved/1: 16 classes" in to_markdown(view)
    assert "% data: /moved/0, /moved/1: 16 classes" in to_latex(view)
    _record(tmp_path, "uniform", "channel", c, seed=2, top1=0.10, macs_scaled=325.4e6,
            dataset={**tiny, "split": {"seed": 7, "per_class": 10}})
    view = _view(tmp_path)
    assert _cell(view, "flops", "Channel", "330M", "top1").ours == "42.0 ± 25.4% (n=2) (proxy)"
    assert any("1 record(s) of Channel (uniform) at 330M left out: another recipe" in s for s in view.skipped)
