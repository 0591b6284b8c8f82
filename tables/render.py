"""The paper's tables beside ours: every reported cell joined with our run records, with a verdict per cell.

``python -m tables render --table 1 --profile smoke --format md|tex|csv|all``. The reported side is
``tables/reported/paper.csv``; ours is every "cell" record under ``results/<profile>/records`` (``--results``
to read another folder) whose method, variant, family and constraint are the cell's. Verdicts:

* FLOPs (MACs, in the table's convention, printed with the table): *match* when ours lies in the reported
  figure's tolerance (the wider of ``flops_rel`` and half a unit of its last printed digit: "1.1G" covers
  [1.05G, 1.15G)), else *outside*; a searched row (any method but the uniform baselines) also says
  *meets constraint* or *over constraint* against the column's limit, or, for a cell run at another operating
  point (``tables.spec.cell_target``: the FLOPs the paper printed for a baseline, its published rate or
  speed-up), *meets target* or *over target* against that point (a rate: the keep ratio the search
  applied), the header shown beside it for reference. ``target="header"`` renders the records run at the
  headers instead (``--target header``); a cell shows only the records of its own operating point.
* Top-1: compared only for records of the ``imagenet`` profile (*match* within ``acc_points``, else
  *outside*); any other profile's number is shown marked *proxy*, without a verdict.
* Latency: *meets constraint* when our ratio to the same run's reference is at most 1 + ``latency_rel``,
  else *over constraint*; the paper's own ratio is shown beside ours, and absolute milliseconds are shown
  with the device and never compared across devices.
* *not run* (a cell the default run produces has no record yet: not run, or its run failed), *not run
  here* (a GPU-latency cell on a machine without a GPU), *not reported* (the paper has "—", the default run
  does not produce the cell, and we have nothing either).

Several seeds of one cell show as mean ± the half-width of the 95% t-interval of the mean (n seeds); a proxy
top-1 from one seed says "1 seed: not a measurement". A searched cell's FLOPs show the mean over seeds, their
range, and how many seeds meet the column's constraint.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repro.constraint import HEADER, Constraint, Target
from repro.cost.flops import format_macs, reported_tolerance
from repro.results import RecordError, load_records
from repro.stats import t_half_width
from tables.claims import evaluate
from tables.claims import plot as plot_claims
from tables.claims import render as render_claims
from tables.reported import ReportedCell, load_reported
from tables.spec import FAMILY_OF_TABLE, cell_target, column_constraint, load_controls, row_spec, table_cells
from tables.tex import tex as _tex

SUBTABLE_TITLES = {"flops": "Under FLOPs constraints", "gpu_latency": "Under GPU latency constraints",
                   "cpu_latency": "Under CPU latency constraints"}
METRIC_NAMES = {"top1": "Top-1", "flops": "FLOPs", "latency": "Latency", "optimization_time": "Optimization time"}
# which MAC convention the FLOPs verdicts use (see repro/cost/flops.py): the paper's input-image rows only fit
# the scaled convention MACs(224) * (r / 224)^2
CONVENTION = "scaled"
VERDICTS = ("match", "outside", "meets constraint", "over constraint", "meets target", "over target", "proxy",
            "not run", "not run here", "not reported")


@dataclass(frozen=True)
class Tolerances:
    flops_rel: float = 0.02
    acc_points: float = 0.5
    latency_rel: float = 0.0

    def __post_init__(self) -> None:
        for name in ("flops_rel", "acc_points", "latency_rel"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):  # NaN turned every match into "outside"
                raise ValueError(f"tolerance {name}={value!r} must be a finite number of at least 0")

    def describe(self) -> str:
        return (f"FLOPs: the wider of {self.flops_rel:.0%} and half a unit of the printed digit ({CONVENTION} "
                f"MAC convention); top-1: {self.acc_points} points, ImageNet-profile records only; latency: "
                f"ratio to the same run's reference at most {1 + self.latency_rel:g}")


@dataclass
class MetricCell:
    """One number of the paper beside ours."""

    metric: str
    paper: str  # as printed, or "—"
    ours: str  # formatted, or "" when we have nothing
    verdict: str
    paper_value: float | None = None
    ours_value: float | None = None
    n: int = 0
    ours_half: float | None = None  # half-width of the 95% t-interval of ``ours_value`` (n >= 2), for error bars
    # top-1 only: each seed's value (percent), for the claims' paired differences (``tables.claims``)
    by_seed: dict[int, float] = field(default_factory=dict)


@dataclass
class Row:
    table: int
    subtable: str
    group: str
    row: str
    column: str
    method: str
    variant: str
    metrics: dict[str, MetricCell] = field(default_factory=dict)
    planned: bool = False  # one of the cells ``run-table`` runs by default (``tables.spec.table_cells``)
    baseline: bool = False  # a uniform row (``tables/reported/rows.csv``): no constraint verdict of its own
    target: Target = HEADER  # the cell's operating point (``tables.spec.cell_target``)


@dataclass
class TableView:
    table: int
    family: str
    profile: str
    tolerances: Tolerances
    rows: list[Row]
    skipped: list[str]
    # the data sets the shown records were trained and evaluated on, one line each (``describe_dataset``)
    datasets: list[str] = field(default_factory=list)
    # facts about the table from outside the records (the released architectures' MACs beside the reported
    # ones), one line each; the commands fill it (baselines.zoo.table_notes), the renderer only prints it
    notes: list[str] = field(default_factory=list)
    # what a reader needs to know about where a row's numbers come from (``tables/reported/notes.csv``, and
    # the recipe our records of that row used), one line each
    row_notes: list[str] = field(default_factory=list)
    # the records the cells show (their top-1 and FLOPs), for what reads more of them (``tables.claims``)
    records: list[dict] = field(default_factory=list)

    def subtables(self) -> list[str]:
        return list(dict.fromkeys(r.subtable for r in self.rows))

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(VERDICTS, 0)
        for r in self.rows:
            for m in r.metrics.values():
                for v in m.verdict.split("; "):
                    out[v] = out.get(v, 0) + 1
        return out

    def summary(self) -> str:
        c = self.counts()
        return (f"Table {self.table} on {self.profile}: {c['match']} match, {c['outside']} outside tolerance, "
                f"{c['meets constraint']} meet and {c['over constraint']} exceed their constraint, "
                f"{c['meets target']} meet and {c['over target']} miss their operating point, "
                f"{c['proxy']} proxy, {c['not run']} not run, {c['not run here']} not run here, "
                f"{c['not reported']} not reported by the paper or us")


def _records_had_gpu(frame: Any) -> bool:
    """Whether the records were made where a CUDA GPU was: a GPU-latency cell without a record is *not run
    here* when none of them was (decided from the records, not from the machine that renders them); with no
    records at all, nothing ran, and such a cell is *not run*."""
    if frame is None or not len(frame):
        return True
    return any((env or {}).get("cuda_device") for env in frame["environment"])


def _recipe(record: dict) -> str:
    """What makes two records of a cell seeds of one measurement: the resolved profile, less its seeds and
    where the data, loader workers and latency tables were, and the data set (its content, not its folder)."""
    cfg = json.loads(json.dumps(record.get("profile_config") or {}, sort_keys=True, default=str))
    cfg.pop("seeds", None)
    for key in ("path", "workers"):
        (cfg.get("data") or {}).pop(key, None)
    (cfg.get("latency") or {}).pop("tables", None)
    data = {k: v for k, v in (record.get("dataset") or {}).items() if k != "path"}
    return json.dumps({"profile": cfg, "data": data}, sort_keys=True, default=str)


def describe_dataset(dataset: dict, paths: list[str] | None = None) -> str:
    """One line naming a data set: where it was (``paths``: every folder the records name), its classes, its
    files' checksums and its split."""
    betons = dataset.get("betons") or {}
    split = dataset.get("split") or {}
    files = ", ".join(f"{name}.beton {str(sha)[:12]}" for name, sha in sorted(betons.items())) or "no files named"
    where = ", ".join(paths or [str(dataset.get("path", "an unnamed folder"))])
    return (f"{where}: {dataset.get('classes', '?')} classes at base resolution {dataset.get('base_resolution', '?')}"
            f" px, {files}; split seed {split.get('seed', '?')}, {split.get('per_class', '?')} sub-eval images per "
            f"class")


