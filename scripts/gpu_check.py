"""The GPU check of the latency issue, from the source tree, in a few minutes, on any torch.

On a machine with one GPU (``python scripts/gpu_check.py --out DIR``; ``scripts/gpu_check.sh`` wraps it):

1. measures the latency of the uniform reference networks of the latency columns: MobileNet V1 at 0.75 /
   0.5 / 0.25 (Table 1) and MobileNet V2 at 0.8 / 0.65 / 0.35 (Table 2, GPU) and 0.75 / 0.5 / 0.35 (Table 2,
   CPU), each also at 1.0, at the table's batch size and at batch 1;
2. builds the GPU latency table of MobileNet V1 (uniform networks over a grid of widths and resolutions);
3. reports the predictor's error on 20 random MobileNet V1 architectures of the search space (their missing
   layers are measured first); then, while time is left, the predictor's error on 20 MobileNet V2
   architectures.

Before the table, while time is left, it measures the training throughput of the three canonical networks
(batch 256, bfloat16 autocast).

It needs only torch and numpy (no FFCV, fvcore, YAML): it imports ``repro.cost.latency``, ``repro.models``,
``repro.space`` and ``baselines.uniform``. Everything it prints is also written as ``gpu_check.json`` (and
the table as ``<device id>.json``) under ``--out``. ``--device cpu --quick`` runs the same path on a CPU in
seconds (the tests do).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from repro.cost.latency import (  # noqa: E402
    LatencyTable,
    default_settings,
    device_id,
    environment,
    measure_arch,
    predictor_error,
    timed_fill,
)
from repro.space import grid_archs, random_archs

REFERENCES = {"mobilenet_v1": (1.0, 0.75, 0.5, 0.25), "mobilenet_v2": (1.0, 0.8, 0.75, 0.65, 0.5, 0.35)}


def _reference(family: str, multiplier: float):
    from repro.reference import reference_arch

    return reference_arch(family, multiplier)


def _measure(arch, settings):
    m = measure_arch(arch, settings, allow_unstable=True)  # kept and flagged: this is a report
    return {"median_ms": round(m.median_ms, 4), "cv": round(m.cv, 4), "stable": m.cv <= settings.max_cv}


def _throughput(family: str, device: str, batch: int, steps: int, side: int = 224) -> dict:
    """Training images per second of the canonical network at ``side`` px: SGD, bfloat16 autocast on CUDA,
    channels-last, ``steps`` timed steps after 3 warm-up steps."""
    import torch

    from repro.arch import ArchConfig
    from repro.models import build_model

    dev = torch.device(device)
    model = build_model(ArchConfig.canonical(family)).to(dev, memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, side, side, device=dev).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=dev)

    def step():
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return {"family": family, "batch": batch, "steps": steps, "side": side,
            "images_per_s": round(batch * steps / seconds, 1),
            "dtype": "bfloat16 autocast" if device == "cuda" else "float32", "channels_last": True}


def _errors(table, family, n, seed, report, label=""):
    t0 = time.perf_counter()
    archs = random_archs(family, n, seed=seed)
    n_new, seconds = timed_fill(table, archs)
    checks = predictor_error(table, archs, allow_unstable=True)
    rel = [c.relative_error for c in checks]
    out = {"family": family, "batch": table.settings.batch, "archs": n, "layers_measured": n_new,
           "fill_seconds": round(seconds, 1),
           "median_abs_rel_error": round(statistics.median(abs(r) for r in rel), 4),
           "mean_rel_error": round(statistics.fmean(rel), 4), "max_abs_rel_error": round(max(abs(r) for r in rel), 4),
           "rows": [{"predicted_ms": round(c.predicted_ms, 4), "measured_ms": round(c.measured.median_ms, 4),
                     "cv": round(c.measured.cv, 4), "resolution": c.arch.resolution, "depths": list(c.arch.depths)}
                    for c in checks],
           "seconds": round(time.perf_counter() - t0, 1)}
    report(f"predictor on {n} random {family}{label}: median |error| {100 * out['median_abs_rel_error']:.1f}%, mean "
           f"{100 * out['mean_rel_error']:+.1f}%, max |error| {100 * out['max_abs_rel_error']:.1f}% "
           f"({n_new} layers measured in {seconds:.1f} s; {out['seconds']} s in all)")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--out", type=Path, default=Path("results/gpu_check"))
    ap.add_argument("--budget-s", type=float, default=210.0, help="stop optional parts after this (s)")
    ap.add_argument("--quick", action="store_true", help="a tiny grid and 3 architectures (tests)")
    ap.add_argument("--batch", type=int, default=None, help="batch size of the table (default: the settings')")
    ap.add_argument("--layer-timing", choices=("chain", "alone"), default=None,
                    help="how table entries are timed (default: the settings')")
    ap.add_argument("--compare-batch", type=int, default=0,
                    help="also the predictor's error at this batch size on 10 architectures, time allowing")
    args = ap.parse_args(argv)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: gpu_check measures GPU latency; --device cpu runs the same path on the CPU")
        return 2
    t_start = time.perf_counter()
    quick = args.quick
    timing = {"repeats": 5, "warmup": 2} if quick else {}
    if args.layer_timing:
        timing["layer_timing"] = args.layer_timing
    settings = default_settings(args.device, batch_size=args.batch, **timing)
    batch1 = default_settings(args.device, batch_size=1, **timing)
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict = {"device_id": device_id(settings), "environment": environment(settings),
                    "settings": settings.resolved(), "references": [], "checks": []}
    lines: list[str] = []

    def report(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    report(f"device: {result['environment']['device_name']} ({result['device_id']}); torch "
           f"{torch.__version__}; settings {settings.resolved()}")
    for family, multipliers in REFERENCES.items():
        for k in multipliers[:2] if quick else multipliers:
            arch = _reference(family, k)
            row = {"family": family, "multiplier": k, "resolution": arch.resolution,
                   f"batch{settings.batch}": _measure(arch, settings)}
            row["batch1"] = row["batch1"] if settings.batch == 1 else _measure(arch, batch1)
            if args.compare_batch:
                other = default_settings(args.device, batch_size=args.compare_batch, **timing)
                row[f"batch{args.compare_batch}"] = m = _measure(arch, other)
                report(f"{family} {k:.2f}x: {m['median_ms']:.3f} ms at batch {args.compare_batch} (cv {m['cv']:.3f})")
            result["references"].append(row)
            big, one = row[f"batch{settings.batch}"], row["batch1"]
            report(f"{family} {k:.2f}x: {big['median_ms']:.3f} ms at batch {settings.batch} (cv {big['cv']:.3f}"
                   f"{'' if big['stable'] else ', UNSTABLE'}), {one['median_ms']:.3f} ms at batch 1 "
                   f"(cv {one['cv']:.3f}{'' if one['stable'] else ', UNSTABLE'})")

    result["throughput"] = []
    for family in ("mobilenet_v1", "mobilenet_v2", "resnet50"):
        if time.perf_counter() - t_start > args.budget_s * 0.7:
            report(f"training throughput of {family} skipped: time budget")
            continue
        row = _throughput(family, args.device, *((4, 2, 32) if quick else (256, 20, 224)))
        result["throughput"].append(row)
        report(f"training throughput {family} {row['side']} px: {row['images_per_s']:.0f} images/s "
               f"(batch {row['batch']}, "
               f"{row['dtype']}, channels-last)")
    table = LatencyTable(settings, environment=result["environment"])
    ratios = [0.25, 1.0] if quick else [0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0]
    resolutions = [128] if quick else [128, 176, 224]
    grid = grid_archs("mobilenet_v1", ratios, resolutions)
    n_new, seconds = timed_fill(table, grid)
    result["table_build"] = {"family": "mobilenet_v1", "archs": len(grid), "ratios": ratios,
                             "resolutions": resolutions, "layers": n_new, "seconds": round(seconds, 1)}
    report(f"MobileNet V1 table: {n_new} layers of {len(grid)} uniform networks ({len(ratios)} widths x "
           f"{len(resolutions)} resolutions) measured in {seconds:.1f} s")

    n = 3 if quick else 20
    result["checks"].append(_errors(table, "mobilenet_v1", n, 0, report))
    _write(args.out, result, lines, table, settings, t_start)
    if args.compare_batch and time.perf_counter() - t_start < args.budget_s * 0.6:
        other = default_settings(args.device, batch_size=args.compare_batch, **timing)
        result["checks"].append(_errors(LatencyTable(other, environment=result["environment"]), "mobilenet_v1",
                                        min(n, 10), 0, report, label=f" at batch {args.compare_batch}"))
    if time.perf_counter() - t_start < args.budget_s * 0.6:
        result["checks"].append(_errors(table, "mobilenet_v2", n, 0, report))
    else:
        report("MobileNet V2 predictor check skipped: time budget")
    _write(args.out, result, lines, table, settings, t_start)
    report(f"done in {result['seconds']} s; wrote {args.out / 'gpu_check.json'} and the table")
    return 0


def _write(out: Path, result: dict, lines: list[str], table, settings, t_start: float) -> None:
    """What is known so far (a later part that fails leaves the earlier ones written)."""
    result["seconds"] = round(time.perf_counter() - t_start, 1)
    result["lines"] = lines
    table.save(out / f"{device_id(settings)}.json")
    (out / "gpu_check.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
