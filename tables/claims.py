"""The paper's claims as tests: does each hold on our records, by how much, and how sure are we.

A claim (``tables/reported/claims.csv``) names two rows of one sub-table, the columns it spans and its kind:
*better* (our row's top-1 above the other's) or *not worse* (at least as good, within ``NOT_WORSE_MARGIN``
points: the paper's ties). Its effect in a column is the paired difference of top-1, ours minus the other's,
seed by seed (the same seed of both cells), in points; per column, the mean and its 95% t-interval; over
several columns, the mean of the per-column means with its standard error from the within-column variances
and Welch-Satterthwaite degrees of freedom (``repro.stats.pooled_effect``). Verdicts:

* *holds*: the interval lies above 0 (*better*) or above -``NOT_WORSE_MARGIN`` (*not worse*);
* *reversed*: the interval lies below 0 (*not worse*: below -``NOT_WORSE_MARGIN``);
* *undecided*: neither;
* *not measured*: fewer than two seeds paired (the line says which cells to run).

Each line gives the paper's own effect beside ours (ImageNet, from ``paper.csv``), the smallest effect the
comparison could have detected (alpha 0.05 two-sided, power 0.8, from the spread we saw), the FLOPs gap between
the two cells, and Holm's adjusted p-value over every measured line of the table: a verdict "survives" when it
stays under 0.05 after that adjustment for the table's many comparisons.

``python -m tables claims --table 1 --profile proxy [--format md|tex|csv|all] [--out DIR]``; the rendered
tables carry the same section under them.
"""

from __future__ import annotations

import csv
import functools
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from repro.cost.flops import format_macs
from repro.stats import Effect, holm, paired_effect, pooled_effect
from tables.reported import load_reported
from tables.spec import column_constraint, load_controls
from tables.tex import tex as _tex

if TYPE_CHECKING:  # the renderer's view, read here, typed loosely: tables.render imports this module
    Row = TableView = Any

CLAIMS_CSV = Path(__file__).parent / "reported" / "claims.csv"
KINDS = {"better": "better", "not_worse": "not worse"}
NOT_WORSE_MARGIN = 0.5  # points of top-1: a "not worse" claim holds when its interval stays above -0.5
ALPHA = 0.05
VERDICTS = ("holds", "reversed", "undecided", "not measured")


@dataclass(frozen=True)
class Claim:
    claim: str  # its id, e.g. T1-channel
    table: int
    subtable: str
    ours_group: str
    ours_row: str
    other_group: str
    other_row: str
    columns: tuple[str, ...]
    kind: str  # better | not_worse
    statement: str

    @property
    def title(self) -> str:
        """The two rows, each with its group: "Proposed method: Channel vs Uniform rescale baseline: Channel"."""
        return f"{self.ours_group}: {self.ours_row} vs {self.other_group}: {self.other_row}"

    def paper_effect(self, column: str) -> float | None:
        """The paper's ours-minus-other top-1 in ``column`` (ImageNet points); None where either is "—"."""
        top1 = {(c.group, c.row): c.value for c in _reported() if (c.table, c.subtable, c.column, c.metric)
                == (self.table, self.subtable, column, "top1")}
        ours, other = top1.get((self.ours_group, self.ours_row)), top1.get((self.other_group, self.other_row))
        return None if ours is None or other is None else round(ours - other, 6)


@functools.cache
def _reported() -> tuple:
    """paper.csv, read once per process (a rendered table asks for the paper's effect of every line)."""
    return tuple(load_reported())


def load_claims(table: int | None = None, path: Path = CLAIMS_CSV) -> list[Claim]:
    """The claims of ``table`` (every table's with None), each checked against ``paper.csv``: its rows and
    columns must be cells of the paper's table."""
    cells = {(c.table, c.subtable, c.group, c.row, c.column) for c in load_reported() if c.metric == "top1"}
    cells |= {(c.table, c.subtable, c.group, c.row, column) for c in load_controls() for column in c.columns}
    out = []
    with open(path, newline="", encoding="utf-8") as f:
        for i, r in enumerate(csv.DictReader(f), start=2):
            c = Claim(r["claim"], int(r["table"]), r["subtable"], r["ours_group"], r["ours_row"], r["other_group"],
                      r["other_row"], tuple(r["columns"].split(";")), r["kind"], r["statement"])
            if c.kind not in KINDS:
                raise ValueError(f"{path}:{i}: claim {c.claim} has kind {c.kind!r}; use one of {', '.join(KINDS)}")
            for group, row in ((c.ours_group, c.ours_row), (c.other_group, c.other_row)):
                for column in c.columns:
                    if (c.table, c.subtable, group, row, column) not in cells:
                        raise ValueError(f"{path}:{i}: claim {c.claim} names {group} / {row} at {column!r}, which "
                                         f"is not a top-1 cell of Table {c.table}'s {c.subtable} sub-table in "
                                         f"paper.csv nor a control row's (tables/controls.csv)")
            if table is None or c.table == table:
                out.append(c)
    return out