def _datasets(records: list[dict]) -> list[str]:
    """The data sets of ``records``, one line each (a data set moved between runs is one, at both paths)."""
    by_identity: dict[str, tuple[dict, dict[str, None], set[str]]] = {}
    for r in records:
        data = r.get("dataset") or {}
        identity = json.dumps({k: v for k, v in data.items() if k != "path"}, sort_keys=True, default=str)
        entry = by_identity.setdefault(identity, (data, {}, set()))
        entry[1][str(data.get("path", "an unnamed folder"))] = None
        entry[2].add(str(r.get("key")))
    lines = [(describe_dataset(data, list(paths)), len(keys)) for data, paths, keys in by_identity.values()]
    return [line if len(lines) == 1 else f"{line} ({n} record(s))" for line, n in lines]


def _one_recipe(records: list[dict]) -> tuple[list[dict], int]:
    """The records of the recipe most of them share (ties: the newest), and how many others were left out."""
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(_recipe(r), []).append(r)
    if len(groups) <= 1:
        return records, 0
    best = max(groups.values(), key=lambda g: (len(g), max(str(r.get("created")) for r in g)))
    return best, len(records) - len(best)


def _cell_records(frame: Any, family: str) -> list[dict]:
    if frame is None or not len(frame):
        return []
    return [r for r in frame.to_dict("records") if r.get("kind") == "cell" and r.get("family") == family]


