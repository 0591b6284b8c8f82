"""``python -m repro …``: the suite's command line.

* ``flops``: MACs (exact and scaled conventions) and parameters of an ArchConfig, given as a JSON file or
  as ``--family F --width W --resolution R``.
* ``run-table T``: every cell of table T on a profile (``--list`` shows them with keys and status).
* ``run-cell``: one cell, by ``--table T --index N`` (a Slurm array task) or by method, variant, family and
  constraint (``--flops 330M``, ``--cpu-latency 0.5``, ``--gpu-latency 0.75``).
* ``eval``: top-1/top-5 of an ArchConfig and its weights on a prepared data set.
* ``export``: TorchScript (and ONNX where the exporter works) for deployment.

Profile options: ``--profile smoke|imagenet|FILE.yaml``, dotted overrides such as ``--train.epochs=3``,
``--data DIR`` (the prepared data folder, same as ``--data.path=DIR``), ``--results DIR`` (default
``results/<profile>``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from repro.arch import FAMILIES, ArchConfig
from repro.atomic import WriteFailed
from repro.constraint import HEADER, TARGET_MODES
from repro.cost.flops import count_macs, count_macs_scaled, count_params, format_macs


def _flops(args: argparse.Namespace, overrides: list[str]) -> int:
    if overrides:
        raise ValueError(f"flops takes no profile overrides ({' '.join(overrides)})")
    if args.arch is not None:
        if args.family or args.width is not None or args.resolution is not None:
            raise ValueError("give either an ArchConfig JSON file or --family/--width/--resolution, not both")
        arch = ArchConfig.load(args.arch)
    else:
        if args.family is None:
            raise ValueError("give an ArchConfig JSON file or --family (one of: " + ", ".join(FAMILIES) + ")")
        arch = ArchConfig.uniform(args.family, 1.0 if args.width is None else args.width,
                                  224 if args.resolution is None else args.resolution, rule=args.rule)
    macs, scaled, params = count_macs(arch), count_macs_scaled(arch), count_params(arch)
    if args.json:
        print(json.dumps({"family": arch.family, "resolution": arch.resolution, "macs": macs,
                          "macs_scaled": scaled, "params": params, "arch": arch.to_dict()}))
    else:
        print(f"{arch.family} at {arch.resolution}px, 1000 classes (conv + linear multiply-accumulates)")
        print(f"  MACs exact   {format_macs(macs):>10}  ({macs:,})")
        print(f"  MACs scaled  {format_macs(scaled):>10}  (MACs at 224 x (r/224)^2, the paper's convention)")
        print(f"  params       {params / 1e6:>9.3f}M  ({params:,})")
    return 0


def _require_writable(folder: Path) -> None:
    """Refuse a results folder that cannot be written before any work (an epoch trained into a read-only
    folder was lost at its first checkpoint). A real write, since root ignores file modes."""
    from repro.atomic import atomic_write_bytes

    probe = folder / ".write-check"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(probe, b"")
        probe.unlink()
    except OSError as e:
        why = getattr(e, "strerror", None) or str(e)
        raise ValueError(f"--results {folder} cannot be written ({why}): pass a writable folder") from None


def _profile_and_results(args: argparse.Namespace, overrides: list[str]):
    from repro.config import ConfigError
    from repro.discover import check_methods
    from repro.profiles import load_profile

    if getattr(args, "data", None):
        overrides = [*overrides, f"--data.path={args.data}"]
    profile = load_profile(args.profile, overrides)
    check_methods(profile)
    cores = len(os.sched_getaffinity(0))
    if any(o.startswith("--data.workers=") for o in overrides) and profile.data.workers > cores:
        raise ConfigError(f"--data.workers={profile.data.workers} is more than this machine's {cores} cores: give "
                          f"at most {cores} (0 uses them all; a profile's own number is capped at the cores)")
    results = Path(args.results) if args.results else Path("results") / profile.name
    if (args.command in ("run-table", "run-cell") and not getattr(args, "list", False)) or (
            args.command == "submit" and not args.dry_run):
        _require_writable(results)
    return profile, results


def _run_table(args: argparse.Namespace, overrides: list[str]) -> int:
    from repro.distributed import is_main
    from repro.pipeline import data_folder, prepare_data
    from repro.runner import run_table, statuses

    profile, results = _profile_and_results(args, overrides)
    if args.list:
        from repro.data.manifest import read_manifest

        data = prepare_data(profile, quiet=args.quiet) if read_manifest(data_folder(profile)) else None
        for i, st in enumerate(statuses(args.table, profile, data, results, args.all_cells,
                                        args.target or "published", args.controls)):
            print(f"{i:3d}  {st.key or '(data not prepared)':16}  {st.cell.label:56}  {st.status}"
                  f"{'' if len(profile.seeds) == 1 else f' seed {st.seed}'}")
        return 0
    if args.jobs is not None:
        from repro.runner import share_cores

        share_cores(args.jobs)  # refuses a count the machine cannot give before any work
    data = prepare_data(profile, quiet=args.quiet)
    counts = run_table(args.table, profile, data, results, args.all_cells, quiet=args.quiet, methods=args.method,
                       jobs=args.jobs, target=args.target or "published", controls=args.controls)
    if not is_main():
        return 1 if counts["failed"] else 0
    print(f"table {args.table} on {profile.name}: {counts['ran']} ran, {counts['cached']} already done, "
          f"{counts['failed']} failed, {counts['not available']} not available in this build; records in "
          f"{results / 'records'}")
    return 1 if counts["failed"] else 0


def _run_cell(args: argparse.Namespace, overrides: list[str]) -> int:
    from repro.constraint import Constraint
    from repro.cost.flops import parse_macs
    from repro.discover import get_method
    from repro.distributed import is_main
    from repro.pipeline import check_cell, check_feasible, prepare_data, run_cell
    from repro.runner import blocked_reason, run_one, statuses

    profile, results = _profile_and_results(args, overrides)
    if args.table is not None:  # the arguments are checked before the data set is prepared (or made)
        if args.index is None:
            raise ValueError("--table needs --index N (see run-table T --list)")
        ignored = [f"--{n.replace('_', '-')}" for n in ("method", "variant", "family", "flops", "cpu_latency",
                                                         "gpu_latency") if getattr(args, n) is not None]
        if ignored:
            raise ValueError(f"--table/--index name the whole cell; drop {', '.join(ignored)} (or drop --table and "
                             f"--index and name the cell by --method --variant --family and its limit)")
        data = prepare_data(profile, quiet=args.quiet)
        listed = statuses(args.table, profile, data, results, args.all_cells, args.target or "published",
                          args.controls)
        if not 0 <= args.index < len(listed):
            raise ValueError(f"--index {args.index} is outside 0..{len(listed) - 1} for table {args.table}")
        st = listed[args.index]
        if args.seed is not None:  # the listed cell with another seed than the profile's
            st = dataclasses.replace(st, seed=args.seed)
        why = blocked_reason(st.cell)
        if why:
            raise ValueError(f"cell {args.index} ({st.cell.label}) cannot run: {why}")
        c = st.cell
        phase = _phase_only(args, c.method, c.variant, c.family, c.constraint, profile, st.seed, data, results,
                            c.target, c.label)
        if phase is not None:
            return phase
        record, ran = run_one(st, profile, data, results, print, args.quiet)
    else:
        missing = [n for n in ("method", "variant", "family") if getattr(args, n) is None]
        if args.flops is None and args.cpu_latency is None and args.gpu_latency is None:
            missing.append("flops|cpu-latency|gpu-latency")
        if args.target is not None:
            raise ValueError(f"--target {args.target} names a table cell's operating point: give it with --table T "
                             f"--index N (a cell named by --method and --flops runs at that limit)")
        if missing:
            raise ValueError("give --table T --index N, or all of --method --variant --family and one of --flops, "
                             f"--cpu-latency, --gpu-latency (missing: {', '.join('--' + m for m in missing)})")
        if args.flops is not None:
            constraint = Constraint("flops", parse_macs(args.flops))
        elif args.cpu_latency is not None:
            constraint = Constraint("cpu_latency", args.cpu_latency)
        else:
            constraint = Constraint("gpu_latency", args.gpu_latency)
        method = get_method(args.method)  # the cell is checked before the data set is prepared (or made)
        check_cell(method, args.variant, args.family, constraint)
        check_feasible(method, args.variant, args.family, constraint, profile)
        data = prepare_data(profile, quiet=args.quiet)
        seed = 0 if args.seed is None else args.seed
        phase = _phase_only(args, args.method, args.variant, args.family, constraint, profile, seed, data, results,
                            HEADER, f"{args.method} {args.variant} {args.family} {constraint.label()}")
        if phase is not None:
            return phase
        record, ran = run_cell(args.method, args.variant, args.family, constraint, profile, seed, data, results)
    if not is_main():  # under torchrun every rank ran the cell; one says so
        return 0
    print(f"{'ran' if ran else 'already done'}: {record.method} {record.variant} {record.family} "
          f"{record.macs / 1e6:.2f}M MACs, top-1 {100 * record.top1:.2f}% -> key {record.key}")
    return 0


def _phase_only(args: argparse.Namespace, method: str, variant: str, family: str, constraint, profile, seed: int,
                data, results: Path, target, label: str) -> int | None:
    """``--reference-only`` / ``--search-only``: that part of the cell, and what it did said (the exit status);
    None when neither is asked."""
    if args.reference_only:
        from repro.distributed import is_main
        from repro.pipeline import reference_for_cell

        done = reference_for_cell(method, variant, family, constraint, profile, seed, data, results, target=target)
        said = {"cell done": "the cell's record exists: nothing to train",
                "none": f"{method} starts from no reference network: nothing to train",
                "trained": f"the reference {family} network is trained"}[done]
        if is_main():
            print(f"{label} seed {seed}: {said}")
        return 0
    if args.search_only:
        from repro.pipeline import search_cell

        done = search_cell(method, variant, family, constraint, profile, seed, data, results, quiet=args.quiet,
                           target=target)
        said = {"cell done": "the cell's record exists: nothing to search",
                "distributed": f"{method} searches under torchrun with the retraining: nothing to search in one "
                               f"process",
                "searched": "search done in one process (cached for the retraining)"}[done]
        print(f"{label} seed {seed}: {said}")
        return 0
    return None


def _table_lines(args: argparse.Namespace, overrides: list[str], make: bool):
    """``submit``'s and ``status``'s view of a table: the profile, the results folder (absolute), the prepared
    data (made first for the embedded set when ``make``; None where it is not prepared) and the table's lines
    (cells x seeds, as ``run-table --list``)."""
    from repro.data.manifest import read_manifest
    from repro.pipeline import data_folder, prepare_data
    from repro.runner import statuses

    profile, results = _profile_and_results(args, overrides)
    results = results.resolve()
    data = (prepare_data(profile, quiet=args.quiet)
            if read_manifest(data_folder(profile)) or (make and profile.data.source == "tiny") else None)
    listed = statuses(args.table, profile, data, results, args.all_cells, args.target or "published", args.controls)
    return profile, results, data, listed


def _submit(args: argparse.Namespace, overrides: list[str]) -> int:
    """``submit``: the table's runnable lines (cells x seeds) as one Slurm array, its cost printed first."""
    from repro import cluster
    from repro.pipeline import data_folder
    from repro.runner import estimate as records_estimate

    profile, results, data, listed = _table_lines(args, overrides, make=not args.dry_run)
    if data is None and not args.dry_run:
        raise cluster.ClusterError(f"no prepared data set in {data_folder(profile)}: prepare it before submitting "
                                   f"(python -m data_prep prepare --imagefolder DIR --out {data_folder(profile)}), "
                                   f"so that the tasks do not each try; --dry-run prints the plan without it")
    gpus = args.gpus_per_node if args.gpus_per_node is not None else (8 if profile.name == "imagenet" else 0)
    if gpus < 0:
        raise cluster.ClusterError(f"--gpus-per-node {gpus} must be 0 (a CPU node) or more")
    cpus = args.cpus_per_task if args.cpus_per_task is not None else (8 * gpus if gpus else 2)
    if cpus < 1:
        raise cluster.ClusterError(f"--cpus-per-task {cpus} must be at least 1")
    states, note = cluster.line_states(listed, results, args.table)
    runnable, skipped = cluster.choose_lines(listed, states, args.table, args.indices, args.method, gpus)
    left_out = ", ".join(f"{v} {k}" for k, v in skipped.items())
    print(f"table {args.table} on {profile.name}, seeds {', '.join(map(str, profile.seeds))}: {len(runnable)} of "
          f"{len(runnable) + sum(skipped.values())} line(s) to submit ({left_out})" + (f"; {note}" if note else ""))
    if not runnable:
        print("nothing to submit")
        return 0
    time_limit = args.time
    if gpus > 0:
        lines, longest = cluster.gpu_cost(listed, runnable, profile, data, gpus,
                                          Path(args.rates) if args.rates else None, args.per_task)
        print("\n".join(lines))
        if time_limit is None and longest is not None:
            time_limit = cluster.hours_limit(longest)
            print(f"  each task's time limit: {time_limit} ({cluster.MARGIN:g}x the longest task modelled; "
                  f"--time sets another)")
            if longest * cluster.MARGIN > cluster.MAX_HOURS:
                print(f"  the longest task is modelled above {cluster.MAX_HOURS} h: it stops at the limit and "
                      f"resumes from its checkpoint when submitted again")
    else:
        print(records_estimate([listed[i] for i in runnable], profile, results, len(runnable)).replace(
            f"min at {len(runnable)} at a time", "min if every task runs at once"))
    logs = results / "slurm" / "logs"
    task_args = ["--profile", str(Path(args.profile).resolve()) if args.profile.endswith((".yaml", ".yml"))
                 else args.profile, "--results", str(results)]
    task_args += ["--data", str(data_folder(profile).resolve())]  # tasks start in the repository's root
    task_args += overrides
    task_args += ["--all-cells"] * args.all_cells + ["--controls"] * args.controls
    task_args += ["--target", args.target] if args.target else []
    task_args.append("--quiet")
    # the tasks' environment: this one when it is a virtual environment (else the script's default, then PATH)
    extra = ([f"--export=ALL,AHPO_VENV={sys.prefix}"] if sys.prefix != sys.base_prefix else []) + list(
        args.sbatch_arg or [])
    cmd = cluster.sbatch_line(runnable, args.table, task_args, gpus, cpus, logs, time_limit, args.partition,
                              args.account, args.max_running, extra)
    print(f"array: {len(runnable)} task(s), {gpus} GPU(s) and {cpus} CPU(s) each; logs in {logs}")
    print(f"sbatch line (run from {cluster.ROOT}):\n  {cluster.quoted(cmd)}")
    if args.dry_run:
        print("dry run: nothing submitted")
        return 0
    logs.mkdir(parents=True, exist_ok=True)
    job = cluster.submit(cmd, {"table": args.table, "profile": profile.name, "seeds": list(profile.seeds),
                               "indices": runnable, "lines": cluster.submission_lines(listed, runnable),
                               "sbatch": cmd, "logs": str(logs)}, results)
    print(f"submitted job {job}: python -m repro status --table {args.table} {' '.join(task_args[:-1])} shows "
          f"where it stands")
    return 0


