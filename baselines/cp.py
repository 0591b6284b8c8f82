"""CP, channel pruning (He, Zhang and Sun, "Channel Pruning for Accelerating Very Deep Neural Networks", ICCV
2017; public code yihui-he/channel-pruning) as a ``Method``: ``cp``, variant *Channel*, for ResNet-50.

From the trained full network (``ctx.reference``), the first two convolutions of every bottleneck are
pruned one after another (``repro.train.reconstruct.prune_layerwise``) to the one keep ratio that meets the
cell's budget: in Table 3, CP's published 2x speed-up (half the full network's MACs; their README's ResNet-50
"2x", whose released pruned model has per-block widths, not one ratio), or the column's header. For each, at
sampled positions of sub-train images, the reading layer's input patches come from the network pruned so far
and its outputs from the *original* network, so each step also corrects the error the earlier steps
accumulated. Two steps per layer:

1. **Channel selection by LASSO**: each input channel's contribution to every output (its patch times its
   weights, the weights scaled to unit norm) is a column; a LASSO regression of the outputs on those
   columns (scikit-learn's ``Lasso``) with its penalty raised by bisection until at most ``keep``
   coefficients are non-zero selects the channels;
2. **Reconstruction by least squares**: the reading layer's weights on the kept channels are refit to map
   the kept input patches to the original outputs.

Not reproduced: their ResNet "filter" layer, which samples a subset of the residual channels for a
block's first convolution (our networks feed every block the whole residual stream).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch

from repro.method import Context, SearchResult
from repro.registry import register
from repro.train.reconstruct import (
    BottleneckPruning,
    LayerChoice,
    LayerwiseConfig,
    Samples,
    contributions,
    least_squares,
    output_error,
    prune_layerwise,
)


@dataclass(frozen=True)
class CPConfig(LayerwiseConfig):
    """Defaults: ethanhe42/channel-pruning (formerly yihui-he/channel-pruning) lib/cfgs.py and lib/decompose.py:
    500 batches of 10 images (5,000), 10 points per image, the LASSO on a random 400 of the sampled points;
    no fine-tuning between layers."""

    section: ClassVar[str] = "methods.cp"
    calibration_images: int = 5000
    points_per_image: int = 10
    block_finetune_epochs: float = 0.0
    lasso_points: int = 400  # sampled points whose (point, output channel) rows the LASSO sees
    lasso_steps: int = 30  # bisection steps on the penalty
    # how the bisection's LASSO fits are solved (``lasso_select``): one solver warm-started from penalty to
    # penalty with random coordinate order, as their decompose.py; named so that records of the first version
    # (a cold cyclic fit per penalty) keep other keys
    lasso_solver: Literal["warm_random"] = "warm_random"

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("lasso_points", "lasso_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"methods.cp.{name}={getattr(self, name)} must be at least 1")


def lasso_select(contrib: torch.Tensor, target: torch.Tensor, keep: int, steps: int, seed: int = 0
                 ) -> tuple[torch.Tensor, np.ndarray]:
    """The ``keep`` channels (sorted) a LASSO of ``target`` (points, out) on the channels' contributions
    ``contrib`` (points, channels, out) selects, and the coefficients it gave them; the regression sees every
    output channel of every point given. The penalty is bisected (on a log scale) between a millionth of and
    the smallest penalty that zeroes every coefficient, towards the smallest
    penalty that leaves at most ``keep`` non-zero; channels are then ranked by that solution's coefficients,
    ties broken by the last solution with more than ``keep``. As in their ``decompose.py``, one solver runs the
    whole bisection, each fit starting from the previous solution (``warm_start``) and visiting coordinates in
    random order (``selection="random"``, seeded by ``seed``). Measured on smoke (ResNet-50 2G, 8 steps on 50
    points): a cold, cyclic fit at every penalty often stopped at 2,000 iterations unconverged, and the six
    layers of the last stage had not finished after 10 minutes; warm-started, they took 47 s, no warning."""
    from sklearn.linear_model import Lasso

    _points, channels, _out = contrib.shape
    if not 1 <= keep <= channels:
        raise ValueError(f"cannot keep {keep} of {channels} channels")
    x = np.asfortranarray(contrib.permute(0, 2, 1).reshape(-1, channels).to(torch.float64).numpy())
    yy = target.reshape(-1).to(torch.float64).numpy()
    if keep == channels:
        return torch.arange(channels), np.ones(channels)
    top = float(np.abs(x.T @ yy).max()) / len(yy)  # the smallest penalty with every coefficient at zero
    lo, hi = top * 1e-6, top
    below = above = None  # solutions with <= keep and > keep non-zero coefficients

    solver = Lasso(alpha=hi, fit_intercept=False, max_iter=1000, tol=1e-4, warm_start=True, selection="random",
                   random_state=seed)

    def fit(alpha: float) -> np.ndarray:
        solver.alpha = alpha
        solver.fit(x, yy)
        return solver.coef_.copy()

    for _ in range(steps):
        mid = float(np.sqrt(lo * hi))
        coef = fit(mid)
        if np.count_nonzero(coef) > keep:
            lo, above = mid, coef
        else:
            hi, below = mid, coef
        if below is not None and np.count_nonzero(below) == keep:
            break
    below = fit(hi) if below is None else below
    above = np.ones(channels) if above is None else above
    order = np.lexsort((-np.abs(above), -np.abs(below)))  # primary: |below|, then |above|
    return torch.from_numpy(np.sort(order[:keep])), below


def refit(samples: Samples, weight: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """The reading layer's weight (its full shape; removed input columns zero) refit by least squares so the
    kept channels' patches reproduce the sampled outputs."""
    points, channels, k = samples.patches.shape
    x = samples.patches[:, kept].reshape(points, len(kept) * k)
    w = least_squares(x, samples.output)  # (out, kept x k)
    new = torch.zeros_like(weight)
    new[:, kept] = w.reshape(weight.shape[0], len(kept), *weight.shape[2:]).to(weight.dtype)
    return new


def make_choose(cfg: CPConfig):
    def choose(samples: Samples, weight: torch.Tensor, keep: int, gen: torch.Generator) -> LayerChoice:
        # the LASSO sees lasso_points of the samples: only their contributions are formed, (points, in, out)
        # for every sample would not fit in memory at ImageNet sizes
        pick = torch.randperm(samples.patches.shape[0], generator=gen)[:cfg.lasso_points]
        norms = weight.flatten(2).norm(dim=(0, 2)).clamp_min(1e-12)  # ||W_i||_F per input channel
        contrib = contributions(samples.patches[pick], weight / norms.view(1, -1, *([1] * (weight.ndim - 2))))
        seed = int(torch.randint(2**31 - 1, (1,), generator=gen))
        kept, _coef = lasso_select(contrib, samples.output[pick], keep, cfg.lasso_steps, seed)
        pruned = torch.zeros_like(weight)
        pruned[:, kept] = weight[:, kept]
        new = refit(samples, weight, kept)
        return LayerChoice(kept, new, output_error(samples, pruned), output_error(samples, new))

    return choose


@register
class CP(BottleneckPruning[CPConfig]):
    name = "cp"
    variants = ("channel",)
    retrain = "finetune"
    config_type = CPConfig
    families = ("resnet50",)

    def search(self, ctx: Context[CPConfig]) -> SearchResult:
        return prune_layerwise(self.name, ctx, make_choose(ctx.config), target="original")


__all__ = ["CP", "CPConfig", "lasso_select", "make_choose", "refit"]