def _same_constraint(record: dict, want: dict) -> bool:
    got = record.get("constraint") or {}
    return got.get("kind") == want["kind"] and math.isclose(float(got.get("limit", math.nan)), want["limit"],
                                                            rel_tol=1e-9)


def _mean_ci(values: list[float], digits: int, suffix: str = "") -> str:
    """One value as it is; several as mean ± the half-width of the 95% t-interval of the mean (n)."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}{suffix}"
    return f"{statistics.mean(values):.{digits}f} ± {t_half_width(values):.{digits}f}{suffix} (n={len(values)})"


def _half(values: list[float]) -> float | None:
    return t_half_width(values) if len(values) > 1 else None


def _paper_latency_ratio(reported: list[ReportedCell], cell: ReportedCell) -> float | None:
    """The paper's own latency ratio: this row's ms over the uniform baseline row's in the same column."""
    base = [c for c in reported if (c.table, c.subtable, c.column, c.metric) == (cell.table, cell.subtable,
            cell.column, "latency") and row_spec(c.table, c.subtable, c.group, c.row).baseline]
    if not base or base[0].value is None or cell.value is None:
        return None
    return cell.value / base[0].value


def build_view(table: int, records_dir: Path | None, profile: str, tol: Tolerances = Tolerances(),
               skip_bad: bool = False, gpu: bool | None = None, target: str = "published") -> TableView:
    """Join the paper's cells of ``table`` with the records in ``records_dir`` (may be missing). ``gpu``: whether
    the records' machines had a GPU (None: read from the records). ``target``: show each cell's records at its
    operating point (``"published"``) or at its column's header (``"header"``)."""
    if table not in FAMILY_OF_TABLE:
        raise ValueError(f"table={table} is not one of the paper's tables ({', '.join(map(str, FAMILY_OF_TABLE))})")
    family = FAMILY_OF_TABLE[table]
    frame, skipped = (None, [])
    if records_dir is not None and Path(records_dir).is_dir():
        try:
            frame, skipped = load_records(Path(records_dir), skip_bad=skip_bad)
        except RecordError as e:
            raise RecordError(f"{e} (pass --skip-bad to render the other records)") from e
    gpu = _records_had_gpu(frame) if gpu is None else gpu
    records = _cell_records(frame, family)
    profiles = sorted({str(r.get("profile")) for r in records})
    if records and profile not in profiles:
        raise RecordError(f"the {family} records in {records_dir} are of the {', '.join(profiles)} profile, not "
                          f"{profile!r}: pass --profile {profiles[0]}")
    records = [r for r in records if r.get("profile") == profile]
    reported = [c for c in load_reported() if c.table == table]
    planned = {(c.subtable, c.group, c.row, c.column) for c in table_cells(table, target=target)}
    planned_rows = {key[:3] for key in planned}  # a row's optimization time: planned with its cells
    rows: dict[tuple[str, str, str, str], Row] = {}
    shown: dict[str, dict] = {}  # the records the cells show, by key
    for c in reported:
        key = (c.subtable, c.group, c.row, c.column)
        if key not in rows:
            spec = row_spec(table, c.subtable, c.group, c.row)
            rows[key] = Row(table, c.subtable, c.group, c.row, c.column, spec.method, spec.variant,
                            baseline=spec.baseline, planned=key in planned or (c.metric == "optimization_time"
                                                       and key[:3] in planned_rows),
                            target=cell_target(table, c.subtable, c.row, c.column, target))
        row = rows[key]
        if c.metric == "optimization_time":  # the row's whole cost: every record of its sub-table
            want = {"kind": c.subtable, "limit": math.nan}
            mine = [r for r in records if r["method"] == row.method and r["variant"] == row.variant
                    and (r.get("constraint") or {}).get("kind") == c.subtable]
        else:
            want = column_constraint(c.subtable, c.column).to_dict()
            mine = [r for r in records if r["method"] == row.method and r["variant"] == row.variant
                    and _same_constraint(r, want) and row.target.is_of(r.get("target"))]
        mine, others = _one_recipe(mine)
        if others and c.metric != "optimization_time":
            note = (f"{others} record(s) of {row.row} ({row.method}) at {row.column} left out: another recipe than "
                    f"the {len(mine)} shown (records of one recipe are seeds of one measurement)")
            if note not in skipped:
                skipped.append(note)
        row.metrics[c.metric] = _metric(c, row, mine, want, tol, gpu, reported)
        if c.metric != "optimization_time":
            shown.update((str(r.get("key")), r) for r in mine)
    # the control rows the paper lacks (tables/controls.csv), where the records have any of them
    for control in load_controls():
        ran = [r for r in records if (r["method"], r["variant"]) == (control.method, control.variant)]
        if control.table != table or not ran:
            continue
        for column in control.columns:
            row = Row(table, control.subtable, control.group, control.row, column, control.method, control.variant,
                      planned=True)
            want = column_constraint(control.subtable, column).to_dict()
            mine, _ = _one_recipe([r for r in ran if _same_constraint(r, want) and row.target.is_of(r.get("target"))])
            for metric, unit in (("top1", "percent"), ("flops", "MACs")):
                c = ReportedCell(table, control.subtable, control.group, control.row, column, metric, "—", unit)
                row.metrics[metric] = _metric(c, row, mine, want, tol, gpu, reported)
            shown.update((str(r.get("key")), r) for r in mine)
            rows[(control.subtable, control.group, control.row, column)] = row
    return TableView(table, family, profile, tol, list(rows.values()), skipped,
                     datasets=_datasets(list(shown.values())), row_notes=_row_notes(table, list(shown.values())),
                     records=list(shown.values()))


