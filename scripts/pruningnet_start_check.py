"""Train MetaPruning's PruningNet for a profile's number of steps and print its training loss (first 20 -> last 20
steps) and the sub-eval top-1 of two extracted networks: the measurement behind the generators' starting scale
(docs/baselines.md, "MetaPruning's PruningNet").

    PYTHONPATH=. python scripts/pruningnet_start_check.py --start conv --archs random --hidden 8

--start default undoes the conv-scale start (PyTorch's nn.Linear defaults, as in their code); --archs picks what
each batch trains: random (MetaPruning: a random encoding), uniform (one random width for every gene), widest.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch


def main() -> None:
    from baselines.metapruning_net import SCALES, PruningNet, encoding
    from repro.data import resize_batch
    from repro.pipeline import Context, prepare_data
    from repro.profiles import load_profile
    from repro.train.trainer import build_scheduler, make_optimizer, make_precision, seed_everything, train_step

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--family", default="mobilenet_v1")
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--start", choices=["conv", "default"], default="conv")
    ap.add_argument("--archs", choices=["random", "uniform", "widest"], default="random")
    ap.add_argument("--hidden", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=0.25, help="at batch 512 (theirs), scaled to the recipe's batch")
    args = ap.parse_args()

    profile = load_profile(args.profile)
    data = prepare_data(profile, quiet=True)
    ctx = Context(profile, 0, data, "results", quiet=True, log=lambda s: None)
    recipe = profile.train_for(args.family)
    enc = encoding(args.family)
    seed_everything(0)
    net = PruningNet(enc, data.num_classes, args.hidden)
    if args.start == "default":  # what nn.Linear's reset_parameters gives, as their generators start
        for g in net.generators.values():
            g[-1].reset_parameters()
    sub = ctx.subsets(args.family)
    net = sub.prepare(net)
    steps = args.epochs * len(sub.train_loader)
    cfg = replace(recipe, epochs=steps, warmup_epochs=0.0, schedule="linear", nesterov=False, lr=args.lr,
                  lr_reference_batch=512)
    opt, dtype_scaler = make_optimizer(net, cfg, 1), make_precision(recipe, sub.device)
    sched = build_scheduler(opt, cfg, 1)
    rng, batches, losses, t0 = np.random.default_rng(0), sub.train_batches(0), [], time.perf_counter()
    for _ in range(steps):
        if args.archs == "widest":
            ids = [len(SCALES) - 1] * enc.size
        elif args.archs == "uniform":
            ids = [int(rng.integers(0, len(SCALES)))] * enc.size
        else:
            ids = rng.integers(0, len(SCALES), enc.size)
        arch = enc.decode(ids).replace(num_classes=data.num_classes)
        net.set_arch(arch)
        net.train()
        x, y = next(batches)
        x = resize_batch(sub.normalize(x), sub.resolution(arch.resolution))
        losses.append(float(train_step(net, x, y.to(sub.device), opt, dtype_scaler[1], recipe.label_smoothing,
                                       dtype_scaler[0])))
        sched.step()
    print(f"{args.family} start={args.start} archs={args.archs} hidden={args.hidden}: {steps} steps in "
          f"{time.perf_counter() - t0:.0f} s, training loss {np.mean(losses[:20]):.3f} -> {np.mean(losses[-20:]):.3f}")
    for gene in (len(SCALES) - 1, 13):
        arch = enc.decode([gene] * enc.size).replace(num_classes=data.num_classes)
        model = sub.recalibrate(sub.prepare(net.extract(arch)), arch.resolution, 4).eval()
        result = sub.evaluate(model, arch.resolution)
        print(f"  every gene at scale {SCALES[gene]:.2f}: sub-eval top-1 {100 * result['top1']:.1f}%")


if __name__ == "__main__":
    torch.set_num_threads(max(1, torch.get_num_threads()))
    main()