@dataclass
class Verdict:
    """One line of a claim: one column, or the claim pooled over its columns (``column`` = "pooled")."""

    claim: Claim
    column: str
    verdict: str
    effect: Effect | None = None
    paper: float | None = None  # the paper's effect (the mean of its per-column effects when pooled)
    flops_gap: float | None = None  # our row's mean MACs minus the other row's (scaled convention)
    missing: list[str] = field(default_factory=list)  # why it is not measured: what to run
    p: float = float("nan")
    holm: float = float("nan")

    @property
    def survives(self) -> bool | None:
        """Whether a holds/reversed verdict stays significant after Holm's adjustment; None for the others."""
        if self.verdict not in ("holds", "reversed"):
            return None
        return self.holm < ALPHA


def judge(effect: Effect, kind: str) -> str:
    """*holds*, *reversed* or *undecided* from the interval; *not measured* without one."""
    if effect.dof < 1 or math.isnan(effect.low):
        return "not measured"
    floor = 0.0 if kind == "better" else -NOT_WORSE_MARGIN  # a "not worse" claim is reversed below its margin
    if effect.low > floor:
        return "holds"
    if effect.high < floor:
        return "reversed"
    return "undecided"


def _p(effect: Effect, kind: str, verdict: str) -> float:
    """The p-value of the test behind the verdict: against 0, or, for a *not worse* claim, against its margin."""
    if verdict == "not measured":
        return float("nan")
    return effect.p_value(-NOT_WORSE_MARGIN if kind == "not_worse" else 0.0)


def _find(view: TableView, subtable: str, group: str, row: str, column: str) -> Row | None:
    for r in view.rows:
        if (r.subtable, r.group, r.row, r.column) == (subtable, group, row, column):
            return r
    return None


def _to_run(view: TableView, row: Row) -> str:
    """The command that runs a row's cells with the seeds a paired interval needs."""
    return (_control_to_run(view, row.subtable, row.group, row.row)
            or f"python -m repro run-table {view.table} --method {row.method} --profile {view.profile} "
               f"--seeds=0,1,2,3,4")


def _control_to_run(view: TableView, subtable: str, group: str, row: str) -> str | None:
    """The command that runs a control row's cells, or None when the row is not a control."""
    for c in load_controls():
        if (c.table, c.subtable, c.group, c.row) == (view.table, subtable, group, row):
            return (f"python -m repro run-table {view.table} --controls --method {c.method} --profile {view.profile} "
                    f"--seeds=0,1,2,3,4")
    return None


def evaluate(view: TableView, claims: list[Claim] | None = None) -> list[Verdict]:
    """Every claim of the view's table judged on its records, Holm's adjustment across all measured lines."""
    claims = load_claims(view.table) if claims is None else claims
    out: list[Verdict] = []
    for claim in claims:
        columns: list[list[float]] = []
        lines: list[Verdict] = []
        for column in claim.columns:
            ours = _find(view, claim.subtable, claim.ours_group, claim.ours_row, column)
            other = _find(view, claim.subtable, claim.other_group, claim.other_row, column)
            line = Verdict(claim, column, "not measured", paper=claim.paper_effect(column))
            missing = [_to_run(view, r) for r in (ours, other) if r is not None and not _seeds(r)]
            for group, name, row in ((claim.ours_group, claim.ours_row, ours), (claim.other_group, claim.other_row,
                                                                                 other)):
                if row is None:  # a control row without records (the view shows those it has), or a planted view
                    missing.append(_control_to_run(view, claim.subtable, group, name)
                                   or f"the view has no {name} at {column}")
            if missing:
                line.missing = missing
                lines.append(line)
                columns.append([])
                continue
            a, b = _seeds(ours), _seeds(other)
            common = sorted(set(a) & set(b))
            diffs = [a[s] - b[s] for s in common]
            columns.append(diffs)
            gaps = [r.metrics["flops"].ours_value for r in (ours, other) if "flops" in r.metrics]
            if len(gaps) == 2 and None not in gaps:
                line.flops_gap = float(gaps[0]) - float(gaps[1])
            if len(common) < 2:
                line.missing = list(dict.fromkeys(_to_run(view, r) for r in (ours, other)))
                line.effect = paired_effect(diffs) if diffs else None
                lines.append(line)
                continue
            line.effect = paired_effect(diffs)
            line.verdict = judge(line.effect, claim.kind)
            line.p = _p(line.effect, claim.kind, line.verdict)
            lines.append(line)
        if len(claim.columns) > 1:
            papers = [claim.paper_effect(c) for c in claim.columns]
            pooled = Verdict(claim, "pooled", "not measured",
                             paper=None if None in papers else sum(papers) / len(papers))
            if any(len(d) < 2 for d in columns):  # what to run is on the columns' lines
                pooled.missing = list(dict.fromkeys(m for line in lines for m in line.missing))
            else:
                pooled.effect = pooled_effect(columns)
                pooled.verdict = judge(pooled.effect, claim.kind)
                pooled.p = _p(pooled.effect, claim.kind, pooled.verdict)
            lines.append(pooled)
        out += lines
    for line, adjusted in zip(out, holm([v.p for v in out]), strict=True):
        line.holm = adjusted
    return out


