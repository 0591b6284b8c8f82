"""Where a proxy reference network's errors are: train one of the sweep's reference cells exactly as
``scripts/proxy_sweep.py`` does (same recipe, data folder and seed), then classify the validation split and
write its per-class accuracy and the most frequent (true, predicted) confusions, grouped by what the two
classes share (the tiny set's class is a (shape, texture) pair, so an error confuses the shape, the texture or
both). It answers whether a family's top-1 stops short of 100% on errors a larger network also makes (the
set's ceiling) or on ones a larger network fixes.

    python scripts/proxy_confusion.py --variant tiny64-108 --family mobilenet_v1 --width 0.5 --seed 0 \\
        --set train.epochs=8 --set train.warmup_epochs=2 --set train.lr=0.05 --set train.batch_size=64 \\
        --set train.lr_reference_batch=64 --out docs/proxy_confusion_evidence

The training is the sweep's own (``proxy_sweep.train``); ``--threads`` cores (default 1, as the sweep's
``--jobs 2``). The sweep pins each run to its cores, and the same seed run with more cores in its affinity mask
than threads trains to another top-1 (docs/proxy_protocol.md): to reproduce a sweep record, pin this script
too (``taskset -c 1 python scripts/proxy_confusion.py ...``); it says so when it is not pinned.
The output is ``OUT.json`` (every count) and ``OUT.md`` (the summary); an existing pair is kept and the new cell
added to it, so several cells share one file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import proxy_sweep  # noqa: E402 - after the path is set

from data_prep.tiny import MIRROR_TWINS  # noqa: E402


def train_and_classify(spec: dict, folder: Path) -> dict:
    """Train ``spec``'s network as the sweep does and return its validation confusion matrix with the run's
    facts."""
    import numpy as np
    import torch

    from repro.data import Normalize, make_loader, resize_batch
    from repro.train.trainer import use_channels_last

    model, result, data, recipe, arch, manifest, seconds = proxy_sweep.train(spec, folder)
    decode_at = data.decode_resolution(arch.resolution)
    resolution = data.resolution(arch.resolution)
    loader, _ = make_loader(data.val_beton, train=False, batch_size=recipe.eval_batch_size, resolution=decode_at)
    device = next(model.parameters()).device  # fit() leaves the model on the run's device
    normalize = Normalize(channels_last=use_channels_last(recipe.channels_last)).to(device)
    n = data.num_classes
    matrix = np.zeros((n, n), dtype=np.int64)
    model = model.eval()
    with torch.no_grad():
        for images, labels in loader:
            x = normalize(images)
            if decode_at != resolution:
                x = resize_batch(x, resolution)
            predicted = model(x).argmax(dim=1).cpu().numpy()
            np.add.at(matrix, (labels.cpu().numpy().astype(np.int64).ravel(), predicted), 1)
    top1 = float(np.trace(matrix) / matrix.sum())
    return {"spec": spec, "key": proxy_sweep.run_key(spec), "fit_top1": result["top1"], "top1": top1,
            "pixels": resolution, "seconds": seconds, "classes": list(manifest["classes"]),
            "matrix": matrix.tolist(), "torch_threads": torch.get_num_threads(), "cpu": proxy_sweep._cpu(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}


def summary(cell: dict, pairs: int = 12) -> list[str]:
    import numpy as np

    m = np.asarray(cell["matrix"])
    classes = cell["classes"]
    total = int(m.sum())
    errors = total - int(np.trace(m))
    kinds = {"shape only": 0, "texture only": 0, "both": 0}
    off = [(int(m[i, j]), i, j) for i in range(len(classes)) for j in range(len(classes)) if i != j and m[i, j]]
    for count, i, j in off:
        (si, ti), (sj, tj) = classes[i].split("_", 1), classes[j].split("_", 1)
        kinds["shape only" if ti == tj else "texture only" if si == sj else "both"] += count
    s = cell["spec"]
    per_class = np.diag(m) / m.sum(axis=1)
    order = np.argsort(per_class)
    twins = MIRROR_TWINS.get(s.get("variant", ""))
    mirror = ""
    if twins:  # the classes no flipped training can separate: how much of the error they are, and the rest's top-1
        pair = {f"{sh}_{a}": f"{sh}_{b}" for sh in {c.split("_", 1)[0] for c in classes}
                for a, b in (twins, twins[::-1])}
        idx = {c: i for i, c in enumerate(classes)}
        twin_errors = sum(int(m[idx[c], idx[o]]) for c, o in pair.items())
        rest = [i for i, c in enumerate(classes) if c not in pair]
        twin_rows = [idx[c] for c in pair]
        rest_top1 = m[rest, rest].sum() / m[rest].sum()  # right answers among the other classes' images
        twin_top1 = m[twin_rows, twin_rows].sum() / m[twin_rows].sum()
        mirror = (f" Of them, {twin_errors:,} ({100 * twin_errors / total:.1f}% of the images) take a {twins[0]} "
                  f"class for its {twins[1]} mirror twin or back; top-1 is {100 * rest_top1:.1f}% on the other "
                  f"{len(rest)} classes' images and {100 * twin_top1:.1f}% on the {len(pair)} twins'.")
    lines = [f"### {s['family']} {s['width']}x at {cell['pixels']} px, seed {s['seed']} ({s['label']})", "",
             f"top-1 {100 * cell['top1']:.2f}% on {total:,} validation images (the sweep's fit measured "
             f"{100 * cell['fit_top1']:.2f}%); {errors:,} errors: "
             + ", ".join(f"{k} {v:,} ({100 * v / max(1, errors):.0f}%)" for k, v in kinds.items()) + "." + mirror, "",
             "Lowest per-class accuracy: " + ", ".join(f"{classes[i]} {100 * per_class[i]:.0f}%" for i in order[:8]),
             "", "| true | predicted | images | share of the true class |", "|---|---|---|---|"]
    for count, i, j in sorted(off, reverse=True)[:pairs]:
        lines.append(f"| {classes[i]} | {classes[j]} | {count} | {100 * count / m[i].sum():.1f}% |")
    return lines + [""]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variant", default="tiny64-108")
    p.add_argument("--train-per-class", type=int, default=200)
    p.add_argument("--val-per-class", type=int, default=160)
    p.add_argument("--family", default="mobilenet_v1", choices=proxy_sweep.FAMILIES)
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--resolution", type=int, default=224, help="ImageNet-scale pixels (224 = the set's base)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", default="smoke")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--label", default="confusion")
    p.add_argument("--results", type=Path, default=ROOT / "results", help="where the sweep's data folders are")
    p.add_argument("--sub-eval-per-class", type=int, default=proxy_sweep.SUB_EVAL_PER_CLASS)
    p.add_argument("--out", type=Path, required=True, help="OUT.json and OUT.md are written (cells added)")
    a = p.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    cores = len(os.sched_getaffinity(0))
    if cores > a.threads:
        print(f"not pinned: {cores} cores in this process's affinity mask for {a.threads} thread(s); the sweep pins "
              f"its runs, so this top-1 may differ from its record (run under taskset -c N to reproduce it)")
    from repro.data.manifest import DataError

    try:
        proxy_sweep.variant(a.variant)
    except DataError as e:
        raise SystemExit(f"--variant: {e}") from None
    folder = proxy_sweep.prepare_in_child(a.results, a.train_per_class, a.val_per_class, a.sub_eval_per_class,
                                          a.variant)  # in a child, as the sweep does (numba's pool can hang an exit)
    # the sweep's own run specification, so the run's key (and, on the same CPU and threads, its top-1) is the
    # sweep record's with this seed and recipe
    ns = argparse.Namespace(families=[a.family], profile=a.profile, sets=a.set, family_sets=[], seeds=[a.seed],
                            label=a.label, train_per_class=a.train_per_class, val_per_class=a.val_per_class,
                            threads=a.threads, sub_eval_per_class=a.sub_eval_per_class, variant=a.variant)
    spec = proxy_sweep.specs(ns, [(a.width, a.resolution)])[0]
    cell = train_and_classify(spec, folder)
    from repro.atomic import atomic_write_text

    out_json = a.out.with_suffix(".json")
    cells = json.loads(out_json.read_text())["cells"] if out_json.exists() else []
    cells = [c for c in cells if c["key"] != cell["key"]] + [cell]
    atomic_write_text(out_json, json.dumps({"cells": cells}, indent=None))
    text = ["# Where the proxy reference networks' errors are", "",
            "Written by `scripts/proxy_confusion.py` (its docstring has the command); read in "
            "docs/proxy_protocol.md.", ""]
    for c in cells:
        text += summary(c)
    atomic_write_text(a.out.with_suffix(".md"), "\n".join(text))
    print("\n".join(summary(cell)))


if __name__ == "__main__":
    main()