NOTES_CSV = Path(__file__).parent / "reported" / "notes.csv"


def _row_notes(table: int, shown: list[dict]) -> list[str]:
    """The notes of ``tables/reported/notes.csv`` for ``table``, each followed by the recipe our shown records of
    that row trained with (from their resolved profile)."""
    out = []
    with open(NOTES_CSV, newline="", encoding="utf-8") as f:
        for n in csv.DictReader(f):
            if int(n["table"]) != table:
                continue
            spec = row_spec(table, "flops", n["group"], n["row"])
            mine = [r for r in shown if (r["method"], r["variant"]) == (spec.method, spec.variant)]
            recipes = sorted({_recipe_phrase(r) for r in mine})
            ours = (f"ours retrain it with the {'; '.join(recipes)}" if recipes
                    else "ours has no record of it here")
            out.append(f"{n['group']} / {n['row']}: {n['note']}; {ours}.")
    return out


def _recipe_phrase(record: dict) -> str:
    """A record's training recipe in one phrase: its profile's family recipe, as resolved when it ran."""
    cfg = record.get("profile_config") or {}
    train = {**(cfg.get("train") or {}), **((cfg.get("train_by_family") or {}).get(record.get("family")) or {})}
    if not train:
        return f"{record.get('profile')} profile's recipe"
    return (f"{record.get('profile')} profile's recipe (SGD, {train.get('epochs')} epochs, lr {train.get('lr')} per "
            f"{train.get('lr_reference_batch')} images, {train.get('schedule')} schedule, label smoothing "
            f"{train.get('label_smoothing')})")


