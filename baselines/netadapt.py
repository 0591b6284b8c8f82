"""NetAdapt (Yang et al., "NetAdapt: Platform-Aware Neural Network Adaptation for Mobile Applications", ECCV
2018; public code denru01/netadapt) as a ``Method``: ``netadapt``, variant *Channel*, under a FLOPs or a
latency constraint.

Starting from the trained full network (``ctx.reference``), each iteration ``i`` (from 1):

1. sets the target ``R_{i-1} - dR_i`` with ``dR_i = init_reduction x R_0 x decay^(i-1)`` (their
   ``master.py``: ``target = current - init_resource_reduction * decay ** (iter - 1)``, the initial reduction
   a fraction of the first network's resource);
2. for each layer (a free width slot, or a group of slots tied by residual additions) proposes the largest
   width, in steps of ``channel_step``, at which the network meets the target (resource: the analytic MAC
   count, or the device's latency table), keeping the filters of largest L2 norm; a layer that cannot reach
   the target alone makes no proposal;
3. fine-tunes each proposal for ``short_steps`` steps on *sub-train* (their ``-st 500 -lr 0.001``) and keeps
   the one with the best *sub-eval* top-1;

until the resource is within the budget. The network found is then fine-tuned for long by the pipeline
(``retrain = "finetune"``, the recipe with ``finetune`` applied). Every iteration is checkpointed (the
network, its weights, the history), so a search resumes where it stopped.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from repro.arch import ArchConfig
from repro.method import Context, Method, SearchResult, Work, reference_work
from repro.registry import register
from repro.train.subsets import SubsetData

STATE = "netadapt_state.pt"


@dataclass(frozen=True)
class NetAdaptConfig:
    init_reduction: float = 0.025  # dR_1 as a fraction of the first network's resource (their -irr)
    decay: float = 0.96  # dR_i = dR_1 x decay^(i-1) (their -rd)
    short_steps: int = 500  # short-term fine-tune per proposal (their -st)
    short_lr: float = 0.001  # its learning rate (their -lr)
    channel_step: int = 8  # proposals remove filters in multiples of this
    max_iterations: int = 300  # a stop for schedules that cannot reach the budget
    eval_batches: int | None = None  # sub-eval batches per proposal (None: all of sub-eval)
    # the long-term fine-tune: changes to the profile's recipe (their README fine-tunes at lr 0.001)
    finetune: dict[str, Any] = field(default_factory=lambda: {"lr": 0.001})

    def __post_init__(self) -> None:
        if not 0 < self.init_reduction < 1:
            raise ValueError(f"methods.netadapt.init_reduction={self.init_reduction} must be within (0, 1)")
        if not 0 < self.decay <= 1:
            raise ValueError(f"methods.netadapt.decay={self.decay} must be within (0, 1]")
        for name in ("short_steps", "channel_step", "max_iterations"):
            if getattr(self, name) < 1:
                raise ValueError(f"methods.netadapt.{name}={getattr(self, name)} must be at least 1")
        if self.short_lr <= 0:
            raise ValueError(f"methods.netadapt.short_lr={self.short_lr} must be positive")



def layers(arch: ArchConfig) -> list[int]:
    """The layers NetAdapt simplifies: one representative slot per free width (a tie group counts once)."""
    from repro.models.prune import group_of

    return [i for i in range(arch.spec.num_widths) if group_of(arch, i) == i and arch.is_active(i)]


def schedule_targets(r0: float, budget: float, cfg: NetAdaptConfig) -> list[float]:
    """The targets an ideal run meets exactly (each iteration reaching its target): the resource schedule."""
    out, r = [], r0
    for i in range(1, cfg.max_iterations + 1):
        if r <= budget:
            break
        r = r - cfg.init_reduction * r0 * cfg.decay ** (i - 1)
        out.append(r)
    return out


def largest_width(arch: ArchConfig, slot: int, cost, target: float, step: int) -> int | None:
    """The largest width ``w = arch.widths[slot] - k * step`` (``w >= 1``) with ``cost(arch with w) <= target``
    (bisection: the cost grows with the width); None if even the narrowest misses."""
    from repro.models.prune import group_of

    group = next((g for g in arch.spec.ties if group_of(arch, slot) in g), (slot,))

    def at(w: int) -> ArchConfig:
        widths = list(arch.widths)
        for i in group:
            widths[i] = w
        return arch.replace(widths=tuple(widths))

    current = arch.widths[slot]
    ks = (current - 1) // step  # w = current - k * step >= 1 for k <= ks
    if ks < 1 or cost(at(current - ks * step)) > target:
        return None
    lo, hi = 1, ks  # smallest k that fits lies in lo..hi
    while lo < hi:
        mid = (lo + hi) // 2
        if cost(at(current - mid * step)) <= target:
            hi = mid
        else:
            lo = mid + 1
    return current - lo * step


def propose(state: dict[str, torch.Tensor], arch: ArchConfig, slot: int, width: int):
    """``arch``'s network with ``slot`` (and its tie group) narrowed to ``width`` filters of largest L2 norm."""
    from repro.models.prune import filter_norms, select_channels

    keep = filter_norms(state, arch, slot).argsort(descending=True)[:width].sort().values
    return select_channels(state, arch, {slot: keep})


