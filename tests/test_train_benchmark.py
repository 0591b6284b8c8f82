"""Benchmark: training throughput (images/s) and peak memory. Runs only with ``pytest tests/ --benchmark``.

* CPU: MobileNet V1 0.5x with the smoke recipe (batch 64, SGD, fp32 channels-last) at 64 px (the engine
  issue's reference point) and at the smoke profile's 32 px (the embedded data set's base resolution), model
  only (synthetic batches) and through the FFCV loader on the embedded data set's images.
* CUDA (skipped without a GPU): MobileNet V2 and ResNet-50 at 224 px, AMP fp16 + channels-last, synthetic
  data (FFCV's published anchor: ResNet-50 at about 2,800 images/s per A100).
"""

from __future__ import annotations

import resource
import time

import pytest
import torch

from repro.arch import ArchConfig
from repro.data import Normalize
from repro.models import build_model
from repro.profiles import load_profile
from repro.train.loop import param_groups
from repro.train.trainer import amp_dtype, train_step


def _throughput(model, batches, device, dtype, steps: int, warmup: int = 3) -> float:
    opt = torch.optim.SGD(param_groups(model, 5e-5), lr=0.01, momentum=0.9, nesterov=True)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    normalize = Normalize(channels_last=True).to(device)
    model.train()
    n, start = 0, None
    for i, (x, y) in enumerate(batches()):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start, n = time.perf_counter(), 0
        train_step(model, normalize(x), y.to(device), opt, scaler, 0.1, dtype)
        n += len(y)
        if i + 1 == warmup + steps:
            break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("resolution", [64, 32])
def test_cpu_training_throughput_mobilenet_v1(benchmark, tmp_path, resolution):
    from data_prep import tiny
    from data_prep.write import WriteParams, prepare
    from repro.data import make_loader

    recipe = load_profile("smoke").train
    arch = ArchConfig.uniform("mobilenet_v1", 0.5, resolution=224, num_classes=16)
    device = torch.device("cpu")
    model = build_model(arch).to(memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 255, (recipe.batch_size, 3, resolution, resolution), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, 16, (recipe.batch_size,), generator=gen)
    synthetic = _throughput(model, lambda: iter(lambda: (x, y), None), device, None, steps=20)

    tiny.write_imagefolder(tmp_path / "img", seed=0, train_per_class=40, val_per_class=1, quiet=True)
    prepare(tmp_path / "img", tmp_path, 1, 0, WriteParams(), None, tiny.BASE_RESOLUTION, quiet=True,
            log=lambda s: None)
    loader, _ = make_loader(tmp_path / "train.beton", train=True, batch_size=recipe.batch_size, resolution=resolution,
                            crop_scale=recipe.crop_scale)

    def epochs():
        while True:
            yield from loader

    with_loader = _throughput(model, epochs, device, None, steps=20)
    benchmark.pedantic(lambda: _throughput(model, epochs, device, None, steps=5, warmup=1), rounds=2,
                       iterations=1)
    benchmark.extra_info.update(images_per_s_model_only=round(synthetic), images_per_s_with_ffcv=round(with_loader),
                                threads=torch.get_num_threads(), peak_rss_mib=round(_peak_rss_mib()))
    print(f"\nMobileNet V1 0.5x, {resolution} px, batch {recipe.batch_size}, CPU x{torch.get_num_threads()} threads: "
          f"{synthetic:.0f} img/s model only, {with_loader:.0f} img/s with the FFCV loader, "
          f"peak RSS {_peak_rss_mib():.0f} MiB")
    assert synthetic > 0 and with_loader > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: not run here")
@pytest.mark.parametrize("family, batch", [("mobilenet_v2", 256), ("resnet50", 256)])
def test_gpu_training_throughput(benchmark, family, batch):
    device = torch.device("cuda")
    model = build_model(ArchConfig.canonical(family)).to(device, memory_format=torch.channels_last)
    x = torch.randint(0, 255, (batch, 3, 224, 224), dtype=torch.uint8, device=device)
    y = torch.randint(0, 1000, (batch,), device=device)
    torch.backends.cudnn.benchmark = True
    dtype = amp_dtype("auto", device)
    rate = _throughput(model, lambda: iter(lambda: (x, y), None), device, dtype, steps=30, warmup=10)
    benchmark.pedantic(lambda: _throughput(model, lambda: iter(lambda: (x, y), None), device, dtype, steps=5,
                                           warmup=1), rounds=2, iterations=1)
    benchmark.extra_info.update(images_per_s=round(rate), device=torch.cuda.get_device_name(0),
                                peak_gpu_mib=round(torch.cuda.max_memory_allocated() / 2**20))
    print(f"\n{family} 224 px AMP channels-last on {torch.cuda.get_device_name(0)}: {rate:.0f} img/s")
    assert rate > 0


def _step_rate_in_child(family: str, channels_last: bool, steps: int, out) -> None:
    """Images/s of the smoke recipe's training step for the family's full network at 32 px (the embedded set's
    224), and this process's peak RSS: in a fresh process, so the peak is this measurement's own."""
    torch.manual_seed(0)
    recipe = load_profile("smoke").train
    model = build_model(ArchConfig.canonical(family).replace(num_classes=16))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    x = torch.randint(0, 255, (recipe.batch_size, 3, 32, 32), dtype=torch.uint8)
    y = torch.randint(0, 16, (recipe.batch_size,))
    opt = torch.optim.SGD(param_groups(model, recipe.weight_decay), lr=0.01, momentum=0.9, nesterov=True)
    normalize = Normalize(channels_last=channels_last)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    model.train()
    for i in range(2 + steps):
        if i == 2:
            start = time.perf_counter()
        train_step(model, normalize(x), y, opt, scaler, 0.1, None)
    out.put((recipe.batch_size * steps / (time.perf_counter() - start), _peak_rss_mib(), torch.get_num_threads()))


@pytest.mark.parametrize("layout", ["channels_last", "contiguous"])
@pytest.mark.parametrize("family", ["mobilenet_v1", "mobilenet_v2", "resnet50"])
def test_cpu_training_step_per_family(benchmark, family, layout):
    """The smoke recipe's training step (batch 64, SGD, fp32) of each family's full network at 32 px, in both
    memory layouts (``train.channels_last: auto`` picks channels-last on CPU), with the step's peak RSS."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    child = ctx.Process(target=_step_rate_in_child, args=(family, layout == "channels_last", 10, out))
    child.start()
    rate, peak, threads = out.get(timeout=600)
    child.join()
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)  # the measurement is the child's
    benchmark.extra_info.update(images_per_s=round(rate, 1), peak_rss_mib=round(peak), threads=threads,
                                layout=layout)
    print(f"\n{family} 1.0x, 32 px, batch 64, {layout}, CPU x{threads} threads: {rate:.0f} img/s, "
          f"peak RSS {peak:.0f} MiB")
    assert rate > 0 and peak > 0
