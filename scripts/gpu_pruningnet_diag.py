"""Where a MetaPruning PruningNet training step spends its time on a GPU (the H100 step took 6.6 s against
31.6 ms for the plain network: docs/baselines_evidence/gpu_pruningnet_h100.md). MobileNet V1, hidden 32,
random 224 px batches, SGD; each variant timed per step (synchronized) and printed as one JSON line:

* ``random``: a new random encoding every step (the training's case; every convolution meets new shapes);
* ``pool``: encodings drawn from a pool of 3, so after the first pass every shape has been seen: if the cold
  steps are slow and the warm ones fast, the cost is per new shape (a per-shape set-up that a long training
  amortizes over the 31 x 31 shapes a layer can take), not per step;
* ``generators``: the generators alone (forward and backward of every generated weight, no convolution);
* ``plain_random``: a plain network built at a random architecture each step (new shapes, no generators);
* each under bf16 autocast + channels-last (the check's setting) and fp32 contiguous;
* a torch.profiler table (top operators by self CPU and CUDA time) of cold steps.

    PYTHONPATH=. python scripts/gpu_pruningnet_diag.py --out DIR
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


def _step_times(net, set_arch, steps, batch, bf16, layout, device, only_generators=False):
    """``bf16``: True (bfloat16), False (fp32) or a key of DTYPES."""
    dtype = DTYPES[bf16] if isinstance(bf16, str) else (torch.bfloat16 if bf16 else None)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, 224, 224, device=device).contiguous(memory_format=layout)
    y = torch.randint(0, 1000, (batch,), device=device)
    times = []
    for i in range(steps):
        set_arch(i)
        _sync(device)
        t = time.perf_counter()
        ctx = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
        with ctx:
            if only_generators:
                loss = sum(w.float().square().mean() for w in only_generators(i).values() if w.requires_grad)
            else:
                loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(device)
        times.append(1000 * (time.perf_counter() - t))
    return [round(t, 1) for t in times]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=9)
    p.add_argument("--cold", nargs="*", default=None, metavar="DTYPE:LAYOUT",
                   help="only time new random encodings (fresh shapes) per variant, e.g. fp16:cl bf16:contig "
                        "fp32:cl, then profile one cold step per operator and input shape")
    p.add_argument("--cudnn", choices=("on", "off"), default="on", help="off: PyTorch's own kernels")
    p.add_argument("--device", default="cuda", help="cpu only to try the script")
    p.add_argument("--budget-s", type=float, default=200.0, help="stop starting new variants after this")
    args = p.parse_args()
    from baselines.metapruning_net import SCALES, PruningNet, encoding
    from repro.models import build_model

    start = time.perf_counter()
    torch.backends.cudnn.enabled = args.cudnn == "on"
    device = torch.device(args.device)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    report = {"device": name, "torch": torch.__version__,
              "cudnn": torch.backends.cudnn.version(), "cudnn_benchmark": torch.backends.cudnn.benchmark,
              "cudnn_enabled": torch.backends.cudnn.enabled,
              "batch": args.batch, "family": "mobilenet_v1", "hidden": 32, "ms_per_step": {}}
    enc = encoding("mobilenet_v1")
    rng = np.random.default_rng(0)
    archs = [enc.decode(rng.integers(0, len(SCALES), enc.size)) for _ in range(args.steps)]
    pool = archs[:3]

    def run(name, bf16, layout, fn):
        if time.perf_counter() - start > args.budget_s:
            report["ms_per_step"][name] = "skipped: out of time"
            return
        report["ms_per_step"][name] = fn(bf16, layout)
        print(json.dumps({name: report["ms_per_step"][name]}), flush=True)
        torch.cuda.empty_cache()

    net = PruningNet(enc, 1000, 32).to(device)
    if args.cold is not None:
        layouts = {"cl": torch.channels_last, "contig": torch.contiguous_format}
        for variant in args.cold:
            dt, lay = variant.split(":")
            fresh = [enc.decode(rng.integers(0, len(SCALES), enc.size)) for _ in range(args.steps)]
            net.to(memory_format=layouts[lay])
            run(f"cold_{dt}_{lay}", dt, layouts[lay], lambda b, la, f=fresh: _step_times(
                net, lambda i: net.set_arch(f[i]), args.steps, args.batch, b, la, device))
        from torch.profiler import ProfilerActivity, profile

        dt, lay = args.cold[0].split(":")
        net.to(memory_format=layouts[lay])
        one = [enc.decode(rng.integers(0, len(SCALES), enc.size))]
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            _step_times(net, lambda i: net.set_arch(one[i]), 1, args.batch, dt, layouts[lay], device)
        table = prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=25,
                                                                   max_name_column_width=40)
        (out_dir / f"profile_cold_shapes_cudnn_{args.cudnn}.txt").write_text(table)
        print(table, flush=True)
        (out_dir / f"pruningnet_diag_cold_cudnn_{args.cudnn}.json").write_text(json.dumps(report, indent=1))
        print(json.dumps(report), flush=True)
        return
    for bf16, layout, tag in ((True, torch.channels_last, "bf16_cl"), (False, torch.contiguous_format, "fp32")):
        net.to(memory_format=layout)
        run(f"pool_{tag}", bf16, layout, lambda b, lay: _step_times(
            net, lambda i: net.set_arch(pool[i % 3]), args.steps, args.batch, b, lay, device))
        run(f"random_{tag}", bf16, layout, lambda b, lay: _step_times(
            net, lambda i: net.set_arch(archs[i]), args.steps, args.batch, b, lay, device))

    full = {n: (n, tuple(p.shape)) for n, p in net.net.named_parameters() if p.ndim == 4}

    def gen_only(bf16, layout):  # every generator's full output, forward and backward, no convolution
        return _step_times(net, lambda i: None, args.steps, args.batch, bf16, layout, device,
                           only_generators=lambda i: net._tensors(full, archs[i]))

    run("generators_bf16", True, torch.contiguous_format, gen_only)
    run("generators_fp32", False, torch.contiguous_format, gen_only)

    def plain_random(bf16, layout):
        times = []
        for i in range(args.steps):
            m = build_model(archs[i]).to(device).to(memory_format=layout)
            times += _step_times(m, lambda j: None, 1, args.batch, bf16, layout, device)
        return times

    run("plain_random_bf16_cl", True, torch.channels_last, plain_random)

    if time.perf_counter() - start < args.budget_s:
        from torch.profiler import ProfilerActivity, profile

        net.to(memory_format=torch.channels_last)
        fresh = [enc.decode(rng.integers(0, len(SCALES), enc.size)) for _ in range(2)]
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=acts) as prof:
            _step_times(net, lambda i: net.set_arch(fresh[i]), 2, args.batch, True, torch.channels_last, device)
        for key in ("self_cpu_time_total", "self_cuda_time_total")[:len(acts)]:
            table = prof.key_averages().table(sort_by=key, row_limit=15, max_name_column_width=60)
            (out_dir / f"profile_{key}.txt").write_text(table)
            print(table, flush=True)
    report["seconds"] = round(time.perf_counter() - start, 1)
    (out_dir / "pruningnet_diag.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
