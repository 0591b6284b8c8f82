"""SFP, soft filter pruning (He, Kang, Dong, Fu and Yang, "Soft Filter Pruning for Accelerating Deep
Convolutional Neural Networks", IJCAI 2018; public code he-y/soft-filter-pruning) as a ``Method``: ``sfp``,
variant *Channel*, for ResNet-50.

From the trained full network (``ctx.reference``), training goes on (on sub-train, with the profile's recipe
changed by ``soft_train``) while, before the first epoch and after every epoch, the filters of smallest L2
norm in each pruned convolution have their weights set to zero (``soft_prune``). Zeroed filters are not frozen:
the next epoch's updates may bring them back, and the next zeroing picks the smallest again, so which filters
end up pruned is decided during training. At the end the zeroed filters are removed for real
(``select_channels``) and the pipeline fine-tunes the smaller network (``retrain = "finetune"``).

Pruned: the outputs of the first two convolutions of every bottleneck, all at one keep ratio: the cell's
published rate (their "30%" prunes 30% of the filters, ``--rate 0.7`` keeps 70%; Table 3's 3G cell), or at a
column's header the largest that meets its budget. Departures: their code
also zeroes the stem's and every bottleneck's third convolution's filters (49 convolutions); those widths feed
the residual stream, which our networks cannot narrow per block, so zeroing them would cost accuracy without
removing MACs. At keep 0.7 ours has 2.62G MACs where pruning the stem and every stage's stream too would give
2.03G (Table 3's note, ``tables/reported/notes.csv``, checked by tests/test_operating_points.py).
Like their code, only the convolution weights are zeroed (the BatchNorm after a zeroed filter still adds its
bias until the filter is removed).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from repro.method import Context, SearchResult, Work, reference_work
from repro.registry import register
from repro.train.reconstruct import BottleneckPruning, PruningSearch
from repro.train.subsets import SubsetData


@dataclass(frozen=True)
class SFPConfig:
    # changes to the profile's recipe for the soft-pruning training (their pretrained variant: lr 0.01)
    soft_train: dict[str, Any] = field(default_factory=lambda: {"lr": 0.01})
    finetune: dict[str, Any] = field(default_factory=dict)  # changes to the recipe for the final fine-tune


def filters_to_zero(weight: torch.Tensor, keep: int) -> torch.Tensor:
    """Indices of the ``weight.shape[0] - keep`` output filters of smallest L2 norm (ties: lower index)."""
    norms = weight.detach().flatten(1).norm(dim=1)
    order = torch.sort(norms, stable=True).indices
    return order[:weight.shape[0] - keep]


@torch.no_grad()
def soft_prune(model: torch.nn.Module, keep: dict[str, int]) -> dict[str, list[int]]:
    """Zero, in each named convolution weight, the filters of smallest L2 norm so that ``keep[name]`` remain;
    returns the zeroed indices per weight."""
    params = dict(model.named_parameters())
    out = {}
    for name, k in keep.items():
        w = params[name]
        idx = filters_to_zero(w, k)
        w[idx] = 0
        out[name] = sorted(idx.tolist())
    return out


@register
class SFP(BottleneckPruning[SFPConfig]):
    name = "sfp"
    variants = ("channel",)
    retrain = "finetune"
    config_type = SFPConfig
    families = ("resnet50",)

    def work(self, family: str, variant: str, config: SFPConfig, profile, fraction: float) -> list[Work]:
        epochs = profile.train_for(family, config.soft_train, f"methods.{self.name}.soft_train").epochs
        return [reference_work(profile, family), Work(f"soft pruning: {epochs:g} epochs of the full network",
                                                      epochs)]

    def search(self, ctx: Context[SFPConfig]) -> SearchResult:
        from repro.data import resize_batch
        from repro.models.prune import producers, select_channels
        from repro.train.trainer import (
            build_scheduler,
            load_state,
            make_optimizer,
            make_precision,
            save_state,
            train_step,
        )

        family, constraint, cfg = ctx.family, ctx.constraint, ctx.config
        search = PruningSearch.open(ctx, self.name)
        arch0, ckpt = search.arch0, search.state_path
        weights = {}
        for s in search.slots:
            (name,) = producers(arch0, s)
            weights[name] = (s, search.goal.widths[s])
        keep = {name: k for name, (_s, k) in weights.items()}
        recipe = ctx.profile.train_for(family, cfg.soft_train, f"methods.{self.name}.soft_train")
        data = SubsetData.for_search(ctx, recipe.batch_size)
        model = data.prepare(search.reference.model)
        steps_per_epoch = len(data.train_loader)
        total = recipe.epochs * steps_per_epoch
        optimizer = make_optimizer(model, recipe, 1)
        scheduler = build_scheduler(optimizer, recipe, steps_per_epoch)
        dtype, scaler = make_precision(recipe, data.device)
        parts = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler}
        step, earlier, history = 0, 0.0, []
        saved = load_state(ckpt, data.device, parts, ctx.log)
        if saved is not None:
            step, earlier, history = saved["step"], saved["seconds"], saved["history"]
            ctx.log(f"sfp: resumed at step {step} of {total} ({ckpt})")
        else:
            soft_prune(model, keep)  # their code zeroes once before the first epoch
        resolution = data.resolution(arch0.resolution)
        start = time.perf_counter()
        from tqdm import tqdm

        bar = tqdm(total=total, initial=step, desc=f"sfp {family} {constraint.label()}", unit="step",
                   disable=True if ctx.quiet else None)
        batches = data.train_batches(step)
        losses = []
        try:
            while step < total:
                model.train()
                x, y = next(batches)
                x = resize_batch(data.normalize(x), resolution)
                losses.append(float(train_step(model, x, y.to(data.device), optimizer, scaler,
                                               recipe.label_smoothing, dtype)))
                scheduler.step()
                step += 1
                bar.update(1)
                if step % steps_per_epoch == 0 or step == total:
                    # how many zeroed filters the epoch brought back, then zero the smallest again
                    params = dict(model.named_parameters())
                    revived = sum(int((params[n].detach().flatten(1).norm(dim=1) > 0).sum()) - k
                                  for n, k in keep.items())
                    soft_prune(model, keep)
                    history.append({"epoch": math.ceil(step / steps_per_epoch), "loss": sum(losses) / len(losses),
                                    "filters_revived": revived})
                    losses = []
                    save_state(ckpt, parts, step=step, seconds=earlier + time.perf_counter() - start,
                               history=history)
        finally:
            bar.close()
        seconds = earlier + time.perf_counter() - start
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        chosen = {}
        for name, (slot, k) in weights.items():
            zeroed = set(filters_to_zero(state[name], k).tolist())
            chosen[slot] = torch.tensor([i for i in range(state[name].shape[0]) if i not in zeroed])
        arch, state = select_channels(state, arch0, chosen)
        return search.finish(arch, state, seconds, f"{recipe.epochs} soft-pruning epochs in {seconds:.0f} s",
                             epochs=recipe.epochs, history=history)

__all__ = ["SFP", "SFPConfig", "filters_to_zero", "soft_prune"]
