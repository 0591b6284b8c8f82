"""Training throughput on this machine's cores: one process with every core's thread against one pinned
one-thread process per core, side by side (what ``run-table --jobs`` chooses between). Synthetic batches of
64 at 32 px, the smoke recipe's SGD, channels-last; prints images/s per family. Run alone on the machine:

    python scripts/jobs_probe.py [--steps 30] [--family mobilenet_v1 ...]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time


def _train(family: str, width: float, steps: int, threads: int, cores: list[int] | None, out) -> None:
    if cores is not None:
        os.sched_setaffinity(0, cores)
    import torch

    from repro.arch import ArchConfig
    from repro.models import build_model
    from repro.train.loop import param_groups
    from repro.train.trainer import train_step

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(ArchConfig.uniform(family, width, resolution=224, num_classes=16))
    model = model.to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(param_groups(model, 5e-5), lr=0.01, momentum=0.9, nesterov=True)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    x = torch.randn(64, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 16, (64,))
    for _ in range(3):
        train_step(model, x, y, opt, scaler, 0.1, None)
    start = time.perf_counter()
    for _ in range(steps):
        train_step(model, x, y, opt, scaler, 0.1, None)
    out.put(64 * steps / (time.perf_counter() - start))


def _run(family: str, width: float, steps: int, shares: list[list[int]], threads: int) -> float:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_train, args=(family, width, steps, threads, share, out)) for share in shares]
    for p in procs:
        p.start()
    rates = [out.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(rates)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--family", action="append")
    a = p.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    rows = []
    for family, width in [(f, 0.5 if f != "resnet50" else 0.25) for f in
                          (a.family or ["mobilenet_v1", "mobilenet_v2", "resnet50"])]:
        one = _run(family, width, a.steps, [cores], len(cores))
        many = _run(family, width, a.steps, [[c] for c in cores], 1)
        rows.append({"family": family, "width": width, "cores": len(cores), "one_process_img_s": round(one, 1),
                     "one_per_core_img_s": round(many, 1), "speedup": round(many / one, 2)})
        print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
