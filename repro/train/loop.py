"""Plain training and evaluation functions (torchvision's reference-script shape): one epoch, evaluate.

The recipe (optimizer, schedule, label smoothing) is built by the caller from a profile; these functions
only run it. Batches arrive as uint8 NCHW from ``repro.data`` and are normalized on the device.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on conv / linear weights only: BatchNorm parameters and biases are excluded."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int):
    """Linear warm-up from 1/warmup to 1, then cosine decay to 0, per step."""
    import math

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_one_epoch(model: nn.Module, loader: Iterable, optimizer: torch.optim.Optimizer, scheduler,
                    normalize: nn.Module, label_smoothing: float = 0.1,
                    autocast_dtype: torch.dtype | None = None) -> dict[str, float]:
    model.train()
    device = normalize.mean.device
    total_loss, seen, start = 0.0, 0, time.perf_counter()
    for images, labels in loader:
        x = normalize(images)
        y = labels.to(device, non_blocking=True).long()
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            loss = F.cross_entropy(model(x), y, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total_loss += loss.item() * len(y)
        seen += len(y)
    seconds = time.perf_counter() - start
    return {"loss": total_loss / max(1, seen), "images": seen, "seconds": seconds}


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, normalize: nn.Module,
             resolution: int | None = None) -> dict[str, float]:
    """Top-1 / top-5 (fractions) and mean cross-entropy over ``loader``."""
    from repro.data.loaders import resize_batch

    model.eval()
    device = normalize.mean.device
    correct1 = correct5 = seen = 0
    total_loss = 0.0
    for images, labels in loader:
        x = normalize(images)
        if resolution is not None:
            x = resize_batch(x, resolution)
        y = labels.to(device).long()
        logits = model(x)
        total_loss += F.cross_entropy(logits, y, reduction="sum").item()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        correct1 += (top[:, 0] == y).sum().item()
        correct5 += (top == y[:, None]).any(dim=1).sum().item()
        seen += len(y)
    return {"top1": correct1 / seen, "top5": correct5 / seen, "loss": total_loss / seen, "images": seen}
