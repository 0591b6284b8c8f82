"""Training a network from scratch (or fine-tuning it) on one CPU, one GPU or many under ``torchrun``.

``fit`` runs a profile's recipe (``repro.profiles.TrainConfig``): SGD with momentum, label smoothing,
linear warm-up then cosine or linear decay per step, weight decay on conv/linear weights only, and the
learning rate scaled linearly with the global batch. Mixed precision (fp16 with a grad scaler, or bf16) and
channels-last on CUDA; fp32 on CPU, channels-last there too (MobileNet V1 0.5x trained 1.8x faster on this
CPU with it). Under ``torchrun`` the model is wrapped in DDP (NCCL on GPUs, gloo on CPU), every rank reads
its own shard, metrics are reduced across ranks and only rank 0 writes.

Checkpoints (model, optimizer, scheduler, scaler, RNG states, epoch and step within it) are written
atomically at the end of every epoch and every ``checkpoint_every_steps`` steps; ``fit`` resumes from the
last one. The sample order of an epoch is a function of (seed, epoch), so a resumed epoch skips the
batches already trained on and continues with the same ones an uninterrupted run would see.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from repro.atomic import atomic_write_bytes
from repro.data import Normalize, make_loader, resize_batch
from repro.distributed import barrier, world_size
from repro.distributed import rank as dist_rank
from repro.profiles import TrainConfig
from repro.train.loop import evaluate_distributed, param_groups

CHECKPOINT = "last.pt"


@dataclass(frozen=True)
class TrainData:
    """Where the trainer reads: a train and a val .beton, optional index subsets, the class count."""

    train_beton: Path
    val_beton: Path
    num_classes: int
    base_resolution: int = 224  # the data set's pixels for ImageNet's 224
    train_indices: np.ndarray | None = None
    val_indices: np.ndarray | None = None
    workers: int = 0
    decode: str = "direct"  # or "base": decode at base_resolution and resize batches (DataConfig.decode)

    def resolution(self, arch_resolution: int) -> int:
        """Training resolution of an architecture: its ImageNet resolution scaled to the data set."""
        return data_resolution(arch_resolution, self.base_resolution)

    def decode_resolution(self, arch_resolution: int) -> int:
        """The resolution the loader decodes at for this architecture."""
        r = self.resolution(arch_resolution)
        return max(r, self.base_resolution) if self.decode == "base" else r


def data_resolution(arch_resolution: int, base_resolution: int) -> int:
    """An architecture's resolution on a data set whose ``base_resolution`` stands for ImageNet's 224."""
    return max(8, round(arch_resolution * base_resolution / 224))


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            return torch.device("cuda", local)
        return torch.device("cpu")
    return torch.device(name)


def amp_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """``auto``: fp16 on CUDA, none (fp32) on CPU; ``bf16`` / ``fp16`` force one, ``off`` none."""
    if setting == "off" or (setting == "auto" and device.type != "cuda"):
        return None
    if setting == "bf16":
        return torch.bfloat16
    return torch.float16


def use_channels_last(setting: str) -> bool:
    return setting != "off"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# training batches over which an averaged (EMA) network's batch-norm statistics are re-estimated
EMA_BN_BATCHES = 100


def initial_model(arch: Any, seed: int) -> nn.Module:
    """The network ``arch`` with the initial weights of ``seed`` (every retraining starts from these: the
    seed is the only thing that picks them)."""
    from repro.models import build_model

    torch.manual_seed(seed)
    return build_model(arch)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    import math

    total = cfg.epochs * steps_per_epoch
    warmup = round(cfg.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if cfg.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * progress))
        if cfg.schedule == "linear":
            return 1.0 - progress
        return cfg.step_gamma ** sum(step >= m * total for m in cfg.step_milestones)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore ``rng_state()``; the torch states must be CPU byte tensors whatever device a checkpoint was
    loaded onto (``torch.load(map_location=cuda)`` moves them)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def wrap_ddp(model: nn.Module, device: torch.device, find_unused_parameters: bool = False) -> nn.Module:
    """``model`` in DDP when running under torchrun with more than one process, else itself."""
    if world_size() == 1:
        return model
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                               find_unused_parameters=find_unused_parameters)


def make_optimizer(model: nn.Module, cfg: TrainConfig, world: int) -> torch.optim.Optimizer:
    """The recipe's SGD, its learning rate scaled to the global batch, no decay on BN and biases (nor on
    depthwise weights unless ``cfg.decay_depthwise``)."""
    groups = param_groups(model, cfg.weight_decay, cfg.decay_depthwise)
    return torch.optim.SGD(groups, lr=cfg.scaled_lr(cfg.batch_size * world), momentum=cfg.momentum,
                           nesterov=cfg.nesterov)


def make_precision(cfg: TrainConfig, device: torch.device) -> tuple[torch.dtype | None, torch.amp.GradScaler]:
    """The autocast dtype of the recipe on ``device`` and the grad scaler it needs (enabled for fp16)."""
    dtype = amp_dtype(cfg.amp, device)
    return dtype, torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


def save_state(path: Path, parts: dict[str, Any], **extra: Any) -> None:
    """A checkpoint of ``parts`` (name -> object with ``state_dict``), the RNG states and ``extra``."""
    save_checkpoint(path, **{name: part.state_dict() for name, part in parts.items()}, rng=rng_state(), **extra)


def read_checkpoint(path: Path, device: torch.device | str = "cpu",
                    log: Callable[[str], None] = print) -> dict[str, Any] | None:
    """The checkpoint at ``path``, or None when there is none or it cannot be read: a truncated or corrupt file
    is set aside (renamed ``<name>.corrupt-<time>``, named in the log) and the run starts that part again,
    instead of every resume failing on it until it is deleted by hand."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except Exception as e:  # noqa: BLE001 - whatever makes it unreadable, it is set aside, never half-used
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(path, aside)
        log(f"checkpoint {path} cannot be read ({type(e).__name__}: {str(e)[:120]}); set aside as {aside.name}, "
            f"starting this part again")
        return None