def _metric(c: ReportedCell, row: Row, mine: list[dict], constraint: dict, tol: Tolerances, gpu: bool,
            reported: list[ReportedCell]) -> MetricCell:
    paper = c.reported
    if c.metric == "top1":
        values = [100 * r["top1"] for r in mine if r.get("top1") is not None]
        if not values:
            return MetricCell("top1", paper, "", _missing(c, row, gpu), c.value)
        imagenet = all(r.get("profile") == "imagenet" for r in mine)
        mean = statistics.mean(values)
        if not imagenet:
            verdict = "proxy"
        elif c.value is None:
            verdict = "not reported"
        else:
            verdict = "match" if abs(mean - c.value) <= tol.acc_points + 1e-9 else "outside"
        text = _mean_ci(values, 1, "%")
        if not imagenet:
            text += " (proxy; 1 seed: not a measurement)" if len(values) == 1 else " (proxy)"
        by_seed = {int(r["seed"]): 100 * float(r["top1"]) for r in mine if r.get("top1") is not None}
        return MetricCell("top1", paper, text, verdict, c.value, mean, len(values), _half(values), by_seed)
    if c.metric == "flops":
        values = [float(r["macs_scaled"] if CONVENTION == "scaled" else r["macs"]) for r in mine
                  if r.get("macs") is not None]
        if not values:
            return MetricCell("flops", paper, "", _missing(c, row, gpu), c.value)
        ours = statistics.mean(values)  # one architecture per cell and seed; seeds may differ in searched rows
        verdicts = []
        if c.value is None:
            verdicts.append("not reported")
        else:
            lo, hi = reported_tolerance(c.reported, tol.flops_rel)
            verdicts.append("match" if lo <= ours < hi else "outside")
        meeting, goal = _meeting(row, mine, values, constraint)
        if not row.baseline:
            if row.target.is_header:
                verdicts.append("meets constraint" if meeting == len(values) else "over constraint")
            else:
                verdicts.append("meets target" if meeting == len(values) else "over target")
        if len(values) == 1:
            text = format_macs(ours)
        else:  # seeds may end in other architectures: their spread, and how many meet the column's limit
            text = f"{format_macs(ours)} (mean; {format_macs(min(values))}–{format_macs(max(values))}, n={len(values)}"
            text += ")" if row.baseline else f"; {meeting}/{len(values)} meet the {goal})"
        if not row.target.is_header:
            text += f" [target {row.target.label()}; header {row.column}]"
        return MetricCell("flops", paper, text, "; ".join(verdicts), c.value, ours, len(values), _half(values))
    if c.metric == "optimization_time":
        seconds = [(r.get("search_seconds") or 0.0) + (r.get("retrain_seconds") or 0.0) for r in mine]
        if not mine:
            return MetricCell("optimization_time", paper, "", _missing(c, row, gpu), c.value)
        devices = sorted({_device(r) for r in mine})
        hours = sum(seconds) / 3600
        return MetricCell("optimization_time", paper, f"{hours:.3g} device-hours on {', '.join(devices)} "
                          f"(search + retrain, {len(mine)} records)", "not reported", c.value, hours, len(mine))
    # latency
    measured = [r["latency"] for r in mine if r.get("latency")]
    paper_ratio = _paper_latency_ratio(reported, c)
    if paper_ratio is not None and not row.baseline:
        paper = f"{paper} ({paper_ratio:.3f}x)"
    if not measured:
        return MetricCell("latency", paper, "", _missing(c, row, gpu), c.value)
    ratios = [float(m["ratio"]) for m in measured]
    devices = sorted({str(m.get("device", "?")) for m in measured})
    ms = [float(m["ms"]) for m in measured]
    verdict = "meets constraint" if max(ratios) <= 1 + tol.latency_rel + 1e-12 else "over constraint"
    text = f"{_mean_ci(ms, 3, ' ms')} on {', '.join(devices)} ({_mean_ci(ratios, 3)}x of reference)"
    return MetricCell("latency", paper, text, verdict, c.value, statistics.mean(ratios), len(measured),
                      _half(ratios))


