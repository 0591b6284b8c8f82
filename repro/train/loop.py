"""Plain training and evaluation functions (torchvision's reference-script shape): one epoch, evaluate.

The recipe (optimizer, schedule, label smoothing) is built by the caller from a profile; these functions
only run it. Batches arrive as uint8 NCHW from ``repro.data`` and are normalized on the device.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn


def param_groups(model: nn.Module, weight_decay: float, decay_depthwise: bool = True) -> list[dict]:
    """Weight decay on conv / linear weights only: BatchNorm parameters and biases are excluded, and with
    ``decay_depthwise=False`` the weights of depthwise convolutions (one group per input channel) too."""
    depthwise = set() if decay_depthwise else {
        id(m.weight) for m in model.modules()
        if isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels}
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 and id(p) not in depthwise else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@torch.no_grad()
def evaluate_sums(model: nn.Module, loader: Iterable, normalize: nn.Module, resolution: int | None = None,
                  autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
    """[correct top-1, correct top-5, summed cross-entropy, images] over ``loader`` (float64)."""
    from repro.data.loaders import resize_batch

    model.eval()
    device = normalize.mean.device
    sums = torch.zeros(4, dtype=torch.float64, device=device)
    for images, labels in loader:
        x = normalize(images)
        if resolution is not None:
            x = resize_batch(x, resolution)
        y = labels.to(device).long()
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            logits = model(x).float()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        sums += torch.stack([(top[:, 0] == y).sum(), (top == y[:, None]).any(dim=1).sum(),
                             F.cross_entropy(logits, y, reduction="sum"), torch.tensor(len(y), device=device)]
                            ).double()
    return sums


def _metrics(sums: torch.Tensor) -> dict[str, float]:
    c1, c5, loss, n = sums.tolist()
    if n == 0:
        raise ValueError("evaluation saw no images")
    return {"top1": c1 / n, "top5": c5 / n, "loss": loss / n, "images": int(n)}


def evaluate(model: nn.Module, loader: Iterable, normalize: nn.Module,
             resolution: int | None = None) -> dict[str, float]:
    """Top-1 / top-5 (fractions) and mean cross-entropy over ``loader``."""
    return _metrics(evaluate_sums(model, loader, normalize, resolution))


def evaluate_distributed(model: nn.Module, loader: Iterable, normalize: nn.Module,
                         autocast_dtype: torch.dtype | None = None, resolution: int | None = None) -> dict[str, float]:
    """``evaluate`` with each rank on its own shard and the sums reduced across ranks (batches resized to
    ``resolution`` when given)."""
    sums = evaluate_sums(model, loader, normalize, resolution, autocast_dtype)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(sums)
    return _metrics(sums)
