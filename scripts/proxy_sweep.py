"""The proxy protocol's sweep: uniform *Channel* networks of each family (the reference cells: 0.25x, 0.5x and
1.0x at full resolution, 1.0x at half) trained from scratch on the embedded set at a given size with a given
recipe, several seeds each, every run its own record. A rerun skips the runs already recorded, so an
interrupted sweep continues where it stopped; ``--report`` rewrites the summary from every record.

    python scripts/proxy_sweep.py --label ep6-ema --train-per-class 400 --val-per-class 640 \\
        --set train.epochs=6 --set train.ema_decay=0.99 --families mobilenet_v1 --seeds 0 1 2 --jobs 2
    python scripts/proxy_sweep.py --report docs/proxy_sweep     # docs/proxy_sweep.md and .json
    python scripts/proxy_sweep.py --restore docs/proxy_sweep_evidence.json   # the committed runs, on a fresh clone

The recipe is ``--profile``'s ``train`` (smoke's by default: its per-family changes are not applied) with
each ``--set`` applied to every family and each ``--family-set family:key=value`` to one. A run is named by
the hash of everything that determines it (family, width, resolution, seed, recipe, data size, threads),
so two labels with the same settings share runs. ``--jobs N`` runs N at a time, each pinned to its own
``--threads`` cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import signal
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data_prep.tiny import DEFAULT_VARIANT, variant  # noqa: E402 - numpy and tqdm; after the path is set

FAMILIES = ("mobilenet_v1", "mobilenet_v2", "resnet50")
CELLS = ((0.25, 224), (0.5, 224), (1.0, 224), (1.0, 112))  # the reference cells: (width, ImageNet-scale px)


SUB_EVAL_PER_CLASS = 50  # the paper's split of the training images (unused by the sweep's training, kept as made)


def data_folder(results: Path, train_per_class: int, val_per_class: int,
                sub_eval_per_class: int = SUB_EVAL_PER_CLASS, kind: str = DEFAULT_VARIANT) -> Path:
    tail = "" if sub_eval_per_class == SUB_EVAL_PER_CLASS else f"-se{sub_eval_per_class}"
    return results / "data" / f"{kind}-{train_per_class}-{val_per_class}{tail}"


def prepare(results: Path, train_per_class: int, val_per_class: int,
            sub_eval_per_class: int = SUB_EVAL_PER_CLASS, kind: str = DEFAULT_VARIANT) -> Path:
    from data_prep.tiny import prepare_tiny

    folder = data_folder(results, train_per_class, val_per_class, sub_eval_per_class, kind)
    prepare_tiny(folder, 0, sub_eval_per_class, quiet=True, log=print, train_per_class=train_per_class,
                 val_per_class=val_per_class, kind=kind)
    return folder


def _prepare_in_child(*args) -> None:
    """``prepare`` in its own process, ended with ``os._exit``: FFCV's writer loads numba's TBB pool, whose
    unloading at a normal exit can deadlock (seen under pytest: the data made, the process never ending)."""
    code = 0
    try:
        prepare(*args)
    except BaseException:  # noqa: BLE001 - printed, and the exit code says it failed
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_key(spec: dict) -> str:
    from repro.keys import input_key

    return input_key(**{k: v for k, v in spec.items() if k != "label"})


def _pin(queue) -> None:
    cores = queue.get()
    os.sched_setaffinity(0, cores)
    import torch

    torch.set_num_threads(len(cores))


def train(spec: dict, folder: Path, log=print):
    """Train the reference network ``spec`` names on the data set in ``folder``, as every run of the sweep is
    trained; return (model, fit's result, the TrainData, the recipe, the architecture, the manifest, wall
    seconds)."""
    from repro.config import from_mapping
    from repro.data.manifest import read_manifest
    from repro.profiles import TrainConfig
    from repro.reference import RULES
    from repro.train.trainer import TrainData, fit, initial_model

    manifest = read_manifest(folder)
    recipe = from_mapping(TrainConfig, spec["recipe"], "train")
    data = TrainData(folder / "train.beton", folder / "val.beton", len(manifest["classes"]),
                     int(manifest["base_resolution"]), decode="base")
    arch = RULES[spec["family"]].arch(spec["family"], spec["width"], spec["resolution"])
    arch = dataclasses.replace(arch, num_classes=data.num_classes)
    model = initial_model(arch, spec["seed"])
    t0 = time.perf_counter()
    result = fit(model, data, recipe, spec["seed"], arch.resolution, log=log)
    return model, result, data, recipe, arch, manifest, time.perf_counter() - t0


def prepare_in_child(results: Path, train_per_class: int, val_per_class: int, sub_eval_per_class: int,
                     kind: str) -> Path:
    """``prepare`` in a spawned child (``_prepare_in_child``); the data folder, or SystemExit if it failed."""
    import multiprocessing as mp

    maker = mp.get_context("spawn").Process(target=_prepare_in_child, args=(
        results, train_per_class, val_per_class, sub_eval_per_class, kind))
    maker.start()
    maker.join()
    if maker.exitcode != 0:
        raise SystemExit(f"making the data set failed (exit code {maker.exitcode}): its error is above")
    return data_folder(results, train_per_class, val_per_class, sub_eval_per_class, kind)


def one_run(spec: dict, folder: str, out: str) -> dict:
    """Train one reference network as ``spec`` says; its record (written atomically) is the return value."""
    import torch

    from repro.atomic import atomic_write_text

    lines: list[str] = []  # fit's log (the loading plan, each epoch's training loss) goes into the record
    _model, result, _data, _recipe, _arch, manifest, seconds = train(spec, Path(folder), log=lines.append)
    record = {**spec, "key": run_key(spec), "top1": result["top1"], "top5": result["top5"],
              "train_loss": result["train_loss"], "pixels": result["resolution"],
              "train_seconds": result["train_seconds"], "wall_seconds": seconds,
              "images_per_second": result["images_per_second"], "val_images": sum(manifest["counts"]["val"].values()),
              "torch_threads": torch.get_num_threads(), "cpu": _cpu(), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "log": lines}
    atomic_write_text(Path(out) / f"{record['key']}.json", json.dumps(record, indent=1))
    return record


def _stop(signum, _frame) -> None:
    raise SystemExit(128 + signum)


def _cpu() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def recipe_for(profile_name: str, family: str, sets: list[str], family_sets: list[str]) -> dict:
    from repro.config import apply_overrides, from_mapping, to_mapping
    from repro.profiles import TrainConfig, load_profile

    base = {"train": to_mapping(load_profile(profile_name).train)}
    mine = [s.split(":", 1)[1] for s in family_sets if s.split(":", 1)[0] == family]
    merged = apply_overrides(base, [*sets, *mine])
    return to_mapping(from_mapping(TrainConfig, merged["train"], "train"))


def report(out: Path, records: list[dict]) -> None:
    from repro.atomic import atomic_write_text
    from repro.stats import detectable_difference, t_half_width

    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["label"], r["family"], r["threads"], r["width"], r["resolution"]), []).append(r)
    lines = ["| label | family | threads | width | px (tiny / ImageNet) | top-1 % mean ± 95% CI (n) | sd "
             "| seeds' top-1 % | val SE | train s | img/s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (label, family, threads, width, res), runs in sorted(groups.items()):
        runs.sort(key=lambda r: r["seed"])
        acc = [100 * r["top1"] for r in runs]
        mean = statistics.mean(acc)
        sd = statistics.stdev(acc) if len(acc) > 1 else float("nan")
        n_val = runs[0]["val_images"]
        se_val = 100 * math.sqrt(mean / 100 * (1 - mean / 100) / n_val)
        lines.append(f"| {label} | {family} | {threads} | {width}x | {runs[0]['pixels']} / {res} | {mean:.1f}"
                     f"{f' ± {t_half_width(acc):.1f}' if len(acc) > 1 else ''} ({len(acc)}) | "
                     f"{'—' if len(acc) < 2 else f'{sd:.2f}'} | {', '.join(f'{a:.1f}' for a in acc)} | "
                     f"{se_val:.2f} | {statistics.mean(r['train_seconds'] for r in runs):.0f} | "
                     f"{statistics.mean(r['images_per_second'] for r in runs):.0f} |")
    pooled = ["", "Pooled within-cell sd over seeds (reference cells with n >= 2), and the smallest difference "
              "between two cells' means that a two-sided t-test (5%) finds with 80% power at that sd and seed count:",
              "", "| label | family | threads | pooled sd | max cell sd | cells | seeds per cell "
              "| detectable difference |",
              "|---|---|---|---|---|---|---|---|"]
    by: dict[tuple, list[list[float]]] = {}
    for (label, family, threads, _w, _r), runs in groups.items():
        if len(runs) > 1:
            by.setdefault((label, family, threads), []).append([100 * r["top1"] for r in runs])
    for (label, family, threads), cells in sorted(by.items()):
        dof = sum(len(c) - 1 for c in cells)
        pooled_sd = math.sqrt(sum((len(c) - 1) * statistics.variance(c) for c in cells) / dof)
        seeds = min(len(c) for c in cells)
        pooled.append(f"| {label} | {family} | {threads} | {pooled_sd:.2f} | "
                      f"{max(statistics.stdev(c) for c in cells):.2f} | {len(cells)} | {seeds} | "
                      f"{detectable_difference(pooled_sd, seeds):.1f} |")
    text = "\n".join(lines + pooled + _threads_rows(groups))
    atomic_write_text(out.with_suffix(".md"), text + "\n")
    atomic_write_text(out.with_suffix(".json"), json.dumps(sorted(records, key=lambda r: (
        r["label"], r["family"], r["threads"], r["width"], -r["resolution"], r["seed"])), indent=1))
    print(text)


THREADS_TOLERANCE = 1.0  # points: the bound on how far another reduction order may move a cell's mean


def _threads_rows(groups: dict[tuple, list[dict]]) -> list[str]:
    """The same label, family and cell run at two thread counts (another reduction order, as another CPU
    gives): the difference of the seed means with its 95% Welch interval, against the 1-point tolerance."""
    from repro.stats import welch_interval

    by_cell: dict[tuple, dict[int, list[float]]] = {}
    for (label, family, threads, width, res), runs in groups.items():
        by_cell.setdefault((label, family, width, res), {})[threads] = [100 * r["top1"] for r in runs]
    rows = []
    for (label, family, width, res), counts in sorted(by_cell.items()):
        if len(counts) < 2:
            continue
        base = min(counts)
        for other in sorted(counts)[1:]:
            a, b = counts[base], counts[other]
            diff, low, high = welch_interval(a, b)
            ci = "—" if math.isnan(low) else f"[{low:+.1f}, {high:+.1f}]"
            rows.append(f"| {label} | {family} | {width}x@{res} | {statistics.mean(a):.1f} ({len(a)}) | "
                        f"{other}: {statistics.mean(b):.1f} ({len(b)}) | {diff:+.2f} | {ci} | "
                        f"{'yes' if abs(diff) <= THREADS_TOLERANCE else 'no'} |")
    if not rows:
        return []
    return ["", f"The same runs at another thread count (criterion: seed means within {THREADS_TOLERANCE:g} point; "
            "the interval says how well the seeds pin the difference down):", "",
            "| label | family | cell | fewest threads: mean (n) | threads: mean (n) | difference | 95% Welch "
            f"interval | within {THREADS_TOLERANCE:g} point |", "|---|---|---|---|---|---|---|---|", *rows]


def restore(evidence: Path, out: Path) -> int:
    """Write the records of an evidence file (``--report``'s JSON) back as run records, skipping those already
    there: a fresh clone or a lost results folder gets the committed sweep back without rerunning it."""
    from repro.atomic import atomic_write_text

    try:
        records = json.loads(evidence.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SystemExit(f"--restore {evidence}: cannot read it as the sweep's evidence JSON ({e})") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) and "key" in r for r in records):
        raise SystemExit(f"--restore {evidence}: expected a list of run records, each with a 'key' (the JSON "
                         "that --report writes, e.g. docs/proxy_sweep_evidence.json)")
    written = 0
    for r in records:
        path = out / f"{r['key']}.json"
        if not path.exists():
            atomic_write_text(path, json.dumps(r, indent=1))
            written += 1
    return written


def specs(a: argparse.Namespace, cells) -> list[dict]:
    """Every run the arguments ask for, in order: family, then cell, then seed."""
    out = []
    for family in a.families:
        recipe = recipe_for(a.profile, family, a.sets, a.family_sets)
        for width, res in cells:
            for seed in a.seeds:
                out.append({"label": a.label, "family": family, "width": width, "resolution": res, "seed": seed,
                            "recipe": recipe, "train_per_class": a.train_per_class,
                            "val_per_class": a.val_per_class, "threads": a.threads,
                            **({} if a.sub_eval_per_class == SUB_EVAL_PER_CLASS
                               else {"sub_eval_per_class": a.sub_eval_per_class}),
                            **({} if a.variant == DEFAULT_VARIANT else {"variant": a.variant}),
                            # 3: an EMA run's batch-norm statistics re-estimated (its generator-2 records are not)
                            "generator": 3 if recipe["ema_decay"] > 0 else 2})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--label", help="a name for this recipe and data size in the report")
    p.add_argument("--results", type=Path, default=ROOT / "results")
    p.add_argument("--profile", default="smoke")
    p.add_argument("--set", dest="sets", action="append", default=[], help="train.key=value, every family")
    p.add_argument("--family-set", dest="family_sets", action="append", default=[],
                   help="family:train.key=value, one family")
    p.add_argument("--families", nargs="+", default=list(FAMILIES))
    p.add_argument("--cells", nargs="+", default=None, help="width@px pairs, e.g. 0.25@224 1.0@112 (default: "
                   "the four reference cells)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--train-per-class", type=int, default=400)
    p.add_argument("--val-per-class", type=int, default=640)
    p.add_argument("--variant", default=DEFAULT_VARIANT, help="the embedded set's version (data_prep/tiny.py "
                   "VARIANTS; default %(default)s)")
    p.add_argument("--sub-eval-per-class", type=int, default=SUB_EVAL_PER_CLASS,
                   help="the split's sub-eval images per class (the sweep trains on all the training images)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (and cores) per run")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time")
    p.add_argument("--list", action="store_true", help="print the runs not yet recorded and stop")
    p.add_argument("--report", type=Path, help="write <path>.md and <path>.json from every record and stop")
    p.add_argument("--restore", type=Path, help="write the records of an evidence JSON (--report's, e.g. "
                   "docs/proxy_sweep_evidence.json) back into the results folder, skipping those there, and stop")
    a = p.parse_args()
    out = a.results / "proxy_sweep"
    out.mkdir(parents=True, exist_ok=True)
    if a.restore:
        written = restore(a.restore, out)
        print(f"restored {written} record(s) from {a.restore} into {out}")
        return
    records = [json.loads(f.read_text()) for f in sorted(out.glob("*.json"))]
    if a.report:
        report(a.report, records)
        return
    if not a.label:
        raise SystemExit("--label is required to run (it names the recipe in the report)")
    unknown = {s.split(":", 1)[0] for s in a.family_sets} - set(FAMILIES)
    if unknown:  # before the data set is made
        raise SystemExit(f"--family-set {sorted(unknown)}: not a family ({', '.join(FAMILIES)})")
    from repro.data.manifest import DataError

    try:
        variant(a.variant)
    except DataError as e:
        raise SystemExit(f"--variant: {e}") from None
    bad = sorted(set(a.families) - set(FAMILIES))
    if bad:
        raise SystemExit(f"--families {bad}: not a family ({', '.join(FAMILIES)})")
    cells = CELLS if a.cells is None else tuple((float(c.split("@")[0]), int(c.split("@")[1])) for c in a.cells)
    done = {r["key"] for r in records}
    todo = [spec for spec in specs(a, cells) if run_key(spec) not in done]  # before the data: a done sweep needs none
    if a.list:
        print(f"{len(todo)} run(s) to do")
        for spec in todo:
            print(f"  {spec['family']} {spec['width']}x@{spec['resolution']} seed {spec['seed']}")
        return
    if not todo:
        print("0 run(s) to do: every run is recorded", flush=True)
        return
    cores = sorted(os.sched_getaffinity(0))
    if a.jobs * a.threads > len(cores):
        raise SystemExit(f"--jobs {a.jobs} x --threads {a.threads} needs {a.jobs * a.threads} cores; "
                         f"{len(cores)} available")
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    folder = prepare_in_child(a.results, a.train_per_class, a.val_per_class, a.sub_eval_per_class, a.variant)
    print(f"{len(todo)} run(s) to do, {a.jobs} at a time", flush=True)
    # a SIGTERM (kill, a scheduler's time limit) unwinds like Ctrl-C, so the pool below terminates its workers:
    # by default the parent died alone and its workers ran on as orphans, finishing runs nobody waited for
    signal.signal(signal.SIGTERM, _stop)
    queue = ctx.Queue()
    for j in range(a.jobs):
        queue.put(set(cores[j * a.threads:(j + 1) * a.threads]))
    with ctx.Pool(a.jobs, initializer=_pin, initargs=(queue,)) as pool:
        pending = [pool.apply_async(one_run, (spec, str(folder), str(out))) for spec in todo]
        for i, job in enumerate(pending):
            try:
                r = job.get()
            except Exception as e:  # noqa: BLE001 - one failed run is reported, the others go on
                print(f"[{i + 1}/{len(todo)}] FAILED {todo[i]['family']} {todo[i]['width']}x@{todo[i]['resolution']} "
                      f"seed {todo[i]['seed']}: {type(e).__name__}: {e}", flush=True)
                continue
            print(f"[{i + 1}/{len(todo)}] {r['label']} {r['family']} {r['width']}x@{r['resolution']} seed {r['seed']}: "
                  f"top-1 {100 * r['top1']:.1f}%  {r['train_seconds']:.0f} s  {r['images_per_second']:.0f} img/s",
                  flush=True)


if __name__ == "__main__":
    main()