def _status(args: argparse.Namespace, overrides: list[str]) -> int:
    """``status``: done / running / queued / failed / left per line (cell and seed) of a table."""
    from repro import cluster
    from repro.pipeline import data_folder

    profile, results, data, listed = _table_lines(args, overrides, make=False)
    if data is None:
        print(f"no prepared data set in {data_folder(profile)}: records cannot be matched to cells; only the queue "
              f"is shown")
    states, note = cluster.line_states(listed, results, args.table)
    counts: dict[str, int] = {}
    for s in states:
        counts[s.state] = counts.get(s.state, 0) + 1
        if not args.summary:
            print(f"{s.index:4d}  {s.label:56}  seed {s.seed}  {s.state}" + (f"  ({s.detail})" if s.detail else ""))
    order = ("done", "running", "queued", "submitted", "failed", "left", "not available")
    print(f"table {args.table} on {profile.name}: " + ", ".join(f"{counts[k]} {k}" for k in order if k in counts)
          + f"; records in {results / 'records'}" + (f"; {note}" if note else ""))
    return 0


def _eval(args: argparse.Namespace, overrides: list[str]) -> int:
    from pathlib import Path

    from repro.data import Normalize, make_loader
    from repro.data.manifest import read_manifest
    from repro.models import build_model
    from repro.train.loop import evaluate

    folder = Path(args.data)
    manifest = read_manifest(folder)
    if manifest is None:
        raise ValueError(f"{folder} is not a prepared data set (no manifest.json)")
    arch = ArchConfig.load(args.arch).replace(num_classes=len(manifest["classes"]))
    model = _with_weights(build_model(arch), arch, args.weights)
    resolution = max(8, round(arch.resolution * manifest["base_resolution"] / 224))
    # make_loader checks the file against the manifest
    loader, _ = make_loader(folder / f"{args.split}.beton", train=False, batch_size=256, resolution=resolution)
    m = evaluate(model, loader, Normalize())
    print(json.dumps({"top1": m["top1"], "top5": m["top5"], "images": m["images"], "resolution": resolution}))
    return 0


