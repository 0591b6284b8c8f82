"""MetaPruning's PruningNet on a GPU at the ImageNet profile's sizes: training step time, images per second
and peak memory for MobileNet V1 (hidden 32) and V2 (hidden 64), against the plain canonical network, on
random 224 px batches. What the CPU cannot tell: whether the imagenet profile's PruningNet training (64
epochs) is affordable. Writes one JSON to --out.

    python scripts/gpu_pruningnet_check.py --out results/gpu_pruningnet.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F


def measure(net, step_arch, batch: int, steps: int, device) -> dict:
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=4e-5)
    x = torch.randn(batch, 3, 224, 224, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=device)
    torch.cuda.reset_peak_memory_stats(device)
    times = []
    for i in range(steps + 3):
        step_arch(i)
        torch.cuda.synchronize(device)
        t = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        torch.cuda.synchronize(device)
        if i >= 3:
            times.append(time.perf_counter() - t)
    ms = 1000 * float(np.median(times))
    return {"ms_per_step": ms, "images_per_second": batch / ms * 1000,
            "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30,
            "trainable_params": sum(p.numel() for p in params)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=10)
    args = p.parse_args()
    from baselines.metapruning_net import SCALES, PruningNet, encoding
    from repro.arch import ArchConfig
    from repro.models import build_model

    device = torch.device("cuda")
    out = {"device": torch.cuda.get_device_name(device), "torch": torch.__version__, "batch": args.batch,
           "precision": "bf16 autocast, channels-last", "results": []}
    for family, hidden in (("mobilenet_v1", 32), ("mobilenet_v2", 64)):
        enc = encoding(family)
        rng = np.random.default_rng(0)
        net = PruningNet(enc, 1000, hidden).to(device).to(memory_format=torch.channels_last)
        archs = [enc.decode(rng.integers(0, len(SCALES), enc.size)) for _ in range(args.steps + 3)]
        r = measure(net, lambda i, n=net, a=archs: n.set_arch(a[i]), args.batch, args.steps, device)
        out["results"].append({"family": family, "what": f"PruningNet hidden {hidden}, random encodings", **r})
        del net
        torch.cuda.empty_cache()
        plain = build_model(ArchConfig.canonical(family)).to(device).to(memory_format=torch.channels_last)
        r = measure(plain, lambda i: None, args.batch, args.steps, device)
        out["results"].append({"family": family, "what": "plain canonical network", **r})
        del plain
        torch.cuda.empty_cache()
        print(json.dumps(out["results"][-2:]), flush=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