def _meeting(row: Row, mine: list[dict], values: list[float], constraint: dict) -> tuple[int, str]:
    """How many of a cell's records meet what the cell aimed at, and its name: the column's limit (a header
    target), a FLOPs target's MACs (the exact count of the record's network, as the search met it) or a
    rate (the keep ratio the search applied)."""
    target = row.target
    if target.is_header:
        return sum(v <= constraint["limit"] for v in values), "constraint"
    if target.kind == "rate":
        applied = [((r.get("extra") or {}).get("search") or {}).get("keep_ratio") for r in mine]
        return sum(a is not None and math.isclose(float(a), float(target.value), rel_tol=1e-9) for a in applied), \
            "rate"
    # the MACs the search met, as the record says; else what the target gives
    limits = [float((r.get("target") or {}).get("macs")
                    or target.constraint(Constraint("flops", float(constraint["limit"])), r["family"]).limit)
              for r in mine]
    return sum(float(r["macs"]) <= lim for r, lim in zip(mine, limits, strict=True) if r.get("macs") is not None), \
        "target"


def _device(record: dict) -> str:
    env = record.get("environment") or {}
    world = int(env.get("world_size") or 1)
    name = env.get("cuda_device") or env.get("cpu") or "unknown device"
    return f"{world} x {name}" if world > 1 else str(name)


def _missing(c: ReportedCell, row: Row, gpu: bool) -> str:
    """No record: *not reported* where the paper has "—" and the default run does not produce the cell;
    a cell the default run produces (a reported one, or one of Table 2's CPU-latency sub-table, whose values
    our copy of the paper lacks) is *not run* (or *not run here*) until it has a record."""
    if c.value is None and not row.planned:
        return "not reported"
    if row.subtable == "gpu_latency" and not gpu:
        return "not run here"
    return "not run"


# --- formats ----------------------------------------------------------------------------------------

def _metric_order(view: TableView, subtable: str) -> list[str]:
    ms: dict[str, None] = {}
    for r in view.rows:
        if r.subtable == subtable:
            ms.update(dict.fromkeys(r.metrics))
    return list(ms)


def to_markdown(view: TableView, verdicts: list | None = None) -> str:
    """The table, its notes and the claims section (``verdicts``: the claims already judged, else judged here)."""
    out = [f"## Table {view.table} ({view.family}) on the {view.profile} profile", "",
           f"Tolerances: {view.tolerances.describe()}.",
           "Our top-1 is a proxy unless the records come from the imagenet profile; the paper's is ImageNet.",
           "Several seeds of a cell read mean ± half-width of the 95% t-interval of the mean (n seeds).", ""]
    if view.datasets:
        out += ["Data: " + view.datasets[0] if len(view.datasets) == 1 else "Data (the records are of "
                f"{len(view.datasets)} data sets):"] + [f"- {d}" for d in view.datasets[len(view.datasets) == 1:]]
        out.append("")
    for sub in view.subtables():
        metrics = _metric_order(view, sub)
        out += [f"### {SUBTABLE_TITLES.get(sub, sub)}", ""]
        head = ["group", "row", "column"]
        for m in metrics:
            head += [f"paper {METRIC_NAMES[m]}", f"ours {METRIC_NAMES[m]}", f"{METRIC_NAMES[m]} verdict"]
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in (r for r in view.rows if r.subtable == sub):
            cells = [r.group, r.row, r.column]
            for m in metrics:
                mc = r.metrics.get(m)
                cells += [mc.paper, mc.ours or "—", mc.verdict] if mc else ["", "", ""]
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        out.append("")
    if view.row_notes:
        out += ["Notes:", *[f"- {n}" for n in view.row_notes], ""]
    if view.notes:
        out += ["Released architectures (`python -m baselines.zoo list`):", *[f"- {n}" for n in view.notes], ""]
    if view.skipped:
        out += ["Skipped records:", *[f"- {s}" for s in view.skipped], ""]
    out += [render_claims(view, "md", verdicts), view.summary()]
    return "\n".join(out) + "\n"


