"""The training split's two parts as the searching baselines use them: batches of *sub-train* to train or
fine-tune on, *sub-eval* to score a candidate network on, and BatchNorm recalibration.

The paper's protocol (and MetaPruning's, AMC's, NetAdapt's as run here): nothing a search decides ever looks
at the validation set. ``SubsetData`` opens both FFCV loaders once at the data set's base resolution
(batches are resized on the device to each network's resolution) and hands out an endless, reproducible
stream of sub-train batches (epoch ``e``'s order is a function of the seed and ``e``, so a resumed search
can skip what it has consumed).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from repro.data import Normalize, make_loader, resize_batch
from repro.method import Context
from repro.profiles import TrainConfig
from repro.train.loop import evaluate_sums
from repro.train.trainer import (
    data_resolution,
    epoch_batches,
    make_optimizer,
    make_precision,
    recalibrate_bn,
    resolve_device,
    train_step,
    use_channels_last,
)


@dataclass
class SubsetData:
    """Loaders over sub-train (training augmentation) and sub-eval (centre crops, a fixed shuffled order)."""

    train_loader: object
    eval_loader: object
    normalize: nn.Module
    device: torch.device
    base_resolution: int
    channels_last: bool

    @classmethod
    def open(cls, folder: Path, sub_train: np.ndarray, sub_eval: np.ndarray, base_resolution: int,
             batch_size: int, eval_batch_size: int, seed: int, device: torch.device, workers: int = 0,
             crop_scale: tuple[float, float] = (0.08, 1.0), channels_last: str = "auto") -> SubsetData:
        beton = Path(folder) / "train.beton"
        train, _ = make_loader(beton, train=True, batch_size=batch_size, resolution=base_resolution,
                               indices=sub_train, seed=seed, num_workers=workers, crop_scale=crop_scale, reuse=True)
        # sub-eval is stored class by class: shuffled once, so that a prefix of it covers every class
        order = np.random.default_rng(seed).permutation(np.asarray(sub_eval))
        evaluation, _ = make_loader(beton, train=False, batch_size=eval_batch_size, resolution=base_resolution,
                                    indices=order, num_workers=workers, reuse=True)
        cl = use_channels_last(channels_last)
        return cls(train, evaluation, Normalize(channels_last=cl).to(device), device, base_resolution, cl)

    @classmethod
    def for_search(cls, ctx: Context, batch_size: int | None = None) -> SubsetData:
        """The loaders a search uses: the context's data and seed, the family's recipe (its batch size unless
        ``batch_size``), the context's device (or the best one here)."""
        recipe = ctx.recipe
        return cls.open(ctx.data.folder, ctx.data.sub_train, ctx.data.sub_eval, ctx.data.base_resolution,
                        batch_size or recipe.batch_size, recipe.eval_batch_size, ctx.seed,
                        ctx.device or resolve_device(), ctx.profile.data.workers, recipe.crop_scale,
                        recipe.channels_last)

    def resolution(self, arch_resolution: int) -> int:
        return data_resolution(arch_resolution, self.base_resolution)

    def train_batches(self, skip: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Sub-train batches, epoch after epoch, after the first ``skip``."""
        first, offset = divmod(skip, len(self.train_loader))
        for epoch in itertools.count(first):
            for i, batch in enumerate(epoch_batches(self.train_loader, epoch)):
                if epoch == first and i < offset:
                    continue
                yield batch

    def prepare(self, model: nn.Module) -> nn.Module:
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    @torch.no_grad()
    def evaluate(self, model: nn.Module, arch_resolution: int, max_batches: int | None = None) -> dict[str, float]:
        """Top-1 (fraction), mean cross-entropy and image count of ``model`` on sub-eval (or its first
        ``max_batches`` batches)."""
        loader = self.eval_loader if max_batches is None else itertools.islice(self.eval_loader, max_batches)
        c1, _c5, loss, n = evaluate_sums(model, loader, self.normalize, self.resolution(arch_resolution)).tolist()
        if n == 0:
            raise ValueError("sub-eval gave no images")
        return {"top1": c1 / n, "loss": loss / n, "images": int(n)}

    def recalibrate(self, model: nn.Module, arch_resolution: int, num_batches: int,
                    batches: Iterator | None = None) -> nn.Module:
        """Re-estimate ``model``'s BatchNorm statistics on ``num_batches`` sub-train batches."""
        source = self.train_batches() if batches is None else batches
        return recalibrate_bn(model, source, self.normalize, num_batches, self.resolution(arch_resolution))


def finetune(model: nn.Module, data: SubsetData, batches: Iterator, steps: int, recipe: TrainConfig,
             arch_resolution: int, lr: float | None = None) -> float:
    """``steps`` SGD steps of ``recipe``'s optimizer (at a constant ``lr`` when given, else the recipe's
    scaled rate) on ``batches``; returns the mean training loss. For the short fine-tunes inside searches
    (NetAdapt's per-proposal one); the long, final fine-tune is the pipeline's ``finetune`` protocol."""
    if steps < 1:
        return float("nan")
    optimizer = make_optimizer(model, recipe, 1)
    if lr is not None:
        for group in optimizer.param_groups:
            group["lr"] = lr
    dtype, scaler = make_precision(recipe, data.device)
    resolution = data.resolution(arch_resolution)
    model.train()
    total = 0.0
    for x, y in itertools.islice(batches, steps):
        x = resize_batch(data.normalize(x), resolution)
        total += float(train_step(model, x, y.to(data.device), optimizer, scaler, recipe.label_smoothing, dtype))
    return total / steps


__all__ = ["SubsetData", "finetune"]
