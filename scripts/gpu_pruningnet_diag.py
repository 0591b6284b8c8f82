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

``--cold fp16:cl bf16:contig ...`` instead times only new encodings under each precision:layout, then
profiles one cold step by operator and input shape (which convolutions pay); ``--cudnn off`` runs every
variant on PyTorch's own kernels.

    PYTHONPATH=. python scripts/gpu_pruningnet_diag.py --out DIR
    PYTHONPATH=. python scripts/gpu_pruningnet_diag.py --out DIR --steps 4 --cold fp16:cl bf16:contig fp32:cl
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


DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}  # autocast dtype (fp32: no autocast)
LAYOUTS = {"cl": torch.channels_last, "contig": torch.contiguous_format}


def _step_times(net, set_arch, steps, batch, precision, layout, device, only_generators=None):
    """Milliseconds of each of ``steps`` synchronized SGD steps; ``precision`` a key of DTYPES."""
    dtype = DTYPES[precision]
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

    def profile_steps(steps, precision, layout, by_shape):
        """Profile ``steps`` steps of new encodings; write and print the operator table(s)."""
        from torch.profiler import ProfilerActivity, profile

        net.to(memory_format=layout)
        fresh = [enc.decode(rng.integers(0, len(SCALES), enc.size)) for _ in range(steps)]
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" and not by_shape else [])
        with profile(activities=acts, record_shapes=by_shape) as prof:
            _step_times(net, lambda i: net.set_arch(fresh[i]), steps, args.batch, precision, layout, device)
        for key in ("self_cpu_time_total", "self_cuda_time_total")[:len(acts)]:
            table = prof.key_averages(group_by_input_shape=by_shape).table(
                sort_by=key, row_limit=25 if by_shape else 15, max_name_column_width=40 if by_shape else 60)
            name = f"profile_cold_shapes_cudnn_{args.cudnn}.txt" if by_shape else f"profile_{key}.txt"
            (out_dir / name).write_text(table)
            print(table, flush=True)

    def run(name, precision, layout, fn):
        if time.perf_counter() - start > args.budget_s:
            report["ms_per_step"][name] = "skipped: out of time"
            return
        report["ms_per_step"][name] = fn(precision, layout)
        print(json.dumps({name: report["ms_per_step"][name]}), flush=True)
        torch.cuda.empty_cache()

    net = PruningNet(enc, 1000, 32).to(device)
    if args.cold is not None:
        for variant in args.cold:
            dt, lay = variant.split(":")
            fresh = [enc.decode(rng.integers(0, len(SCALES), enc.size)) for _ in range(args.steps)]
            net.to(memory_format=LAYOUTS[lay])
            run(f"cold_{dt}_{lay}", dt, LAYOUTS[lay], lambda pr, la, f=fresh: _step_times(
                net, lambda i: net.set_arch(f[i]), args.steps, args.batch, pr, la, device))
        dt, lay = args.cold[0].split(":")
        profile_steps(1, dt, LAYOUTS[lay], by_shape=True)
        (out_dir / f"pruningnet_diag_cold_cudnn_{args.cudnn}.json").write_text(json.dumps(report, indent=1))
        print(json.dumps(report), flush=True)
        return
    for precision, layout, tag in (("bf16", torch.channels_last, "bf16_cl"), ("fp32", torch.contiguous_format, "fp32")):
        net.to(memory_format=layout)
        run(f"pool_{tag}", precision, layout, lambda pr, lay: _step_times(
            net, lambda i: net.set_arch(pool[i % 3]), args.steps, args.batch, pr, lay, device))
        run(f"random_{tag}", precision, layout, lambda pr, lay: _step_times(
            net, lambda i: net.set_arch(archs[i]), args.steps, args.batch, pr, lay, device))

    full = {n: (n, tuple(p.shape)) for n, p in net.net.named_parameters() if p.ndim == 4}

    def gen_only(precision, layout):  # every generator's full output, forward and backward, no convolution
        return _step_times(net, lambda i: None, args.steps, args.batch, precision, layout, device,
                           only_generators=lambda i: net._tensors(full, archs[i]))

    run("generators_bf16", "bf16", torch.contiguous_format, gen_only)
    run("generators_fp32", "fp32", torch.contiguous_format, gen_only)

    def plain_random(precision, layout):
        times = []
        for i in range(args.steps):
            m = build_model(archs[i]).to(device).to(memory_format=layout)
            times += _step_times(m, lambda j: None, 1, args.batch, precision, layout, device)
        return times

    run("plain_random_bf16_cl", "bf16", torch.channels_last, plain_random)

    if time.perf_counter() - start < args.budget_s:
        profile_steps(2, "bf16", torch.channels_last, by_shape=False)
    report["seconds"] = round(time.perf_counter() - start, 1)
    (out_dir / "pruningnet_diag.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