def iteration(arch: ArchConfig, state: dict, cost, target: float, step: int, evaluate):
    """One NetAdapt iteration: a proposal per layer that can meet ``target``, each scored by
    ``evaluate(arch, state) -> (top1, fine-tuned state, loss)``; returns the best as (top1, arch, state) (None
    when no layer can) and every proposal's summary."""
    best, proposals = None, []
    for slot in layers(arch):
        width = largest_width(arch, slot, cost, target, step)
        if width is None:
            continue
        new_arch, new_state = propose(state, arch, slot, width)
        top1, tuned, loss = evaluate(new_arch, new_state)
        proposals.append({"layer": arch.spec.slots[slot].name, "width": width, "top1": top1,
                          "cost": cost(new_arch), "loss": loss})
        if best is None or top1 > best[0]:
            best = (top1, new_arch, tuned)
    return best, proposals


@register
class NetAdapt(Method[NetAdaptConfig]):
    name = "netadapt"
    variants = ("channel",)
    retrain = "finetune"
    config_type = NetAdaptConfig
    constraint_kinds = ("flops", "gpu_latency", "cpu_latency")

    def cheapest(self, family: str, variant: str, config: NetAdaptConfig) -> ArchConfig:
        """The full network with every layer it simplifies at its narrowest width (``current - k * step >= 1``)."""
        from repro.models.prune import group_of

        arch = ArchConfig.canonical(family)
        widths = list(arch.widths)
        for slot in layers(arch):
            narrowest = arch.widths[slot] - (arch.widths[slot] - 1) // config.channel_step * config.channel_step
            group = next((g for g in arch.spec.ties if group_of(arch, slot) in g), (slot,))
            for i in group:
                widths[i] = narrowest
        return arch.replace(widths=tuple(widths))

    def work(self, family: str, variant: str, config: NetAdaptConfig, profile, fraction: float) -> list[Work]:
        """The reference network, then the iterations its schedule needs to go from the full network to the
        budget (``fraction`` of it; a FLOPs model for every constraint): one proposal per layer each, every one
        fine-tuned ``short_steps`` batches and scored on sub-eval."""
        n = len(schedule_targets(1.0, fraction, config))
        proposals = n * len(layers(ArchConfig.canonical(family)))
        batch = profile.train_for(family).batch_size
        return [reference_work(profile, family),
                Work(f"{n} iterations: {proposals} proposals x {config.short_steps} fine-tuning steps",
                     proposals * config.short_steps * batch, None, "full"),
                Work(f"{proposals} proposals scored on sub-eval", proposals, "subeval", forward_only=True)]

    def search(self, ctx: Context[NetAdaptConfig]) -> SearchResult:
        from repro.models import build_model
        from repro.train.subsets import finetune
        from repro.train.trainer import read_checkpoint, rng_state, save_checkpoint, set_rng_state

        family, cfg, budget = ctx.family, ctx.config, ctx.budget
        reference = ctx.reference()
        saved = ctx.store.folder / STATE
        recipe = ctx.recipe
        num_classes = ctx.data.num_classes
        st = read_checkpoint(saved, log=ctx.log)
        if st is not None:
            set_rng_state(st.pop("rng"))  # the proposals' networks are built (initialized) from the global RNG
            ctx.log(f"netadapt: resumed at iteration {st['iteration']} ({saved})")
        else:
            arch0 = ArchConfig.canonical(family)
            st = {"iteration": 0, "arch": arch0.to_dict(), "state": reference.model.state_dict(), "history": [],
                  "r0": budget.cost(arch0), "seconds": 0.0, "done": False, "consumed": 0}
        start = time.perf_counter()
        data = SubsetData.for_search(ctx)
        # every proposal fine-tunes on the next short_steps batches of one stream: a resumed search skips what
        # the interrupted one drew
        batches = data.train_batches(st["consumed"])
        r0 = st["r0"]
        while not st["done"]:
            arch = ArchConfig.from_dict(st["arch"])
            current = budget.cost(arch)
            if current <= budget.limit:
                st["done"] = True
                break
            i = st["iteration"] + 1
            if i > cfg.max_iterations:
                raise RuntimeError(f"netadapt did not reach {budget.format(budget.limit)} in {cfg.max_iterations} "
                                   f"iterations (at {budget.format(current)}); raise methods.netadapt.init_reduction")
            target = current - cfg.init_reduction * r0 * cfg.decay ** (i - 1)

            def evaluate(new_arch: ArchConfig, new_state: dict) -> tuple[float, dict, float]:
                model = build_model(new_arch.replace(num_classes=num_classes))
                model.load_state_dict(new_state)
                model = data.prepare(model)
                loss = finetune(model, data, batches, cfg.short_steps, recipe, new_arch.resolution, cfg.short_lr)
                st["consumed"] += cfg.short_steps
                top1 = data.evaluate(model, new_arch.resolution, cfg.eval_batches)["top1"]
                return top1, {k: v.cpu() for k, v in model.state_dict().items()}, loss

            best, proposals = iteration(arch, st["state"], budget.cost, target, cfg.channel_step, evaluate)
            if best is None:
                raise RuntimeError(f"netadapt iteration {i}: no layer can reach the target "
                                   f"{budget.format(target)} alone; the budget {budget.format(budget.limit)} is out of "
                                   f"reach of this network")
            top1, new_arch, new_state = best
            st.update(iteration=i, arch=new_arch.to_dict(), state=new_state)
            st["history"].append({"iteration": i, "target": target, "cost": budget.cost(new_arch), "top1": top1,
                                  "proposals": proposals})
            st["seconds"] += time.perf_counter() - start
            start = time.perf_counter()
            save_checkpoint(ctx.store.path(STATE), **st, rng=rng_state())
            ctx.log(f"netadapt {family} iteration {i}: target {budget.format(target)}, kept "
                    f"{max(proposals, key=lambda p: p['top1'])['layer']} -> {budget.format(budget.cost(new_arch))}, "
                    f"sub-eval top-1 {top1:.3f}")
        st["seconds"] += time.perf_counter() - start
        arch = ArchConfig.from_dict(st["arch"])
        ctx.store.path("history.json").write_text(json.dumps(st["history"], indent=1))
        saved.unlink(missing_ok=True)  # done: the pipeline writes the result
        info = {"iterations": st["iteration"], "r0": r0, "cost": budget.cost(arch), "limit": budget.limit,
                "reference": reference.key, "seconds": st["seconds"],
                "history": [{k: v for k, v in h.items() if k != "proposals"} for h in st["history"]]}
        return SearchResult(arch.with_imagenet_geometry(), weights=st["state"], info=info, seconds=st["seconds"])


__all__ = ["NetAdapt", "NetAdaptConfig", "layers", "largest_width", "propose", "iteration", "schedule_targets"]
