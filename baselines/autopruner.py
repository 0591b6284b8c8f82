"""AutoPruner (Luo and Wu, "AutoPruner: An End-to-End Trainable Filter Pruning Method for Efficient Deep Model
Inference", 2018; public code Roll920/AutoPruner) as a ``Method``: ``autopruner``, variant *Channel*, for
ResNet-50.

A *pruning layer* (``Gate``) follows the first and the second convolution (with their BatchNorm and ReLU) of
every bottleneck: it averages the activations over the batch, max-pools them 2x2, maps the result through a
fully-connected layer to one score per channel, multiplies by a scale ``alpha`` and takes the sigmoid; the
channels are multiplied by these codes. The network and the gates train together (on sub-train) with the loss
cross-entropy + sum over gates of ``lambda x (mean code - r)^2``, which drives each gate's kept fraction to
``r``; ``alpha`` grows linearly from 1 to 100 over the phase, so the codes become binary. ``lambda`` starts at
10 and every 20 steps is reset to ``100 x |pruned fraction - (1 - r)|`` (the pruned fraction of the codes
binarized at 0.5). As in their code, one stage at a time: gates on that stage's blocks, train, remove the
channels whose codes are lowest (averaged over the last 20 steps; saturated ties broken by the scores), then the
next stage from the smaller network; the last block of the network is not pruned. The state is checkpointed
after each stage (not within one: an interrupted stage starts again). Then the pipeline fine-tunes
(``retrain = "finetune"``).

``r`` is the cell's published rate (their ``--compression_rate`` 0.5 and 0.3, the fraction of channels kept,
in Table 3's 2G and 1G cells), or at a column's header the largest keep ratio, one for every gated layer, that
meets its budget. Departures: their code also bumps ``alpha`` when the codes are slow to binarize
(not reproduced: the linear schedule alone); their channel counts are whatever the binarized codes say
(close to ``r`` in their logs), ours exactly ``r``'s (so a header cell's budget is met).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from repro.arch import ArchConfig, family_spec
from repro.method import Context, SearchResult, Work, reference_work
from repro.registry import register
from repro.train.reconstruct import BottleneckPruning, PruningSearch
from repro.train.subsets import SubsetData


@dataclass(frozen=True)
class AutoPrunerConfig:
    stage_epochs: float = 8.0  # sub-train epochs of gated training per stage (theirs: 8)
    alpha_start: float = 1.0
    alpha_end: float = 100.0
    lambda_start: float = 10.0
    lambda_scale: float = 100.0  # lambda = lambda_scale x |pruned fraction - (1 - r)|, every lambda_every steps
    lambda_every: int = 20
    # changes to the profile's recipe for the gated training (theirs: lr 1e-3, x0.1 at half, weight decay 5e-4)
    gate_train: dict[str, Any] = field(default_factory=lambda: {
        "lr": 1e-3, "lr_reference_batch": 256, "weight_decay": 5e-4, "warmup_epochs": 0, "schedule": "step",
        "step_milestones": [0.5], "nesterov": False})
    finetune: dict[str, Any] = field(default_factory=dict)  # changes to the recipe for the final fine-tune

    def __post_init__(self) -> None:
        if self.stage_epochs <= 0 or self.lambda_every < 1 or not 0 < self.alpha_start <= self.alpha_end:
            raise ValueError(f"methods.autopruner: stage_epochs={self.stage_epochs} (> 0), lambda_every="
                             f"{self.lambda_every} (>= 1), alpha {self.alpha_start} -> {self.alpha_end} "
                             f"(0 < start <= end) out of range")


class Gate(nn.Module):
    """One pruning layer: codes in (0, 1) per channel from the batch-averaged, 2x2 max-pooled activation map
    through a fully-connected layer, times ``alpha``, through a sigmoid. Built for one map size."""

    def __init__(self, channels: int, side: int):
        super().__init__()
        self.pool = side >= 2
        pooled = side // 2 if self.pool else side
        n = channels * pooled * pooled
        self.fc = nn.Linear(n, channels)
        nn.init.normal_(self.fc.weight, 0.0, 10 * math.sqrt(2.0 / n))  # their init: 10 x He's std
        nn.init.zeros_(self.fc.bias)
        self.alpha = 1.0
        self.last: torch.Tensor | None = None  # the codes of the last forward pass
        self.last_score: torch.Tensor | None = None  # and their scores

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """The fully-connected layer's score per channel (before alpha and the sigmoid), in float32 whatever
        the autocast around it: at alpha near 100 the codes saturate, and in float16 they would tie."""
        with torch.autocast(x.device.type, enabled=False):
            m = x.float().mean(0, keepdim=True)
            if self.pool:
                m = F.max_pool2d(m, 2)
            return self.fc(m.flatten(1)).squeeze(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.scores(x)
        v = torch.sigmoid(self.alpha * s)
        self.last, self.last_score = v, s
        return x * v.to(x.dtype).view(1, -1, 1, 1)


class Gated:
    """Gates attached (forward hooks) to the outputs of named modules of a network; ``remove`` detaches them."""

    def __init__(self, model: nn.Module, sides: dict[str, tuple[int, int]], device):
        modules = dict(model.named_modules())
        self.gates = nn.ModuleDict({n.replace(".", "_"): Gate(c, s) for n, (c, s) in sides.items()}).to(device)
        self.names = list(sides)
        self.hooks = [modules[n].register_forward_hook(self._hook(n)) for n in sides]

    def _hook(self, name: str):
        gate = None

        def fn(module, inputs, output):
            nonlocal gate
            gate = gate or self.gates[name.replace(".", "_")]
            return gate(output)
        return fn

    def remove(self) -> None:
        for h in self.hooks:
            h.remove()

    def penalty(self, ratio: float, lambdas: dict[str, float]) -> torch.Tensor:
        return sum(lambdas[n] * (self.gates[n.replace(".", "_")].last.mean() - ratio) ** 2 for n in self.names)


def map_sides(model: nn.Module, names: list[str], x: torch.Tensor) -> dict[str, tuple[int, int]]:
    """(channels, side) of each named module's output for input ``x``."""
    modules = dict(model.named_modules())
    found, hooks = {}, []
    for n in names:
        hooks.append(modules[n].register_forward_hook(
            lambda m, i, o, n=n: found.__setitem__(n, (o.shape[1], o.shape[-1]))))
    try:
        with torch.no_grad():
            model.eval()(x[:2])
    finally:
        for h in hooks:
            h.remove()
    return found


