"""Evidence for the embedded data set and the smoke recipe: top-1 of uniform MobileNet V1 at widths 0.25 /
0.5 / 1.0 and two input resolutions, several seeds each, trained from scratch with ``repro.train.fit`` on
the full training split and evaluated on val. Writes a Markdown table (mean +- std over seeds) and a JSON
file holding every run; a rerun skips the runs the JSON already holds.

    python scripts/tiny_evidence.py --data results/data/tiny --out docs/tiny_dataset_evidence

The recipe is the smoke profile's (``repro/profiles/smoke.yaml``); ``--epochs`` overrides its length.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from pathlib import Path

import torch

from repro.arch import ArchConfig
from repro.atomic import atomic_write_text
from repro.data.manifest import read_manifest
from repro.models import build_model
from repro.profiles import load_profile
from repro.train.trainer import TrainData, fit


def run(data: TrainData, recipe, width: float, resolution: int, seed: int) -> dict:
    torch.manual_seed(seed)
    model = build_model(ArchConfig.uniform("mobilenet_v1", width, resolution, num_classes=data.num_classes))
    out = fit(model, data, recipe, seed, resolution, log=lambda line: None)
    return {"width": width, "imagenet_resolution": resolution, "pixels": out["resolution"], "seed": seed,
            "epochs": recipe.epochs, "top1": out["top1"], "top5": out["top5"],
            "train_seconds": out["train_seconds"], "images_per_second": out["images_per_second"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="a prepared folder (python -m data_prep tiny)")
    p.add_argument("--out", type=Path, required=True, help="path without suffix: writes .json and .md")
    p.add_argument("--widths", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    p.add_argument("--resolutions", type=int, nargs="+", default=[224, 112], help="ImageNet-scale pixels")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=None, help="default: the smoke profile's")
    a = p.parse_args()
    torch.set_num_threads(2)
    recipe = load_profile("smoke").train
    if a.epochs is not None:
        recipe = dataclasses.replace(recipe, epochs=a.epochs)
    manifest = read_manifest(a.data)
    if manifest is None:
        raise SystemExit(f"{a.data} holds no manifest.json: make it with python -m data_prep tiny --out {a.data}")
    data = TrainData(a.data / "train.beton", a.data / "val.beton", len(manifest["classes"]),
                     int(manifest["base_resolution"]))
    path = a.out.with_suffix(".json")
    done = json.loads(path.read_text()) if path.exists() else []
    for r in a.resolutions:
        for w in a.widths:
            for s in a.seeds:
                if any((d["width"], d["imagenet_resolution"], d["seed"], d["epochs"]) == (w, r, s, recipe.epochs)
                       for d in done):
                    continue
                done.append(run(data, recipe, w, r, s))
                print(json.dumps(done[-1]), flush=True)
                atomic_write_text(path, json.dumps(done, indent=1))
    lines = ["| width | resolution (tiny px / ImageNet-scale px) | epochs | top-1 % (mean ± std) | seeds' top-1 % "
             "| train s (mean) |", "|---|---|---|---|---|---|"]
    for epochs in sorted({d["epochs"] for d in done}):
        for r in a.resolutions:
            for w in a.widths:
                runs = [d for d in done if (d["width"], d["imagenet_resolution"], d["epochs"]) == (w, r, epochs)]
                if not runs:
                    continue
                acc = [100 * d["top1"] for d in runs]
                sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
                lines.append(f"| {w}x | {runs[0]['pixels']} / {r} | {epochs} | {statistics.mean(acc):.1f} ± {sd:.1f} "
                             f"(n={len(acc)}) | {', '.join(f'{x:.1f}' for x in acc)} | "
                             f"{statistics.mean(d['train_seconds'] for d in runs):.0f} |")
    atomic_write_text(a.out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
