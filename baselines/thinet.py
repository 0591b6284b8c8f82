"""ThiNet (Luo, Wu and Lin, "ThiNet: A Filter Level Pruning Method for Deep Neural Network Compression",
ICCV 2017; public code Roll920/ThiNet) as a ``Method``: ``thinet``, variant *Channel*, for ResNet-50.

From the trained full network (``ctx.reference``), the first two convolutions of every bottleneck are
pruned one after another (``repro.train.reconstruct.prune_layerwise``), all to one keep ratio: the cell's
published rate (Table 3's ThiNet-70 / 50 / 30 keep 70 / 50 / 30% of those channels, their ``compress_rate``;
``tables/reported/operating_points.csv``), or at a column's header the largest that meets its budget. A layer's
channels are chosen by what the *next* layer computes from them: at sampled positions of sub-train images
and a random output channel of the next layer each, every input channel's contribution to that output is
a number; ThiNet removes, greedily, the channel whose removal adds least to the squared sum of the removed
contributions (``greedy_keep``), i.e. keeps the subset whose sum best reproduces the output. Then each kept
channel's weights in the next layer are scaled by least squares (``scales``) so the kept contributions
reproduce the full output. After each bottleneck a short fine-tune (their ResNet-50 code: about one epoch),
and at the end the pipeline's fine-tune (``retrain = "finetune"``) from the pruned weights. Their ICCV
selection is the greedy removal written here; their later TPAMI ResNet code selects forward instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from repro.method import Context, SearchResult
from repro.registry import register
from repro.train.reconstruct import (
    BottleneckPruning,
    LayerChoice,
    LayerwiseConfig,
    Samples,
    least_squares,
    prune_layerwise,
    relative_error,
)


@dataclass(frozen=True)
class ThiNetConfig(LayerwiseConfig):
    """Defaults: Roll920/ThiNet_Code, ThiNet_TPAMI/ResNet50 (the only ResNet-50 code released): 10 images per
    class (10,000), 10 (output channel, position) samples per image; one fine-tune per bottleneck of 10,000
    iterations at batch 128 (about one epoch) at lr 1e-4."""

    section: ClassVar[str] = "methods.thinet"
    calibration_images: int = 10_000
    points_per_image: int = 10
    block_finetune_epochs: float = 1.0
    block_finetune_lr: float = 1e-4
    block_finetune_batch: int = 128


def training_set(samples: Samples, weight: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """(points, channels): each input channel's contribution to one random output channel of the reading
    layer at each sampled point (their x-hat); a row's sum is that output (their y-hat)."""
    out_channels = weight.shape[0]
    chosen = torch.randint(0, out_channels, (samples.patches.shape[0],), generator=gen)
    w = weight.reshape(out_channels, weight.shape[1], -1).to(samples.patches.dtype)
    contrib = torch.empty(samples.patches.shape[:2], dtype=torch.float64)
    for o in chosen.unique().tolist():  # one output channel's rows at a time: no (points, C, k) copy
        rows = (chosen == o).nonzero().squeeze(1)
        contrib[rows] = (samples.patches[rows] * w[o]).sum(-1).double()
    return contrib


def greedy_keep(contrib: torch.Tensor, keep: int) -> torch.Tensor:
    """The channels kept (sorted) when channels are removed one at a time, each time the one whose removal
    keeps the squared sum of all removed contributions smallest, until ``keep`` remain. With the channels'
    Gram matrix G, removing j next costs ||t||^2 + 2 (t . x_j) + G_jj, where t . x_j is the running sum of
    G's rows of the channels removed so far."""
    _points, channels = contrib.shape
    if not 1 <= keep <= channels:
        raise ValueError(f"cannot keep {keep} of {channels} channels")
    contrib = contrib.to(torch.float64)
    gram = contrib.T @ contrib
    diag = gram.diagonal().clone()
    removed = torch.zeros(channels, dtype=torch.bool)
    cross = torch.zeros(channels, dtype=torch.float64)  # t . x_j for the removed sum t
    for _ in range(channels - keep):
        err = 2 * cross + diag
        err[removed] = float("inf")
        c = int(err.argmin())
        removed[c] = True
        cross += gram[c]
    return (~removed).nonzero().squeeze(1)


def scales(contrib: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """Per kept channel, the factor that best reproduces the full outputs from the kept contributions (least
    squares)."""
    return least_squares(contrib, contrib.sum(1, keepdim=True), kept).squeeze(0).double()


def reconstruction_error(contrib: torch.Tensor, kept: torch.Tensor, factors: torch.Tensor | None = None) -> float:
    """The relative squared error of the sampled outputs reproduced from the kept channels only."""
    weights = factors.to(contrib.dtype) if factors is not None else torch.ones(len(kept), dtype=contrib.dtype)
    return relative_error(contrib.sum(1), contrib[:, kept] @ weights)


def choose(samples: Samples, weight: torch.Tensor, keep: int, gen: torch.Generator) -> LayerChoice:
    contrib = training_set(samples, weight, gen)
    kept = greedy_keep(contrib, keep)
    factors = scales(contrib, kept)
    new = weight.clone()
    new[:, kept] = weight[:, kept] * factors.to(weight.dtype).view(1, -1, *([1] * (weight.ndim - 2)))
    return LayerChoice(kept, new, reconstruction_error(contrib, kept), reconstruction_error(contrib, kept, factors))


@register
class ThiNet(BottleneckPruning[ThiNetConfig]):
    name = "thinet"
    variants = ("channel",)
    retrain = "finetune"
    config_type = ThiNetConfig
    families = ("resnet50",)

    def search(self, ctx: Context[ThiNetConfig]) -> SearchResult:
        return prune_layerwise(self.name, ctx, choose, target="current")


__all__ = ["ThiNet", "ThiNetConfig", "choose", "greedy_keep", "reconstruction_error", "scales", "training_set"]