def _read_weights(path: str) -> dict:
    import torch

    if not Path(path).is_file():
        raise ValueError(f"weights file {path} does not exist (a cell's weights: results/<profile>/weights/KEY.pt)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - truncated, not a checkpoint, another format: one line, no traceback
        raise ValueError(f"weights file {path} cannot be read ({type(e).__name__}): a truncated or foreign file; "
                         f"use the .pt a run wrote") from None
    if not isinstance(state, dict):
        raise ValueError(f"weights file {path} holds a {type(state).__name__}, not a state dict")
    return state.get("model", state)


def _weights_classes(path: str, arch: ArchConfig) -> int:
    """The class count of the weights' classifier (the last 2-d weight), else the architecture's."""
    tensors = [v for v in _read_weights(path).values() if getattr(v, "ndim", 0) == 2]
    return int(tensors[-1].shape[0]) if tensors else arch.num_classes


def _with_weights(model, arch: ArchConfig, path: str):
    try:
        model.load_state_dict(_read_weights(path))
    except RuntimeError as e:  # missing keys, unexpected keys, shape mismatches
        first = str(e).split("\n")[1].strip() if "\n" in str(e) else str(e)[:200]
        raise ValueError(f"weights file {path} is not of this architecture ({arch.family} at {arch.resolution} px, "
                         f"{arch.num_classes} classes): {first}") from None
    return model


def _export(args: argparse.Namespace, overrides: list[str]) -> int:
    import torch

    from repro.models import build_model

    arch = ArchConfig.load(args.arch)
    if args.weights:  # a cell record's arch is at ImageNet geometry: the classes are the weights' own
        arch = arch.replace(num_classes=_weights_classes(args.weights, arch))
    model = build_model(arch).eval()
    if args.weights:
        model = _with_weights(model, arch, args.weights)
    x = torch.zeros(1, 3, arch.resolution, arch.resolution)
    with torch.no_grad():
        traced = torch.jit.trace(model, x)
    traced.save(args.out)
    print(f"TorchScript: {args.out}")
    if args.onnx:
        try:
            torch.onnx.export(model, (x,), args.onnx, input_names=["image"], output_names=["logits"], dynamo=False)
            print(f"ONNX: {args.onnx}")
        except Exception as e:  # noqa: BLE001 - the exporter's many failure types; TorchScript is still written
            print(f"ONNX export failed ({type(e).__name__}: {e}); TorchScript was written", file=sys.stderr)
            return 1
    return 0


def _latency_table(args: argparse.Namespace, overrides: list[str]) -> int:
    """Pre-fill this machine's latency table: the uniform networks over a grid of widths and resolutions and
    ``--random`` architectures of the space, per family; missing layers are measured, present ones kept."""
    from pathlib import Path

    from repro.constraint import LATENCY_DEVICE
    from repro.cost.latency import (
        LatencyTable,
        device_available,
        timed_fill,
    )
    from repro.profiles import load_profile
    from repro.space import grid_archs, random_archs

    profile = load_profile(args.profile, overrides)
    kind = {v: k for k, v in LATENCY_DEVICE.items()}[args.device]
    settings = profile.latency.settings_for(kind)
    if not device_available(settings.device):
        print(f"no {args.device} device here: the table must be built on the device it describes", file=sys.stderr)
        return 2
    root = Path(args.out or profile.latency.tables)
    table = LatencyTable.open(settings, root)
    path = table.path
    print(f"latency table {path} ({len(table.entries)} layers already); settings {settings.resolved()}")
    ratios = [round(0.25 + 0.125 * i, 3) for i in range(7)]
    resolutions = list(range(96, 225, 32))
    for family in args.family or ["mobilenet_v1", "mobilenet_v2"]:
        archs = grid_archs(family, ratios, resolutions) + random_archs(family, args.random, seed=args.seed)
        n, seconds = timed_fill(table, archs, progress=not args.quiet)
        table.save()
        print(f"{family}: {n} layers measured in {seconds:.1f} s ({len(archs)} networks: {len(ratios)} widths x "
              f"{len(resolutions)} resolutions and {args.random} random)")
    print(f"{path}: {len(table.entries)} layers, {table.build_seconds:.1f} s of measuring in all")
    return 0


def _add_profile_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="smoke", help="smoke | proxy | imagenet | a profile .yaml (default smoke)")
    p.add_argument("--results", help="where records go (default results/<profile>)")
    p.add_argument("--data", help="the prepared data folder (shorthand for --data.path=DIR)")
    p.add_argument("--all-cells", action="store_true", help="also the cells the paper leaves empty (—)")
    p.add_argument("--controls", action="store_true",
                   help="also the control rows the paper lacks (tables/controls.csv: the best of k random "
                        "architectures at equal FLOPs), listed after the paper's cells")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_target_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", choices=TARGET_MODES, default=None,
                   help="each baseline cell at its published operating point (the FLOPs the paper printed for it, "
                        "or its rate: tables/reported/operating_points.csv; the default), or every cell at its "
                        "column's header (the comparison made before operating points); for run-cell, with "
                        "--table/--index only (a cell named by --method and --flops runs at that limit)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m repro", description="Architecture hyperparameter "
                                "optimization reproduction suite.")
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("flops", help="MACs and parameters of an architecture")
    f.add_argument("arch", nargs="?", help="an ArchConfig JSON file")
    f.add_argument("--family", choices=FAMILIES)
    f.add_argument("--width", type=float, help="uniform width multiplier (default 1.0)")
    f.add_argument("--resolution", type=int, help="input resolution in pixels (default 224)")
    f.add_argument("--rule", default="floor", help="width rounding for --width: floor | nearest | divisible8")
    f.add_argument("--json", action="store_true", help="print one JSON object")
    f.set_defaults(func=_flops)

    t = sub.add_parser("run-table", help="run (or --list) every cell of a table")
    t.add_argument("table", type=int, choices=(1, 2, 3))
    t.add_argument("--list", action="store_true", help="list the cells with their keys and status")
    t.add_argument("--method", action="append", help="run only this method's rows (repeat for several)")
    t.add_argument("--jobs", type=int, help="cells run at once, each in its own process on its own cores "
                   "(default: one per core on a CPU machine, memory allowing; 1 with a GPU)")
    _add_target_arg(t)
    _add_profile_args(t)
    t.set_defaults(func=_run_table)

    c = sub.add_parser("run-cell", help="run one cell")
    c.add_argument("--table", type=int, choices=(1, 2, 3))
    c.add_argument("--index", type=int, help="the cell's index in `run-table T --list`")
    c.add_argument("--method")
    c.add_argument("--variant")
    c.add_argument("--family", choices=FAMILIES)
    limit = c.add_mutually_exclusive_group()
    limit.add_argument("--flops", help="FLOPs limit, e.g. 330M")
    limit.add_argument("--cpu-latency", type=float, metavar="W",
                       help="CPU-latency limit: the uniform Channel reference at width W (e.g. 0.5)")
    limit.add_argument("--gpu-latency", type=float, metavar="W",
                       help="GPU-latency limit: the uniform Channel reference at width W (e.g. 0.75)")
    c.add_argument("--seed", type=int, help="the seed (default: 0, or with --table/--index the listed cell's)")
    only = c.add_mutually_exclusive_group()
    only.add_argument("--reference-only", action="store_true",
                      help="only the reference network the cell's method starts from (under torchrun: with DDP), "
                           "what a Slurm task on several GPUs trains before the method's one-process search")
    only.add_argument("--search-only", action="store_true",
                      help="only the search, in this one process, for a method that searches in one process (what "
                           "a Slurm task on several GPUs runs before torchrun retrains); nothing for the others")
    _add_target_arg(c)
    _add_profile_args(c)
    c.set_defaults(func=_run_cell)

    s = sub.add_parser("submit", help="a table's cells x seeds as one Slurm array, its cost printed first")
    s.add_argument("--table", type=int, choices=(1, 2, 3), required=True)
    s.add_argument("--dry-run", action="store_true",
                   help="print the plan, the cost and the sbatch line; submit nothing")
    s.add_argument("--indices", help="only these lines of run-table --list (Slurm's syntax: 0-3,7)")
    s.add_argument("--method", action="append", help="only this method's lines (repeat for several)")
    s.add_argument("--gpus-per-node", type=int, help="GPUs per task, one rank each (default 8 on the imagenet "
                   "profile, else 0: a CPU node, one rank)")
    s.add_argument("--cpus-per-task", type=int, help="CPUs per task (default 8 per GPU, 2 on a CPU node)")
    s.add_argument("--time", help="each task's time limit, Slurm's format (default: from the cost model, at most "
                   "72:00:00; on CPU nodes the script's 72:00:00)")
    s.add_argument("--partition")
    s.add_argument("--account")
    s.add_argument("--max-running", type=int, help="at most this many tasks at once (Slurm's %%N)")
    s.add_argument("--sbatch-arg", action="append",
                   help="passed to sbatch as written (repeat), e.g. --sbatch-arg=--mem=200G")
    s.add_argument("--rates", help="a GPU check's JSON whose training throughput the cost uses (default: the H100 "
                   "measured in docs/latency_evidence)")
    s.add_argument("--per-task", action="store_true", help="also print each task's modelled GPU-hours")
    _add_target_arg(s)
    _add_profile_args(s)
    s.set_defaults(func=_submit)

    st = sub.add_parser("status", help="done / running / queued / failed / left per cell and seed of a table")
    st.add_argument("--table", type=int, choices=(1, 2, 3), required=True)
    st.add_argument("--summary", action="store_true", help="only the totals")
    _add_target_arg(st)
    _add_profile_args(st)
    st.set_defaults(func=_status)

    lt = sub.add_parser("latency-table", help="build this machine's CPU or GPU latency table (per-layer lookup)")
    lt.add_argument("--device", required=True, choices=("cpu", "cuda"))
    lt.add_argument("--family", action="append", choices=FAMILIES,
                    help="families to pre-fill (repeat; default mobilenet_v1 and mobilenet_v2)")
    lt.add_argument("--random", type=int, default=20, help="random architectures of the space per family")
    lt.add_argument("--seed", type=int, default=0)
    lt.add_argument("--out", help="table folder (default: the profile's latency.tables)")
    lt.add_argument("--profile", default="smoke", help="the profile whose latency settings apply")
    lt.add_argument("--quiet", action="store_true", help="no progress bars")
    lt.set_defaults(func=_latency_table)

    e = sub.add_parser("eval", help="top-1/top-5 of an architecture and its weights")
    e.add_argument("--arch", required=True, help="ArchConfig JSON")
    e.add_argument("--weights", required=True, help="a .pt with the model's state_dict")
    e.add_argument("--data", required=True, help="a prepared data folder")
    e.add_argument("--split", default="val", choices=("val", "train"))
    e.set_defaults(func=_eval)

    x = sub.add_parser("export", help="TorchScript (and ONNX) of an architecture and its weights")
    x.add_argument("--arch", required=True)
    x.add_argument("--weights")
    x.add_argument("--out", required=True, help="TorchScript file to write")
    x.add_argument("--onnx", help="also write ONNX here")
    x.set_defaults(func=_export)
    return p