def train_gated(model: nn.Module, gated: Gated, ratio: float, steps: int, batches, step_fn, cfg: AutoPrunerConfig,
                optimizer, scheduler, scaler=None) -> tuple[dict[str, torch.Tensor], list[dict[str, float]]]:
    """``steps`` steps of gated training (``step_fn(x, y)`` gives the cross-entropy of a batch); returns each
    gate's codes and scores averaged over the last ``lambda_every`` steps, and a short history."""
    lambdas = {n: cfg.lambda_start for n in gated.names}
    recent: dict[str, list[torch.Tensor]] = {n: [] for n in gated.names}
    scores: dict[str, list[torch.Tensor]] = {n: [] for n in gated.names}
    history = []
    for step in range(steps):
        alpha = cfg.alpha_start + (cfg.alpha_end - cfg.alpha_start) * step / max(1, steps - 1)
        for g in gated.gates.values():
            g.alpha = alpha
        model.train()
        x, y = next(batches)
        ce = step_fn(x, y)
        loss = ce + gated.penalty(ratio, lambdas)
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        scheduler.step()
        for n in gated.names:
            gate = gated.gates[n.replace(".", "_")]
            recent[n] = (recent[n] + [gate.last.detach().cpu()])[-cfg.lambda_every:]
            scores[n] = (scores[n] + [gate.last_score.detach().cpu()])[-cfg.lambda_every:]
        if (step + 1) % cfg.lambda_every == 0 or step + 1 == steps:
            pruned = {n: float((torch.stack(recent[n]).mean(0) <= 0.5).float().mean()) for n in gated.names}
            lambdas = {n: cfg.lambda_scale * abs(pruned[n] - (1 - ratio)) for n in gated.names}
            history.append({"step": step + 1, "alpha": alpha, "loss": float(ce.detach()),
                            "kept": 1 - sum(pruned.values()) / len(pruned)})
    return ({n: torch.stack(recent[n]).mean(0) for n in gated.names},
            {n: torch.stack(scores[n]).mean(0) for n in gated.names}, history)


