"""Evidence that the embedded data set neither saturates nor is unlearnable: top-1 of uniform MobileNet V1
at widths 0.25 / 0.5 / 1.0 and two input resolutions, 3 seeds each, trained from scratch on the full
training split and evaluated on val. Writes a Markdown table (mean +- std over seeds) and a JSON file.

    python scripts/tiny_evidence.py --data results/data/tiny --out docs/tiny_dataset_evidence
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from repro.arch import ArchConfig
from repro.data import Normalize, make_loader
from repro.models import build_model
from repro.profiles import TrainConfig
from repro.train.loop import evaluate, param_groups, train_one_epoch
from repro.train.trainer import build_scheduler

# the recipe measured here (the smoke profile's retraining recipe at the time of writing)
RECIPE = {"epochs": 6, "batch_size": 64, "lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-5,
          "label_smoothing": 0.1, "warmup_epochs": 0.5, "crop_scale": (0.35, 1.0)}


def run(data: Path, width: float, resolution: int, seed: int) -> dict:
    torch.manual_seed(seed)
    train, _ = make_loader(data / "train.beton", train=True, batch_size=RECIPE["batch_size"],
                           resolution=resolution, seed=seed, crop_scale=RECIPE["crop_scale"])
    val, _ = make_loader(data / "val.beton", train=False, batch_size=256, resolution=resolution)
    model = build_model(ArchConfig.uniform("mobilenet_v1", width, num_classes=16))
    model = model.to(memory_format=torch.channels_last)
    normalize = Normalize(channels_last=True)
    opt = torch.optim.SGD(param_groups(model, RECIPE["weight_decay"]), lr=RECIPE["lr"],
                          momentum=RECIPE["momentum"], nesterov=RECIPE["nesterov"])
    schedule = TrainConfig(epochs=RECIPE["epochs"], batch_size=RECIPE["batch_size"], lr=RECIPE["lr"],
                           warmup_epochs=RECIPE["warmup_epochs"], schedule="cosine")
    sched = build_scheduler(opt, schedule, len(train))
    start = time.perf_counter()
    for _ in range(RECIPE["epochs"]):
        train_one_epoch(model, train, opt, sched, normalize, RECIPE["label_smoothing"])
    result = evaluate(model, val, normalize)
    return {"width": width, "resolution": resolution, "seed": seed, "top1": result["top1"],
            "train_seconds": time.perf_counter() - start}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="path without suffix: writes .json and .md")
    p.add_argument("--widths", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    p.add_argument("--resolutions", type=int, nargs="+", default=[64, 32])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    a = p.parse_args()
    torch.set_num_threads(2)
    done = json.loads(a.out.with_suffix(".json").read_text()) if a.out.with_suffix(".json").exists() else []
    for r in a.resolutions:
        for w in a.widths:
            for s in a.seeds:
                if any((d["width"], d["resolution"], d["seed"]) == (w, r, s) for d in done):
                    continue
                done.append(run(a.data, w, r, s))
                print(json.dumps(done[-1]), flush=True)
                a.out.with_suffix(".json").write_text(json.dumps(done, indent=1))
    lines = ["| width | resolution (tiny px / ImageNet-scale px) | top-1 % (mean ± std, 3 seeds) | train s |",
             "|---|---|---|---|"]
    for r in a.resolutions:
        for w in a.widths:
            runs = [d for d in done if d["width"] == w and d["resolution"] == r]
            acc = [100 * d["top1"] for d in runs]
            lines.append(f"| {w}x | {r} / {r * 224 // 64} | {statistics.mean(acc):.1f} ± "
                         f"{statistics.stdev(acc) if len(acc) > 1 else 0:.1f} (n={len(acc)}) | "
                         f"{statistics.mean(d['train_seconds'] for d in runs):.0f} |")
    a.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