def main(argv: list[str] | None = None) -> int:
    args, rest = build_parser().parse_known_args(argv)
    overrides: list[str] = []
    for item in rest:  # "--train.epochs=3" or "--train.epochs 3"
        if overrides and "=" not in overrides[-1] and not item.startswith("--"):
            overrides[-1] += f"={item}"
        else:
            overrides.append(item)
    # profile overrides: a section's key (--train.epochs=3) or a top-level one (--seeds=0,1,2); the profile
    # refuses keys it does not have, by name
    bad = [o for o in overrides if not (o.startswith("--") and "=" in o and o.split("=", 1)[0][2:])]
    if bad:
        print(f"error: unrecognized arguments: {' '.join(bad)} (profile overrides look like --train.epochs=3 "
              f"or --seeds=0,1,2)", file=sys.stderr)
        return 2
    try:
        if args.command in ("run-table", "run-cell"):
            from repro.distributed import init_distributed

            init_distributed()  # a no-op unless launched by torchrun
        return args.func(args, overrides)
    except ValueError as e:  # ConfigError, DataError, RecordError are ValueErrors with one clear line
        print(f"error: {e}", file=sys.stderr)
        return 2
    except WriteFailed as e:  # disk full, read-only folder: the file and the fix, no traceback
        print(f"error: {e.strerror}", file=sys.stderr)
        return 2
    except PermissionError as e:  # a file written by a library (TorchScript, ONNX, a plot) into a read-only folder
        print(f"error: cannot write {e.filename or ''}: {e.strerror}; choose a writable folder", file=sys.stderr)
        return 2