def to_csv(view: TableView) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["table", "subtable", "group", "row", "column", "method", "variant", "metric", "paper",
                "paper_value", "ours", "ours_value", "ours_ci95_half", "n", "verdict", "profile", "mac_convention"])
    for r in view.rows:
        for m in r.metrics.values():
            w.writerow([r.table, r.subtable, r.group, r.row, r.column, r.method, r.variant, m.metric, m.paper,
                        "" if m.paper_value is None else m.paper_value, m.ours,
                        "" if m.ours_value is None else m.ours_value, "" if m.ours_half is None else m.ours_half,
                        m.n, m.verdict, view.profile, CONVENTION])
    return buf.getvalue()


_TEX_MARKS = {"match": r"\checkmark", "outside": r"$\times$", "meets constraint": r"$\leq$",
              "over constraint": r"$>$", "meets target": r"$\leq_t$", "over target": r"$>_t$",
              "proxy": "p", "not run": "--", "not run here": "n/a", "not reported": ""}


def _tex_cell(mc: MetricCell | None) -> str:
    if mc is None:
        return ""
    marks = ",".join(m for m in (_TEX_MARKS.get(v, "") for v in mc.verdict.split("; ")) if m)
    ours = _tex(mc.ours) if mc.ours else "--"
    return f"{_tex(mc.paper)} / {ours}" + (f"\\textsuperscript{{{marks}}}" if marks else "")


def to_latex(view: TableView) -> str:
    """booktabs tables, one per sub-table, grouped like the paper (multirow groups); each cell reads
    "paper / ours" with the verdict as a superscript (legend in the caption). Needs booktabs, multirow and
    amssymb (for \\checkmark)."""
    out = [f"% Table {view.table} ({view.family}), {view.profile} profile: generated by python -m tables render",
           "% needs \\usepackage{booktabs,multirow,amssymb}"] + [f"% data: {d}" for d in view.datasets]
    for sub in view.subtables():
        rows = [r for r in view.rows if r.subtable == sub]
        metrics = _metric_order(view, sub)
        columns = list(dict.fromkeys(r.column for r in rows))
        spec = "ll" + "c" * (len(columns) * len(metrics))
        out += ["\\begin{table}[t]", "\\centering", "\\small", f"\\begin{{tabular}}{{{spec}}}", "\\toprule"]
        out.append(" & & " + " & ".join(f"\\multicolumn{{{len(metrics)}}}{{c}}{{{_tex(c)}}}" for c in columns)
                   + " \\\\")
        out.append(" ".join(f"\\cmidrule(lr){{{3 + i * len(metrics)}-{2 + (i + 1) * len(metrics)}}}"
                            for i in range(len(columns))))
        out.append("Group & Row & " + " & ".join(METRIC_NAMES[m] for _ in columns for m in metrics) + " \\\\")
        out.append("\\midrule")
        groups = list(dict.fromkeys(r.group for r in rows))
        for gi, g in enumerate(groups):
            names = list(dict.fromkeys(r.row for r in rows if r.group == g))
            for i, name in enumerate(names):
                first = f"\\multirow{{{len(names)}}}{{*}}{{{_tex(g)}}}" if i == 0 else ""
                by_col = {r.column: r for r in rows if r.group == g and r.row == name}
                cells = [_tex_cell(by_col[c].metrics.get(m) if c in by_col else None) for c in columns
                         for m in metrics]
                out.append(f"{first} & {_tex(name)} & " + " & ".join(cells) + " \\\\")
            if gi + 1 < len(groups):
                out.append("\\midrule")
        out += ["\\bottomrule", "\\end{tabular}",
                f"\\caption{{Table {view.table}, {_tex(SUBTABLE_TITLES.get(sub, sub).lower())}: paper / ours "
                f"({_tex(view.profile)} profile). \\checkmark{{}} match, $\\times$ outside tolerance, $\\leq$ meets "
                f"and $>$ exceeds the constraint, $\\leq_t$ / $>_t$ meets / misses the cell's operating point, p proxy "
                f"(not ImageNet), -- not run, n/a not run here. "
                f"{_tex(view.tolerances.describe())}.}}",
                f"\\label{{tab:repro-{view.table}-{sub.replace('_', '-')}}}", "\\end{table}", ""]
    out += [f"\\noindent\\emph{{Note.}} {_tex(n)}\\par" for n in view.row_notes]
    out += [f"% released architecture: {n}" for n in view.notes]
    return "\n".join(out)