def _seeds(row: Row) -> dict[int, float]:
    mc = row.metrics.get("top1")
    return dict(mc.by_seed) if mc is not None else {}


PAPER_SEARCH_FRACTION = 0.25  # the paper: the joint search costs about a quarter of training from scratch


@dataclass(frozen=True)
class SearchCost:
    """One proposed cell's search beside its retraining: compute (image-MACs, ``repro.search.proposed``) and
    wall time, with the profile's ``epochs_fraction`` (the share of the retraining's epochs the search runs)."""

    variant: str
    column: str
    seed: int
    epochs_fraction: float | None
    macs_ratio: float | None
    seconds_ratio: float | None
    step_slowdown: float | None = None  # the weight steps' seconds per image-MAC over the retraining's
    score_share: float | None = None    # the scores' share of the search's seconds


def search_costs(view: TableView) -> list[SearchCost]:
    """The search cost of every proposed cell the view shows, in the table's order and then by seed."""
    out = []
    for rec in view.records:
        if rec.get("method") != "proposed":
            continue
        search = (rec.get("extra") or {}).get("search") or {}
        compute = search.get("compute") or {}
        fraction = compute.get("epochs_fraction", (search.get("config") or {}).get("epochs_fraction"))
        seconds, retrain = rec.get("search_seconds"), rec.get("retrain_seconds")
        kind, limit = (rec.get("constraint") or {}).get("kind"), (rec.get("constraint") or {}).get("limit")
        row = next((r for r in view.rows if (r.method, r.variant, r.subtable) == ("proposed", rec.get("variant"), kind)
                    and limit is not None and math.isclose(column_constraint(r.subtable, r.column).limit,
                                                           float(limit), rel_tol=1e-9)), None)
        order = view.rows.index(row) if row else len(view.rows)
        split = search.get("seconds_split") or {}
        steps, step_macs, retrain_macs = (split.get("weight_steps"), compute.get("weight_step_image_macs"),
                                          compute.get("retrain_image_macs"))
        slowdown = ((steps / step_macs) / (retrain / retrain_macs)
                    if steps and step_macs and retrain and retrain_macs else None)
        share = split["scores"] / seconds if split.get("scores") is not None and seconds else None
        out.append((order, SearchCost(row.row if row else str(rec.get("variant")), row.column if row else str(limit),
                                      int(rec.get("seed", 0)), fraction, compute.get("ratio"),
                                      seconds / retrain if seconds is not None and retrain else None,
                                      slowdown, share)))
    return [c for _, c in sorted(out, key=lambda oc: (oc[0], oc[1].seed))]  # the table's order, then the seed


# --- formats ----------------------------------------------------------------------------------------

HEAD = ["claim", "column", "n", "ours − other, points [95% CI]", "paper (ImageNet)", "detectable", "FLOPs gap",
        "verdict", "Holm p", "survives"]


def _signed(x: float | None, digits: int = 1) -> str:
    return "—" if x is None or math.isnan(x) else f"{x:+.{digits}f}"


def _cells(v: Verdict) -> list[str]:
    e = v.effect
    if e is None:
        effect, n, detectable = "—", "0", "—"
    elif math.isnan(e.low):
        effect, n, detectable = f"{e.mean:+.1f} (1 seed: no interval)", str(e.n), "—"
    else:
        effect, n, detectable = f"{e.mean:+.1f} [{e.low:+.1f}, {e.high:+.1f}]", str(e.n), f"{e.detectable:.1f}"
    gap = "—" if v.flops_gap is None else ("+" if v.flops_gap >= 0 else "−") + format_macs(abs(v.flops_gap))
    survives = {True: "yes", False: "no", None: "—"}[v.survives]
    column = f"pooled ({len(v.claim.columns)} columns)" if v.column == "pooled" else v.column
    holm_p = "—" if math.isnan(v.holm) else f"{v.holm:.3g}"
    return [f"{v.claim.claim} ({KINDS[v.claim.kind]})", column, n, effect, _signed(v.paper), detectable, gap,
            v.verdict, holm_p, survives]


