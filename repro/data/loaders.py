"""FFCV loaders for training (random-resized crop + flip) and evaluation (center crop, ratio 224/256).

Batches come out as uint8 NCHW tensors; ``Normalize`` turns them into normalized floats on the device
(measured on this 2-core CPU: FFCV gave 1,489 img/s with normalization left to the device and 1,039 img/s
when it ran in the consumer thread). Only jitted FFCV operations precede ``ToTensor``/``ToTorchImage``:
FFCV 1.0.2's pipeline compiler loops forever when a jitted op follows a non-jitted one (upstream #396).

Memory: a file that fits comfortably in RAM is read through the OS page cache (``os_cache=True``) in
``RANDOM`` order; a larger one (ImageNet written the FFCV way is hundreds of GB) is read with
``os_cache=False`` in ``QUASI_RANDOM`` order. FFCV 1.0.2's ``QUASI_RANDOM`` refuses ``distributed=True``,
so under DDP each rank then gets an equal-length shard of the indices through ``indices=``. ``plan`` says
which was chosen and why; callers log it.

Reuse: building a Loader compiles its pipeline with numba, which costs seconds per Loader (measured on
this 2-core CPU with the tiny set: 22 s for the first Loader of a process, 7 s for each later one, against
0.2 s for the epoch itself). ``make_loader(..., reuse=True)`` hands back the Loader an earlier call built
with the same arguments on the same unchanged file (a few are kept), so a table of cells run in one
process compiles once per distinct loader. A reused Loader gives the same batches: the order is drawn from
(seed, epoch) and the crops from (seed, epoch, sample), and every epoch iterator has its own buffers.

Resolution per batch (the weight-sharing search): ``resize_batch`` resizes a batch decoded at the largest
resolution, on the device; ``benchmarks`` compare it with one loader per resolution.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from repro.data.manifest import MANIFEST, check_beton, fingerprint
from repro.distributed import rank as dist_rank
from repro.distributed import world_size

IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
EVAL_CROP_RATIO = 224 / 256
# a file is read through the page cache when it takes at most this fraction of the available memory
OS_CACHE_FRACTION = 0.5
REUSE_MAX = 6  # loaders kept for make_loader(reuse=True), least recently used dropped first
_REUSABLE: OrderedDict[tuple, tuple] = OrderedDict()


def _drop_numba_finalizer_noise() -> None:
    """Install a ``sys.unraisablehook`` that drops the KeyError numba's dispatcher finalizers raise when
    FFCV's compiled pipelines are garbage-collected (FFCV 1.0.2 + numba cleanup noise, not a failure) and
    passes everything else to the hook that was there.

    Dropping it matters beyond tidy logs: the collection can happen while Python is building an ``ast``
    (the garbage collector runs inside any allocation), and a hook that formats the traceback with Python's
    ``traceback`` module parses source with ``ast`` again; CPython 3.11 then fails the outer parse with
    "SystemError: AST constructor recursion depth mismatch" (python/cpython#106905). pytest's hook does
    exactly that, which made test runs crash now and then.
    """
    import sys

    previous = sys.unraisablehook
    if getattr(previous, "_repro_drops_numba_noise", False):
        return

    def hook(unraisable) -> None:
        tb = unraisable.exc_traceback
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        if (unraisable.exc_type is KeyError and tb is not None
                and tb.tb_frame.f_code.co_filename.replace("\\", "/").endswith("numba/core/dispatcher.py")):
            return
        previous(unraisable)

    hook._repro_drops_numba_noise = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


_drop_numba_finalizer_noise()


@dataclass(frozen=True)
class LoadingPlan:
    os_cache: bool
    order: str  # random | quasi_random | sequential
    shard_by_indices: bool  # DDP shard given through indices= (QUASI_RANDOM cannot be distributed)
    reason: str


def plan_loading(file_bytes: int, available_bytes: int, train: bool, world_size: int,
                 os_cache: bool | None = None) -> LoadingPlan:
    """How to read a file: page cache or not (from its size unless ``os_cache`` is given), which order,
    and whether DDP ranks get their shard through ``indices=``."""
    size = f"{file_bytes / 2**30:.2f} GiB file, {available_bytes / 2**30:.1f} GiB available"
    if os_cache is None:
        os_cache = file_bytes <= OS_CACHE_FRACTION * available_bytes
        why = f"{size}: " + ("fits in the page cache" if os_cache else
                             f"larger than {OS_CACHE_FRACTION:.0%} of memory, no page cache")
    else:
        why = f"os_cache={os_cache} as asked ({size})"
    if not train:
        # evaluation reads every sample once: shards through indices=, uneven, never padded
        return LoadingPlan(os_cache, "sequential", world_size > 1, f"{why}; evaluation in file order")
    order = "random" if os_cache else "quasi_random"
    by_indices = world_size > 1 and order == "quasi_random"
    return LoadingPlan(os_cache, order, by_indices,
                       f"{why}; {order} order" + (", DDP shards through indices=" if by_indices else ""))


def shard(indices: np.ndarray, rank: int, world_size: int, equal: bool = True) -> np.ndarray:
    """Rank ``rank``'s share of ``indices``. ``equal=True`` (training) drops the remainder so that every
    rank runs the same number of steps, as DistributedSampler(drop_last=True) does; evaluation keeps
    every sample (``equal=False``) and reduces counts across ranks."""
    part = indices[rank::world_size]
    return part[: len(indices) // world_size] if equal else part


def make_loader(beton: str | Path, *, train: bool, batch_size: int, resolution: int,
                indices: Sequence[int] | None = None, num_workers: int = 0, seed: int = 0,
                drop_last: bool | None = None, os_cache: bool | None = None, batches_ahead: int = 2,
                crop_scale: tuple[float, float] = (0.08, 1.0), reuse: bool = False):
    """An FFCV Loader over ``beton`` (optionally only ``indices``); returns (loader, LoadingPlan).

    A ``.beton`` beside a ``manifest.json`` must match it (``DataError`` otherwise).
    Under ``torch.distributed`` every rank gets its own shard. ``os_cache=None`` decides from the file
    size and the available memory (module docstring). ``reuse=True`` returns the Loader of an earlier
    call with the same arguments on the same unchanged file, if one is kept (module docstring).
    """
    if reuse:
        beton = Path(beton)
        st = beton.stat()
        key = (str(beton.resolve()), st.st_size, st.st_mtime_ns, train, batch_size, resolution,
               None if indices is None else hash(np.asarray(indices, dtype=np.int64).tobytes()), num_workers,
               seed, drop_last, os_cache, batches_ahead, tuple(crop_scale), dist_rank(), world_size())
        if key in _REUSABLE:
            _REUSABLE.move_to_end(key)
            return _REUSABLE[key]
        made = make_loader(beton, train=train, batch_size=batch_size, resolution=resolution, indices=indices,
                           num_workers=num_workers, seed=seed, drop_last=drop_last, os_cache=os_cache,
                           batches_ahead=batches_ahead, crop_scale=crop_scale)
        _REUSABLE[key] = made
        while len(_REUSABLE) > REUSE_MAX:
            _REUSABLE.popitem(last=False)
        return made
    import psutil
    from ffcv.fields.decoders import CenterCropRGBImageDecoder, IntDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import Squeeze, ToTensor, ToTorchImage

    from repro.data.augment import SeededRandomResizedCrop

    if not isinstance(resolution, int) or resolution <= 0:
        raise ValueError(f"resolution={resolution!r} must be a positive integer (pixels)")
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size={batch_size!r} must be a positive integer")
    beton = Path(beton)
    if (beton.parent / MANIFEST).is_file():  # written by data_prep: must be the file it describes
        check_beton(beton.parent, beton.stem)
    else:
        fingerprint(beton)  # at least a complete, readable .beton
    rank, world = dist_rank(), world_size()
    plan = plan_loading(beton.stat().st_size, psutil.virtual_memory().available, train, world, os_cache)
    if train:
        # crop and flip drawn from (seed, epoch, sample): see repro/data/augment.py
        decoder = SeededRandomResizedCrop((resolution, resolution), scale=crop_scale, seed=seed)
        image_ops = [decoder, ToTensor(), ToTorchImage()]
    else:
        image_ops = [CenterCropRGBImageDecoder((resolution, resolution), ratio=EVAL_CROP_RATIO), ToTensor(),
                     ToTorchImage()]
    idx = None if indices is None else np.asarray(indices, dtype=np.int64)
    distributed = world > 1 and not plan.shard_by_indices
    if world > 1 and plan.shard_by_indices:
        if idx is None:
            from ffcv.reader import Reader

            idx = np.arange(Reader(str(beton)).num_samples, dtype=np.int64)
        idx = shard(idx, rank, world, equal=train)
    order = {"random": OrderOption.RANDOM, "quasi_random": OrderOption.QUASI_RANDOM,
             "sequential": OrderOption.SEQUENTIAL}[plan.order]
    # a profile's worker count is a cap: a 2-core machine runs the imagenet profile's 8 as 2 (FFCV refuses more
    # threads than cores)
    workers = min(num_workers or _default_workers(), _default_workers())
    loader = Loader(str(beton), batch_size=batch_size, num_workers=workers,
                    os_cache=plan.os_cache, order=order, distributed=distributed, seed=seed,
                    indices=None if idx is None else idx.tolist(),
                    drop_last=train if drop_last is None else drop_last, batches_ahead=batches_ahead,
                    pipelines={"image": image_ops, "label": [IntDecoder(), ToTensor(), Squeeze(1)]})
    return loader, plan


def _default_workers() -> int:
    """The cores this process may use: its CPU affinity, capped by ``OMP_NUM_THREADS`` when set. FFCV sets
    torch's thread count to its worker count at every epoch, so this is also the training's thread count: a
    launcher that shares a node without binding CPUs (Slurm's ``task/none``, ``torchrun``) says each process's
    share through ``OMP_NUM_THREADS``, and two 1-CPU tasks on a 2-core node each ran 2 spinning threads (a
    smoke cell 3x slower) before it was honoured here."""
    import os

    cores = len(os.sched_getaffinity(0))
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) > 0:
        cores = min(cores, int(omp))
    return max(1, cores)


class Normalize(nn.Module):
    """uint8 NCHW -> float, ImageNet mean/std, on whatever device the batch is moved to."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 channels_last: bool = False):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("inv_std", 1 / torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.mean.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return (x.float() - self.mean) * self.inv_std


def resize_batch(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """A float batch resized to ``resolution`` (bilinear, antialiased when shrinking)."""
    if x.shape[-1] == resolution and x.shape[-2] == resolution:
        return x
    return F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False,
                         antialias=resolution < x.shape[-1])