def load_state(path: Path, device: torch.device, parts: dict[str, Any],
               log: Callable[[str], None] = print) -> dict[str, Any] | None:
    """Restore a ``save_state`` checkpoint into ``parts`` and the RNG states; return the whole checkpoint (None:
    no readable checkpoint, see ``read_checkpoint``)."""
    state = read_checkpoint(path, device, log)
    if state is None:
        return None
    for name, part in parts.items():
        part.load_state_dict(state[name])
    set_rng_state(state["rng"])
    return state


def save_checkpoint(path: Path, **state: Any) -> None:
    import io

    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def fit(model: nn.Module, data: TrainData, cfg: TrainConfig, seed: int, arch_resolution: int,
        checkpoint_dir: Path | None = None, device: torch.device | None = None,
        log: Callable[[str], None] = print, stop_after_steps: int | None = None,
        step_delay: float = 0.0) -> dict[str, Any]:
    """Train ``model`` with ``cfg``, resuming from ``checkpoint_dir`` if it holds a checkpoint; return
    top-1/top-5 (fractions) on the val split, timings and what was resumed.

    ``stop_after_steps`` ends the run early (after a checkpoint) and ``step_delay`` sleeps after every
    step: the resume tests use them to stop or kill a run mid-epoch.
    """
    device = device or resolve_device()
    rank, world = dist_rank(), world_size()
    seed_everything(seed)
    resolution = data.resolution(arch_resolution)
    decode_at = data.decode_resolution(arch_resolution)
    resize = None if decode_at == resolution else resolution
    channels_last = use_channels_last(cfg.channels_last)
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_model = wrap_ddp(model, device)
    train_loader, plan = make_loader(data.train_beton, train=True, batch_size=cfg.batch_size,
                                     resolution=decode_at, indices=data.train_indices, seed=seed,
                                     num_workers=data.workers, crop_scale=cfg.crop_scale, reuse=True)
    val_loader, _ = make_loader(data.val_beton, train=False, batch_size=cfg.eval_batch_size,
                                resolution=decode_at, indices=data.val_indices, num_workers=data.workers,
                                reuse=True)
    if rank == 0:
        how = f"decoded at {decode_at}px and resized" if resize else "decoded at that size"
        omp = os.environ.get("OMP_NUM_THREADS")
        threads = f"{train_loader.num_workers} loader worker(s) and torch thread(s)" + (
            f" (OMP_NUM_THREADS={omp})" if omp else "")
        log(f"training at {resolution}px ({how}) on {device} x{world}, {threads}: {plan.reason}")
    optimizer = make_optimizer(model, cfg, world)
    steps_per_epoch = len(train_loader)
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch)
    dtype, scaler = make_precision(cfg, device)
    parts = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler}
    ema = None
    if cfg.ema_decay > 0:  # the averaged copy is checkpointed with the rest, so a resumed run averages on
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
        parts["ema"] = ema
    normalize = Normalize(channels_last=channels_last).to(device)

    start_epoch = start_step = 0
    ckpt = None if checkpoint_dir is None else Path(checkpoint_dir) / CHECKPOINT
    resumed, earlier = None, 0.0
    state = None if ckpt is None else load_state(ckpt, device, parts, log)
    if state is not None:
        start_epoch, start_step = state["epoch"], state["step"]
        earlier = float(state.get("seconds", 0.0))  # training time before the interruption
        resumed = {"epoch": start_epoch, "step": start_step, "seconds_before": earlier}
        if rank == 0:
            log(f"resumed from {ckpt} at epoch {start_epoch}, step {start_step}")

    def checkpoint(epoch: int, step: int) -> None:
        if ckpt is not None and rank == 0:
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            save_state(ckpt, parts, epoch=epoch, step=step, seconds=earlier + time.perf_counter() - start)
        barrier()

    start = time.perf_counter()
    images = 0
    done_steps = 0
    last_train_loss = None
    for epoch in range(start_epoch, cfg.epochs):
        train_model.train()
        skip = start_step if epoch == start_epoch else 0
        epoch_loss, epoch_images = 0.0, 0
        for step, (x, y) in enumerate(epoch_batches(train_loader, epoch)):
            if step < skip:
                continue
            x = normalize(x) if resize is None else resize_batch(normalize(x), resize)
            loss = train_step(train_model, x, y.to(device, non_blocking=True), optimizer, scaler,
                              cfg.label_smoothing, dtype)
            scheduler.step()
            if ema is not None:
                ema.update_parameters(model)
            if step_delay:
                time.sleep(step_delay)
            epoch_loss += loss.item() * len(y)
            epoch_images += len(y)
            images += len(y) * world
            done_steps += 1
            last_of_epoch = step + 1 == steps_per_epoch
            if (cfg.checkpoint_every_steps and (step + 1) % cfg.checkpoint_every_steps == 0
                    and not last_of_epoch):
                checkpoint(epoch, step + 1)
            if stop_after_steps is not None and done_steps >= stop_after_steps:
                checkpoint(epoch, step + 1) if not last_of_epoch else checkpoint(epoch + 1, 0)
                return {"stopped": True, "epoch": epoch, "step": step + 1}
        checkpoint(epoch + 1, 0)
        last_train_loss = epoch_loss / max(1, epoch_images)
        if rank == 0:
            log(f"epoch {epoch + 1}/{cfg.epochs}: train loss {last_train_loss:.4f} (this rank's batches)")
    seconds = time.perf_counter() - start  # this process's part; train_seconds counts the interrupted ones too
    if ema is not None:  # the averaged weights are the result: evaluated here and kept in ``model``
        model.load_state_dict(ema.module.state_dict())
        # ... with their own batch-norm statistics: the averaged running statistics belong to no weights. At
        # 16 px (MobileNet V1 1.0x at 112) they read at chance, 9.6% against 21.0% re-estimated
        # (docs/proxy_protocol.md); SWA re-estimates them the same way
        recalibrate_bn(model, epoch_batches(train_loader, cfg.epochs), normalize,
                       min(EMA_BN_BATCHES, steps_per_epoch), resize)
        if world > 1:  # every rank evaluates and keeps rank 0's statistics
            for buffer in model.buffers():
                torch.distributed.broadcast(buffer, src=0)
    metrics = evaluate_distributed(model, val_loader, normalize, dtype, resolution=resize)
    return {**metrics, "train_loss": last_train_loss, "train_seconds": earlier + seconds, "train_images": images,
            "epochs": cfg.epochs, "resolution": resolution, "resumed": resumed, "loading": plan.reason,
            "images_per_second": images / seconds if seconds > 0 else None}


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler, label_smoothing: float = 0.0,
               autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
    """One optimizer step on one batch (under DDP the gradients are averaged across ranks)."""
    with torch.autocast(x.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        loss = F.cross_entropy(model(x), y.long(), label_smoothing=label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


def epoch_batches(loader, epoch: int):
    """The loader's batches for ``epoch``: FFCV draws an epoch's order from (seed, epoch)."""
    loader.next_epoch = epoch
    return iter(loader)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches, normalize: nn.Module, num_batches: int,
                   resolution: int | None = None) -> nn.Module:
    """Re-estimate every BatchNorm's running mean and variance as the plain average over ``num_batches``
    training batches (the weight-sharing searches call this for each sampled architecture)."""
    from repro.data.loaders import resize_batch

    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(bn.momentum, bn.training) for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average: every batch weighs the same
    was_training = model.training
    model.train()
    seen = 0
    for x, _ in batches:
        if seen >= num_batches:
            break
        x = normalize(x)
        model(resize_batch(x, resolution) if resolution else x)
        seen += 1
    for bn, (momentum, _) in zip(bns, saved, strict=True):
        bn.momentum = momentum
    model.train(was_training)
    if seen == 0:
        raise ValueError("recalibrate_bn got no batches")
    return model