def keep_highest(codes: torch.Tensor, scores: torch.Tensor, count: int) -> torch.Tensor:
    """The sorted indices of the ``count`` channels of highest code, ties (saturated codes) broken by the scores
    behind them: the layer keeps exactly ``count`` channels whatever fraction of the codes ended above 0.5."""
    order = np.lexsort((-scores.numpy(), -codes.numpy()))[:count]
    return torch.from_numpy(order.copy()).sort().values


@register
class AutoPruner(BottleneckPruning[AutoPrunerConfig]):
    name = "autopruner"
    variants = ("channel",)
    retrain = "finetune"
    config_type = AutoPrunerConfig
    families = ("resnet50",)

    def skipped(self, family: str) -> tuple[int, ...]:
        """The network's last bottleneck, which AutoPruner does not prune (the module docstring)."""
        last = family_spec(family).blocks[-1]
        return last.slot("conv1"), last.slot("conv2")

    def work(self, family: str, variant: str, config: AutoPrunerConfig, profile, fraction: float) -> list[Work]:
        stages = len(family_spec(family).max_depths)
        return [reference_work(profile, family),
                Work(f"gated training: {stages} stages x {config.stage_epochs:g} sub-train epochs",
                     stages * config.stage_epochs, "subtrain")]

    def search(self, ctx: Context[AutoPrunerConfig]) -> SearchResult:
        from repro.data import resize_batch
        from repro.models import build_model
        from repro.models.prune import producers, select_channels
        from repro.train.trainer import build_scheduler, make_optimizer, make_precision

        family, cfg = ctx.family, ctx.config
        search = PruningSearch.open(ctx, self.name, skip=self.skipped(family))
        arch0, slots, ratio, goal = search.arch0, search.slots, search.ratio, search.goal
        spec = arch0.spec
        recipe = ctx.profile.train_for(family, cfg.gate_train, f"methods.{self.name}.gate_train")
        data = SubsetData.for_search(ctx, recipe.batch_size)
        resolution = data.resolution(arch0.resolution)
        num_classes = ctx.data.num_classes
        st = search.resume("after stage {stage}", stage=0, history=[])
        dtype, scaler = make_precision(recipe, data.device)
        steps = max(1, round(cfg.stage_epochs * len(data.train_loader)))
        start = time.perf_counter()
        for stage in range(st["stage"], len(spec.max_depths)):
            arch = ArchConfig.from_dict(st["arch"])
            model = build_model(arch.replace(num_classes=num_classes), init=False)
            model.load_state_dict(st["state"])
            model = data.prepare(model)
            mine = [s for s in slots if spec.slots[s].stage == stage]
            names = {s: producers(arch0, s)[0].rsplit(".", 2)[0] for s in mine}  # "blocks.3.conv1"
            x0, _ = next(data.train_batches())
            sides = map_sides(model, list(names.values()), resize_batch(data.normalize(x0), resolution))
            gated = Gated(model, sides, data.device)
            params = torch.nn.ModuleList([model, gated.gates])
            optimizer = make_optimizer(params, recipe, 1)
            scheduler = build_scheduler(optimizer, recipe, steps / recipe.epochs)

            def step_fn(x, y, model=model):
                x = resize_batch(data.normalize(x), resolution)
                with torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None):
                    return F.cross_entropy(model(x), y.to(data.device).long(), label_smoothing=recipe.label_smoothing)

            try:
                codes, scores, history = train_gated(model, gated, ratio, steps, data.train_batches(stage * steps),
                                                     step_fn, cfg, optimizer, scheduler, scaler)
            finally:
                gated.remove()
            state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            # the highest codes, ties (saturated codes) broken by the scores behind them
            keep = {s: keep_highest(codes[names[s]], scores[names[s]], goal.widths[s]) for s in mine}
            arch, state = select_channels(state, arch, keep)
            st["history"].append({"stage": stage, "steps": steps, "history": history,
                                  "kept_by_codes": {names[s]: float((codes[names[s]] > 0.5).float().mean())
                                                    for s in mine}})
            st.update(stage=stage + 1, arch=arch.to_dict(), state=state)
            st["seconds"] += time.perf_counter() - start
            start = time.perf_counter()
            search.checkpoint(st)
        return search.finish(ArchConfig.from_dict(st["arch"]), st["state"], st["seconds"],
                             f"{len(spec.max_depths)} stages x {steps} steps in {st['seconds']:.0f} s",
                             stages=st["history"])

__all__ = ["AutoPruner", "AutoPrunerConfig", "Gate", "Gated", "keep_highest", "map_sides", "train_gated"]