def plot(view: TableView, out_dir: Path) -> list[Path]:
    """Top-1 against MACs (FLOPs sub-table) or against latency (latency sub-tables), one PNG and one PDF per
    sub-table, in two panels: the paper's ImageNet numbers on the left, ours on the right with the 95%
    t-interval over seeds as error bars. A proxy top-1 never shares an axis with the paper's ImageNet top-1;
    on the imagenet profile the two panels share theirs. Returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from repro.atomic import atomic_write_bytes

    imagenet = view.profile == "imagenet"
    written = []
    for sub in view.subtables():
        x_metric = "flops" if sub == "flops" else "latency"
        scale = 1e6 if x_metric == "flops" else 1.0
        fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2), sharey=imagenet)
        rows = [r for r in view.rows if r.subtable == sub]
        for group, name in dict.fromkeys((r.group, r.row) for r in rows):
            pts = [(r.metrics.get(x_metric), r.metrics.get("top1")) for r in rows if (r.group, r.row) == (group, name)]
            paper = sorted((x.paper_value, a.paper_value) for x, a in pts if x and a and x.paper_value is not None
                           and a.paper_value is not None)
            ours = sorted((x.ours_value / scale, a.ours_value, math.nan if a.ours_half is None else a.ours_half,
                           math.nan if x.ours_half is None else x.ours_half / scale)
                          for x, a in pts if x and a and x.ours_value is not None and a.ours_value is not None)
            label = name if name == group else f"{group}: {name}"
            line, = left.plot([p[0] / scale for p in paper], [p[1] for p in paper], "o--", label=label)
            if ours:  # the x error bars: a searched row's seeds end in other architectures
                right.errorbar([p[0] for p in ours], [p[1] for p in ours], yerr=[p[2] for p in ours],
                               xerr=[p[3] for p in ours], fmt="x-", capsize=3, color=line.get_color(), label=label)
        left.set_xlabel("MMACs" if x_metric == "flops" else "latency (ms, the paper's device)")
        right.set_xlabel("MMACs" if x_metric == "flops" else "latency ratio to the same run's reference")
        left.set_ylabel("ImageNet top-1 (%), the paper")
        right.set_ylabel(f"{'ImageNet' if imagenet else 'proxy'} top-1 (%), ours ({view.profile}; bars: 95% "
                         f"t-interval over seeds)", fontsize=8)
        title = SUBTABLE_TITLES.get(sub, sub)
        fig.suptitle(f"Table {view.table}, {title[0].lower()}{title[1:]}: the paper (left) and ours on the "
                     f"{view.profile} profile (right{'' if imagenet else ', a proxy: not ImageNet accuracy'})",
                     fontsize=9)
        right.legend(*left.get_legend_handles_labels(), fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))
        for ax in (left, right):
            ax.grid(alpha=0.3)
        fig.tight_layout()
        for ext in ("png", "pdf"):
            buf = io.BytesIO()
            fig.savefig(buf, format=ext, dpi=150)
            path = out_dir / f"table{view.table}_{sub}.{ext}"
            atomic_write_bytes(path, buf.getvalue())
            written.append(path)
        plt.close(fig)
    return written


def render(view: TableView, fmt: str) -> str:
    return {"md": to_markdown, "tex": to_latex, "csv": to_csv}[fmt](view)


def write_all(view: TableView, out_dir: Path, formats: Iterable[str] = ("md", "tex", "csv"),
              plots: bool = True) -> list[Path]:
    from repro.atomic import atomic_write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    verdicts = evaluate(view)
    for fmt in formats:
        path = out_dir / f"table{view.table}.{fmt}"
        atomic_write_text(path, to_markdown(view, verdicts) if fmt == "md" else render(view, fmt))
        written.append(path)
        path = out_dir / f"claims{view.table}.{fmt}"  # the claims alone, in every format
        atomic_write_text(path, render_claims(view, fmt, verdicts))
        written.append(path)
    if plots:
        written += plot(view, out_dir)
        written += plot_claims(view, verdicts, out_dir)
    return written