def summary(verdicts: list[Verdict]) -> str:
    counts = dict.fromkeys(VERDICTS, 0)
    for v in verdicts:
        counts[v.verdict] += 1
    surviving = sum(bool(v.survives) for v in verdicts)
    claims = len(dict.fromkeys(v.claim.claim for v in verdicts))
    return (f"{len(verdicts)} lines of {claims} claims: {counts['holds']} hold, {counts['reversed']} reversed, "
            f"{counts['undecided']} undecided, {counts['not measured']} not measured; {surviving} of the decided "
            f"survive Holm's adjustment")


def to_markdown(view: TableView, verdicts: list[Verdict]) -> str:
    data = ([f"Data: {view.datasets[0]}", ""] if len(view.datasets) == 1 else
            ["Data (the records are of several data sets):", *[f"- {d}" for d in view.datasets], ""]
            if view.datasets else [])
    out = [f"### The paper's claims, Table {view.table} on the {view.profile} profile", "", *data,
           "Effect: our row's top-1 minus the other row's, paired by seed in the same column, in points; mean and "
           "95% t-interval (pooled: the mean of the column means, Welch-Satterthwaite degrees of freedom). "
           f"*holds*: the interval above 0 (*not worse*: above -{NOT_WORSE_MARGIN}); *reversed*: below 0 (*not "
           f"worse*: below -{NOT_WORSE_MARGIN}). Detectable: the "
           "smallest effect this comparison finds with power 0.8 at alpha 0.05. FLOPs gap: our cell's mean MACs "
           "minus the other's. Holm p: adjusted over every measured line below."
           + ("" if view.profile == "imagenet" else f" Ours are {view.profile}-profile proxy accuracies; the "
              "paper's effects are ImageNet's."), "",
           "| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    for v in verdicts:
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in _cells(v)) + " |")
    out += ["", "The claims:"]
    out += [f"- {c.claim}: {c.title}; {c.statement}." for c in dict.fromkeys(v.claim for v in verdicts)]
    to_run = list(dict.fromkeys(m for v in verdicts for m in v.missing))
    if to_run:
        out += ["", "To measure the claims not measured (two or more seeds of both rows of each):"]
        out += [f"- `{m}`" if m.startswith("python ") else f"- {m}" for m in to_run]
    ks = sorted({len(((r.get("extra") or {}).get("search") or {}).get("candidates") or [])
                 for r in view.records if r.get("method") == "random"})
    if ks:
        out += ["", f"The random control (`baselines/random_search.py`) drew k = {', '.join(map(str, ks))} "
                "architecture(s) of the proposed space per cell and seed, at equal FLOPs, trained each with the "
                "cell's recipe and kept the best on sub-eval (`methods.random.candidates`)."]
    costs = search_costs(view)
    if costs:
        out += ["", f"The search's cost against retraining the network it found from scratch (the paper: about "
                f"{PAPER_SEARCH_FRACTION:g}): compute in image-MACs at ImageNet geometry (a training step counts "
                "three forward passes, a score one) and wall time, per proposed cell and seed, with the share of "
                "the retraining's epochs the search ran (`methods.proposed.epochs_fraction`). Where the time goes: "
                "the search's weight steps' seconds per image-MAC over the retraining's (above 1: its steps are slower "
                "per MAC than the retraining's; the shared network's slicing, the resizing of each batch to the "
                "sampled resolution and the shapes changing every step are not told apart), and the scores' share "
                "of the search's seconds.", "",
                "| row | column | seed | epochs fraction | compute ratio | time ratio | weight steps' time per MAC "
                "÷ retraining's | scores' share of the time |", "|---|---|---|---|---|---|---|---|"]
        num = (lambda x: "—" if x is None else f"{x:.3g}")  # noqa: E731
        for c in costs:
            out.append(f"| {c.variant} | {c.column} | {c.seed} | {num(c.epochs_fraction)} | "
                       f"{num(c.macs_ratio) if c.macs_ratio is not None else '— (searched before it was counted)'} "
                       f"| {num(c.seconds_ratio)} | {num(c.step_slowdown)} | "
                       f"{'—' if c.score_share is None else f'{100 * c.score_share:.0f}%'} |")
    out += ["", f"Claims: {summary(verdicts)}."]
    return "\n".join(out) + "\n"


