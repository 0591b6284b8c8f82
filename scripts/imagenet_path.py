"""The ImageNet path end to end at ImageNet geometry, on synthetic ImageNet-like JPEGs (the speed issue's GPU
check): ``python scripts/imagenet_path.py --out DIR`` on a machine with one GPU, about 8 minutes.

1. writes ``--classes`` x ``--per-class`` photo-like JPEGs of about 400x350 px and ~110 KB (smooth colour fields,
   edges and grain; labels are the folders) and prepares them with ``data_prep``'s writer, as ``data_prep
   prepare`` does (the imagenet profile's write parameters, every core);
2. FFCV loader throughput alone: the training pipeline at 224 px (random-resized crop and flip), every core;
3. training throughput of ResNet-50, MobileNet V1 and V2 (canonical networks, 1000 classes, 224 px) with the
   imagenet profile's recipe per family (per-GPU batch, SGD, label smoothing, channels-last and autocast
   ``auto``: bfloat16 channels-last on CUDA), data loading included: first from the FFCV loader, then from
   torchvision's ``ImageFolder`` + ``DataLoader`` over the same JPEGs with the same worker count, in the same
   run;
4. writes everything as ``imagenet_path.json`` under ``--out`` beside FFCV's published ResNet-50 figure (about
   2,800 images/s per A100 at their low-resolution epochs), with the device named.

Without FFCV (a GPU machine with its own Python), the FFCV rows say "not measured here: <why>" and the rest
runs: torchvision's loader and the trainer. ``--device cpu --quick`` runs the whole path on a CPU in a minute at
tiny sizes (the tests do); those numbers are no measurement of anything.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from multiprocessing import Pool
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

FFCV_PUBLISHED = {"network": "resnet50", "images_per_s_per_gpu": 2800, "gpu": "NVIDIA A100",
                  "where": "FFCV's ImageNet ResNet-50 configurations at their low-resolution epochs (~160-192 px), "
                           "as the speed issue quotes it"}
FAMILIES = ("resnet50", "mobilenet_v1", "mobilenet_v2")


def _photo(i: int, width: int, height: int) -> np.ndarray:
    """A photo-like image: smooth colour fields, mid-scale edges and fine grain (~110 KB at 400x350, q 95)."""
    from PIL import Image

    rng = np.random.default_rng(i)
    coarse = Image.fromarray(rng.integers(0, 255, (7, 8, 3), dtype=np.uint8)).resize((width, height), Image.BICUBIC)
    mid = Image.fromarray(rng.integers(0, 255, (44, 50, 3), dtype=np.uint8)).resize((width, height),
                                                                                   Image.BILINEAR)
    img = 0.5 * np.asarray(coarse, np.float32) + 0.5 * np.asarray(mid, np.float32)
    img += rng.normal(0, 17, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _write_one(job: tuple[int, str, int, int, int]) -> int:
    from PIL import Image

    i, path, width, height, quality = job
    # sizes vary around the nominal one, as ImageNet's do
    rng = np.random.default_rng(10_000_000 + i)
    w, h = (int(width * rng.uniform(0.85, 1.15)), int(height * rng.uniform(0.85, 1.15)))
    Image.fromarray(_photo(i, w, h)).save(path, format="JPEG", quality=quality)
    return os.path.getsize(path)


def write_jpegs(root: Path, classes: int, per_class: int, width: int, height: int, quality: int,
                workers: int) -> dict:
    """``classes`` x ``per_class`` JPEGs under ``root/train/<class>/``; their count, mean size and time."""
    jobs = []
    for c in range(classes):
        d = root / "train" / f"n{c:08d}"
        d.mkdir(parents=True, exist_ok=True)
        jobs += [(c * per_class + k, str(d / f"{k:04d}.JPEG"), width, height, quality) for k in range(per_class)]
    start = time.perf_counter()
    with Pool(workers) as pool:
        sizes = pool.map(_write_one, jobs, chunksize=16)
    return {"images": len(sizes), "classes": classes, "mean_kb": round(float(np.mean(sizes)) / 1e3, 1),
            "nominal_px": [width, height], "jpeg_quality": quality, "seconds": round(time.perf_counter() - start, 1)}


def _rate(batches, warmup: int, steps: int, step=None) -> dict:
    """Images per second over ``steps`` batches after ``warmup`` (at least 1) untimed ones (FFCV compiles on
    its first); ``step(x, y)`` runs on each batch (training), the device synchronized before each clock read.
    A loader shorter than that starts another pass."""
    import torch

    def batches_forever():
        while True:
            yield from batches

    def sync() -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    it = batches_forever()
    for _ in range(max(1, warmup)):
        x, y = next(it)
        if step is not None:
            step(x, y)
    sync()
    n, start = 0, time.perf_counter()
    for _ in range(steps):
        x, y = next(it)
        if step is not None:
            step(x, y)
        n += len(x)
    sync()
    seconds = time.perf_counter() - start
    return {"images_per_s": round(n / seconds, 1), "images": n, "seconds": round(seconds, 2)}


def _trainer(family: str, recipe, device, side: int):
    """(step(x, y), what it runs): one SGD step of the canonical network on a uint8 batch from a loader."""
    import torch

    from repro.arch import ArchConfig
    from repro.data import Normalize
    from repro.models import build_model
    from repro.train.trainer import make_optimizer, make_precision, train_step, use_channels_last

    model = build_model(ArchConfig.canonical(family, side, 1000)).to(device)
    channels_last = use_channels_last(recipe.channels_last)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, recipe, 1)
    dtype, scaler = make_precision(recipe, device)
    normalize = Normalize(channels_last=channels_last).to(device)
    model.train()

    def step(x, y):
        x = normalize(x.to(device, non_blocking=True))
        train_step(model, x, y.to(device, non_blocking=True), optimizer, scaler, recipe.label_smoothing, dtype)

    return step, {"channels_last": channels_last, "autocast": None if dtype is None else str(dtype).split(".")[-1]}


def _torchvision_loader(folder: Path, batch: int, side: int, workers: int, cuda: bool):
    """torchvision's ImageFolder + DataLoader with the same crop and flip, uint8 out (normalized on the device,
    as the FFCV path is)."""
    import torch
    from torchvision import datasets, transforms

    ops = [transforms.RandomResizedCrop(side), transforms.RandomHorizontalFlip(), transforms.PILToTensor()]
    ds = datasets.ImageFolder(str(folder), transforms.Compose(ops))
    return torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                                       pin_memory=cuda, persistent_workers=workers > 0,
                                       prefetch_factor=4 if workers > 0 else None)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--device", default="auto", help="cuda | cpu | auto")
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--per-class", type=int, default=12, help="JPEGs per class (12 x 1000 = 12,000, ~1.3 GB)")
    ap.add_argument("--size", default="400x350", help="nominal JPEG size, WxH")
    ap.add_argument("--quality", type=int, default=95)
    ap.add_argument("--side", type=int, default=224, help="training resolution")
    ap.add_argument("--steps", type=int, default=40, help="timed batches per figure")
    ap.add_argument("--warmup", type=int, default=8, help="untimed batches before each figure")
    ap.add_argument("--workers", type=int, default=0, help="loader workers (default: every core)")
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--quick", action="store_true",
                    help="tiny sizes for a CPU check: 4 classes x 8 images of 64x56 px, 32 px, batch 4, 3 steps")
    args = ap.parse_args(argv)
    import torch

    from repro.profiles import load_profile

    if args.quick:
        args.classes, args.per_class, args.size, args.side, args.steps, args.warmup = 4, 8, "64x56", 32, 3, 1
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    workers = args.workers or len(os.sched_getaffinity(0))
    width, height = (int(v) for v in args.size.lower().split("x"))
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    profile = load_profile("imagenet")
    report: dict = {
        "what": "the ImageNet path at ImageNet geometry on synthetic JPEGs (scripts/imagenet_path.py)",
        "quick": args.quick, "device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
        "device_kind": device.type, "cpu_cores": workers, "torch": torch.__version__,
        "python": platform.python_version(), "side_px": args.side, "ffcv_published": FFCV_PUBLISHED,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    def save() -> None:
        tmp = out / "imagenet_path.json.tmp"
        tmp.write_text(json.dumps(report, indent=1) + "\n")
        tmp.replace(out / "imagenet_path.json")

    images = out / "imagefolder"
    report["jpegs"] = write_jpegs(images, args.classes, args.per_class, width, height, args.quality, workers)
    print("wrote", report["jpegs"], flush=True)
    save()
    try:
        import ffcv  # noqa: F401

        from data_prep.write import WriteParams, prepare

        dp = profile.data
        start = time.perf_counter()
        prepare(images, out / "ffcv", per_class=min(dp.per_class or 50, max(1, args.per_class // 4)),
                params=WriteParams(), workers=workers, quiet=True, log=lambda s: None)
        beton = out / "ffcv" / "train.beton"
        report["ffcv"] = {"version": ffcv.__version__, "prepare_seconds": round(time.perf_counter() - start, 1),
                          "beton_mb": round(beton.stat().st_size / 1e6, 1)}
    except Exception as e:  # noqa: BLE001 - no FFCV here: measure the rest, say so
        beton = None
        report["ffcv"] = {"not_measured_here": f"{type(e).__name__}: {e}"}
        print("FFCV not measured here:", report["ffcv"]["not_measured_here"], flush=True)
    save()

    families = [f for f in args.families.split(",") if f]
    recipes = {f: profile.train_for(f) for f in families}
    if beton is not None:
        from repro.data import make_loader

        batch = max(r.batch_size for r in recipes.values())
        loader, _ = make_loader(beton, train=True, batch_size=min(batch, args.classes * args.per_class),
                                resolution=args.side, num_workers=workers)
        report["ffcv"]["loader_alone"] = {"batch": loader.batch_size, **_rate(loader, args.warmup, args.steps)}
        print("FFCV loader alone:", report["ffcv"]["loader_alone"], flush=True)
        save()
    report["training"] = {}
    for family in families:
        recipe = recipes[family]
        batch = min(recipe.batch_size, args.classes * args.per_class)
        row: dict = {"batch": batch, "lr": recipe.lr, "recipe": "imagenet profile, per GPU"}
        try:
            step, how = _trainer(family, recipe, device, args.side)
            row.update(how)
            if beton is not None:
                loader, _ = make_loader(beton, train=True, batch_size=batch, resolution=args.side,
                                        num_workers=workers)
                row["ffcv"] = _rate(loader, args.warmup, args.steps, step)
            else:
                row["ffcv"] = {"not_measured_here": report["ffcv"]["not_measured_here"]}
            tv = _torchvision_loader(images / "train", batch, args.side, workers, cuda)
            row["torchvision"] = _rate(tv, args.warmup, args.steps, step)
            del tv
            synthetic = [(torch.randint(0, 255, (batch, 3, args.side, args.side), dtype=torch.uint8),
                          torch.randint(0, 1000, (batch,)))] * 2
            row["synthetic_tensors"] = _rate(synthetic, args.warmup, args.steps, step)
        except Exception as e:  # noqa: BLE001 - one family's failure (memory, a missing kernel) is reported
            row["error"] = f"{type(e).__name__}: {e}"
            traceback.print_exc()
        report["training"][family] = row
        print(family, row, flush=True)
        save()
        if cuda:
            torch.cuda.empty_cache()
    report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    save()
    return report


if __name__ == "__main__":
    main()