def to_csv(view: TableView, verdicts: list[Verdict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["table", "profile", "claim", "kind", "ours_row", "other_row", "column", "n", "dof", "effect",
                "low", "high", "detectable", "paper_effect", "flops_gap_macs", "verdict", "p", "holm_p", "survives",
                "missing"])
    for v in verdicts:
        e = v.effect
        num = (lambda x: "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.6g}")  # noqa: E731
        w.writerow([view.table, view.profile, v.claim.claim, v.claim.kind, v.claim.ours_row, v.claim.other_row,
                    v.column, e.n if e else 0, e.dof if e else "", num(e.mean if e else None),
                    num(e.low if e else None), num(e.high if e else None), num(e.detectable if e else None),
                    num(v.paper), num(v.flops_gap), v.verdict, num(v.p), num(v.holm),
                    {True: "yes", False: "no", None: ""}[v.survives], "; ".join(v.missing)])
    return buf.getvalue()


def to_latex(view: TableView, verdicts: list[Verdict]) -> str:
    lines = [r"\begin{tabular}{llrllllll}", r"\toprule",
             " & ".join(_tex(h) for h in HEAD[:-1]) + r" \\", r"\midrule"]
    for v in verdicts:
        lines.append(" & ".join(_tex(c) for c in _cells(v)[:-1]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)


def plot(view: TableView, verdicts: list[Verdict], out_dir: Path) -> list[Path]:
    """One figure per table, ``claims<N>.{png,pdf}``: a line per claim and column (pooled lines bold), the
    paper's ImageNet effect on the left and ours with its 95% interval on the right. A proxy effect never
    shares an axis with ImageNet's: the panels share theirs only on the imagenet profile. Returns the files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from repro.atomic import atomic_write_bytes

    imagenet = view.profile == "imagenet"
    labels = [f"{v.claim.claim} {v.column}" for v in verdicts]
    ys = list(range(len(verdicts)))[::-1]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 0.28 * len(verdicts) + 1.6), sharey=True,
                                      sharex=imagenet)
    colors = {"holds": "tab:green", "reversed": "tab:red", "undecided": "tab:gray", "not measured": "white"}
    for y, v in zip(ys, verdicts, strict=True):
        weight = 2.0 if v.column == "pooled" else 1.0
        if v.paper is not None:
            left.plot([v.paper], [y], "o", color="black", markersize=3 + weight)
        e = v.effect
        if e is not None and not math.isnan(e.low):
            right.errorbar([e.mean], [y], xerr=[[e.mean - e.low], [e.high - e.mean]], fmt="s", capsize=3,
                           color=colors[v.verdict], ecolor="black", elinewidth=weight, markeredgecolor="black")
        elif e is not None:
            right.plot([e.mean], [y], "x", color="black")  # one seed: a draw, no interval
    for ax in (left, right):
        ax.axvline(0, color="black", linewidth=0.8)
        ax.grid(alpha=0.3, axis="x")
    right.axvline(-NOT_WORSE_MARGIN, color="black", linewidth=0.6, linestyle=":")
    left.set_yticks(ys, labels, fontsize=6)
    left.set_xlabel("the paper's effect, ImageNet top-1 points")
    right.set_xlabel(f"ours, {'ImageNet' if imagenet else 'proxy'} top-1 points ({view.profile} profile)\n"
                     f"95% t-intervals: green holds, red reversed, grey undecided; x: one seed; dotted: "
                     f"-{NOT_WORSE_MARGIN} (not worse)", fontsize=7)
    fig.suptitle(f"Table {view.table}: the paper's claims, ours minus the other row, paired by seed "
                 f"({summary(verdicts)})", fontsize=8)
    fig.tight_layout()
    written = []
    for ext in ("png", "pdf"):
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, dpi=150)
        path = Path(out_dir) / f"claims{view.table}.{ext}"
        atomic_write_bytes(path, buf.getvalue())
        written.append(path)
    plt.close(fig)
    return written


def render(view: TableView, fmt: str, verdicts: list[Verdict] | None = None) -> str:
    verdicts = evaluate(view) if verdicts is None else verdicts
    return {"md": to_markdown, "tex": to_latex, "csv": to_csv}[fmt](view, verdicts)


__all__ = ["CLAIMS_CSV", "Claim", "NOT_WORSE_MARGIN", "Verdict", "evaluate", "judge", "load_claims", "plot",
           "render", "summary"]
