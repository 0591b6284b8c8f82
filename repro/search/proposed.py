"""The paper's method as a ``Method``: ``proposed``, variants *Channel*, *Channel + Input image* and
*Channel + Input image + Depth*.

"A Gradient-based Architecture HyperParameter Optimization Approach" (ICLR 2020 submission; published as
"Joint Multi-Dimension Pruning via Numerical Gradient Update", Liu et al., IEEE TIP 2021). One search:

1. a weight-sharing network (``repro.models.supernet``) of the family's canonical network;
2. the space of the variant (``repro.space``), the cell's constraint as a budget (``repro.cost.budget``);
3. the joint run (``repro.search.joint``): weight steps on *sub-train* batches, NES steps of the vector on
   *sub-eval* batches, for ``epochs_fraction`` of the retraining recipe's epochs (the paper: one quarter),
   with the recipe's optimizer settings (learning rate scaled to the batch, cosine decay, warm-up in
   proportion, label smoothing, weight decay);
4. the found architecture is then trained from scratch on the full training split by the pipeline
   (``retrain = "scratch"``), as in the paper.

Scoring: each scored architecture's BatchNorm uses the statistics of the sub-eval batch it is scored on
(``SuperNet.batch_stats``): recalibrating on separate batches would double the cost of every score, and all
scores of a step share one batch, so the comparison is like for like.

The trajectory (one JSON line per hyperparameter step: the vector, its cost, the sub-eval loss, sigma) and
its plot go to ``<results>/searches/<key>/``, the key naming every input of the search. Settings come from
the profile's ``methods.proposed`` mapping (``ProposedConfig``); each choice is explained where it is
defined (``repro.space``, ``repro.search.nes``, ``repro.search.joint``).
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from repro.arch import ArchConfig
from repro.config import to_mapping
from repro.cost.budget import Budget
from repro.cost.flops import count_macs
from repro.method import Context, Method, SearchResult, Work
from repro.profiles import TrainConfig
from repro.registry import register
from repro.search.joint import (
    JointConfig,
    JointState,
    SearchOutcome,
    joint_search,
    plot_trajectory,
    write_trajectory,
)
from repro.space import VARIANTS, SearchSpace, SpaceConfig
from repro.train.trainer import load_state

CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class ProposedConfig:
    epochs_fraction: float = 0.25  # of the retraining recipe's epochs (the paper: one quarter)
    score_batch_size: int = 128  # sub-eval images per scored architecture (per process)
    checkpoint_every: int = 2000  # weight steps between checkpoints of the search (0: none)
    space: SpaceConfig = field(default_factory=SpaceConfig)
    joint: JointConfig = field(default_factory=JointConfig)

    def __post_init__(self) -> None:
        if self.epochs_fraction <= 0:
            raise ValueError(f"epochs_fraction={self.epochs_fraction} must be positive")
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every={self.checkpoint_every} must not be negative")
        if self.score_batch_size < 1:
            raise ValueError(f"score_batch_size={self.score_batch_size} must be at least 1")


def proposed_config(methods: dict[str, Any], family: str | None = None) -> ProposedConfig:
    """The typed ``methods.proposed`` settings, with ``by_family.<family>`` merged in when ``family`` is given."""
    return Proposed().config(methods, family)


class NetworkProblem:
    """Weight steps and scores on a weight-sharing network (see ``repro.search.joint.Problem``)."""

    def __init__(self, supernet, train_model: nn.Module, optimizer, scheduler, scaler, train_batches,
                 score_batches, normalize: nn.Module, resolution_of, label_smoothing: float,
                 dtype: torch.dtype | None, device: torch.device):
        self.supernet, self.train_model = supernet, train_model
        self.optimizer, self.scheduler, self.scaler = optimizer, scheduler, scaler
        self.train_batches, self.score_batches = train_batches, score_batches
        self.normalize, self.resolution_of = normalize, resolution_of
        self.label_smoothing, self.dtype, self.device = label_smoothing, dtype, device
        self.archs_trained: list[ArchConfig] = []
        # the compute this process spent, in image-MACs at ImageNet geometry (``repro.cost.flops.count_macs`` of
        # each sampled network, times the images it saw): the search's cost against a retraining's (claims)
        self.compute = {"weight_step_image_macs": 0, "score_image_macs": 0}
        # this process's wall seconds in weight steps (batch loading included, as in a retraining) and in scores:
        # with ``compute``, the search's time per MAC beside the retraining's (claims)
        self.seconds = {"weight_steps": 0.0, "scores": 0.0}

    def weight_step(self, arch: ArchConfig, step: int) -> float:
        from repro.data.loaders import resize_batch
        from repro.train.trainer import train_step

        start = time.perf_counter()
        self.archs_trained.append(arch)
        self.supernet.set_arch(arch)
        self.train_model.train()
        x, y = next(self.train_batches)
        x = resize_batch(self.normalize(x), self.resolution_of(arch))
        self.compute["weight_step_image_macs"] += len(x) * count_macs(arch)
        loss = train_step(self.train_model, x, y.to(self.device), self.optimizer, self.scaler,
                          self.label_smoothing, self.dtype)
        self.scheduler.step()
        loss = float(loss)
        self.seconds["weight_steps"] += time.perf_counter() - start
        return loss

    @torch.no_grad()
    def score(self, vectors: list[np.ndarray], archs: list[ArchConfig], step: int) -> np.ndarray:
        from repro.data.loaders import resize_batch

        start = time.perf_counter()
        x, y = next(self.score_batches)
        x, y = self.normalize(x), y.to(self.device).long()
        net = self.supernet
        net.eval()
        net.batch_stats = True
        losses = []
        try:
            for arch in archs:
                net.set_arch(arch)
                self.compute["score_image_macs"] += len(x) * count_macs(arch)
                with torch.autocast(x.device.type, dtype=self.dtype, enabled=self.dtype is not None):
                    logits = net(resize_batch(x, self.resolution_of(arch))).float()
                losses.append(F.cross_entropy(logits, y))
        finally:
            net.batch_stats = False
            net.train()
        out = torch.stack(losses).double()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(out)
            out /= torch.distributed.get_world_size()
        out = out.cpu().numpy()
        self.seconds["scores"] += time.perf_counter() - start
        return out


def _cycle(loader, skip: int = 0):
    """The loader's batches, epoch after epoch (each epoch's order from (seed, epoch)), after the first
    ``skip`` (a resumed run continues where the interrupted one stopped)."""
    first_epoch, offset = divmod(skip, len(loader))
    from repro.train.trainer import epoch_batches

    for epoch in itertools.count(first_epoch):
        for i, batch in enumerate(epoch_batches(loader, epoch)):
            if epoch == first_epoch and i < offset:
                continue
            yield batch


@register
class Proposed(Method[ProposedConfig]):
    name = "proposed"
    variants = VARIANTS
    retrain = "scratch"
    config_type = ProposedConfig
    constraint_kinds = ("flops", "gpu_latency", "cpu_latency")
    distributed = True  # the joint run is data-parallel under torchrun

    def cheapest(self, family: str, variant: str, config: ProposedConfig) -> ArchConfig:
        """The space's lower corner: every ratio at its bound."""
        space = SearchSpace(family, variant, config.space)
        return space.decode(space.lower)

    def work(self, family: str, variant: str, config: ProposedConfig, profile, fraction: float) -> list[Work]:
        """The joint run's weight steps: ``epochs_fraction`` of the recipe's epochs over sub-train, at most the
        full network's cost per image (the NES scoring batches are left out: a few per hyper step)."""
        epochs = config.epochs_fraction * profile.train_for(family).epochs
        return [Work(f"joint search: {epochs:g} sub-train epochs of the shared weights", epochs, "subtrain")]

    def search(self, ctx: Context[ProposedConfig]) -> SearchResult:
        cfg = ctx.config
        space = SearchSpace(ctx.family, ctx.variant, cfg.space, num_classes=ctx.data.num_classes)
        outcome, summary = run_search(space, ctx.budget, cfg, ctx.recipe, ctx)
        info = {"config": to_mapping(cfg), **{k: v for k, v in summary.items() if k != "arch"}}
        return SearchResult(outcome.arch.with_imagenet_geometry(), info=info, seconds=summary["seconds"])


def run_search(space: SearchSpace, budget: Budget, cfg: ProposedConfig, recipe: TrainConfig,
               ctx: Context[ProposedConfig]) -> tuple[SearchOutcome, dict[str, Any]]:
    """Build the network, loaders and optimizer, run ``joint_search`` (resuming from the search's checkpoint),
    write the trajectory and its plot into the search's folder; return the outcome and a summary."""
    from tqdm import tqdm

    from repro.data import Normalize
    from repro.distributed import barrier, is_main, world_size
    from repro.models.supernet import SuperNet
    from repro.train.trainer import (
        build_scheduler,
        data_resolution,
        make_optimizer,
        make_precision,
        resolve_device,
        save_state,
        seed_everything,
        use_channels_last,
        wrap_ddp,
    )

    device = ctx.device or resolve_device()
    data = ctx.data
    seed_everything(ctx.seed)
    supernet = SuperNet(space.family, data.num_classes).to(device)
    channels_last = use_channels_last(recipe.channels_last)
    if channels_last:  # about 2x faster on this CPU too (MobileNet V1, 2 threads)
        supernet = supernet.to(memory_format=torch.channels_last)
    world = world_size()
    # blocks beyond a sampled depth get no gradient: let DDP look for them
    train_model = wrap_ddp(supernet, device, find_unused_parameters=True)
    base = data.base_resolution
    decode_at = max(base, data_resolution(cfg.space.max_resolution, base))
    train_loader, plan, score_loader = _loaders(ctx, recipe, cfg.score_batch_size, decode_at, world)
    total = max(1, round(cfg.epochs_fraction * recipe.epochs * len(train_loader)))
    # the recipe's schedule stretched over the joint run: warm-up in proportion, then its decay
    schedule = dataclasses.replace(recipe, epochs=total, warmup_epochs=recipe.warmup_epochs / recipe.epochs * total)
    optimizer = make_optimizer(supernet, recipe, world)
    scheduler = build_scheduler(optimizer, schedule, 1)
    dtype, scaler = make_precision(recipe, device)
    parts = {"supernet": supernet, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler}
    normalize = Normalize(channels_last=channels_last).to(device)
    main = is_main()
    ckpt = ctx.store.folder / CHECKPOINT
    state, earlier, compute, split = _resume(ckpt, device, parts, world, total,
                                             ctx.log if main else lambda _s: None)
    problem = NetworkProblem(supernet, train_model, optimizer, scheduler, scaler,
                             _cycle(train_loader, 0 if state is None else state.next_step),
                             _cycle(score_loader, 0 if state is None else state.done_hyper), normalize,
                             lambda a: data_resolution(a.resolution, base), recipe.label_smoothing, dtype, device)
    problem.compute.update(compute or {})  # what the interrupted part spent
    problem.seconds.update(split or {})
    start = time.perf_counter()

    def save(st) -> None:
        if main:
            save_state(ctx.store.path(CHECKPOINT), parts, joint=st, world=world, total=total,
                       seconds=earlier + time.perf_counter() - start, compute=dict(problem.compute),
                       split=dict(problem.seconds))
        barrier()
    if main:
        ctx.log(f"proposed {space.variant} search on {space.family}: {space.dim} coordinates, {total} weight steps "
                f"({cfg.epochs_fraction:g} x {recipe.epochs} epochs of sub-train), limit "
                f"{budget.format(budget.limit)}; {plan.reason}")
    done = 0 if state is None else state.next_step
    bar = tqdm(total=total, initial=done, desc=f"search {space.variant}", unit="step",
               disable=True if (ctx.quiet or not main) else None)
    try:
        outcome = joint_search(space, budget, cfg.joint, total, problem, ctx.seed, state=state, checkpoint=save,
                               checkpoint_every=cfg.checkpoint_every, progress=lambda _s: bar.update(1))
    finally:
        bar.close()
    seconds = earlier + time.perf_counter() - start
    trajectory = outcome.trajectory
    summary = _summary(space, budget, outcome, seconds=seconds, resumed_at=done, weight_steps=total)
    summary["compute"] = _compute(problem.compute, world, outcome.arch, recipe.epochs,
                                  sum(data.manifest["counts"]["train"].values()), cfg.epochs_fraction)
    if state is not None and compute is None:  # resumed from a checkpoint that did not count: no ratio
        summary["compute"].update(ratio=None, counted_from_step=done)
    # where process 0's seconds went (the loaders are built before the clock starts); "other": NES bookkeeping,
    # checkpoints, the progress bar. None when resumed from a checkpoint that did not time its parts
    summary["seconds_split"] = (None if state is not None and split is None else
                                {**problem.seconds, "other": seconds - sum(problem.seconds.values())})
    if main:
        write_trajectory(ctx.store.path("trajectory.jsonl"), trajectory, space.names)
        if trajectory:
            plot_trajectory(ctx.store.path("trajectory.png"), trajectory, space.names,
                            f"proposed {space.variant}, {space.family}, limit {budget.format(budget.limit)}")
        ckpt.unlink(missing_ok=True)  # the search is done; its result (written by the pipeline) and trajectory remain
    barrier()
    return outcome, summary


def _compute(counted: dict[str, int], world: int, arch: ArchConfig, epochs: int, train_images: int,
             epochs_fraction: float) -> dict[str, Any]:
    """The search's compute beside a from-scratch retraining of the network it found, in image-MACs at ImageNet
    geometry: a training step costs three forward passes (the forward and a backward twice its size), a score
    one. The retraining is ``epochs`` over every training image, counted the same way."""
    steps, scores = 3 * counted["weight_step_image_macs"] * world, counted["score_image_macs"] * world
    retrain = 3 * epochs * train_images * count_macs(arch)
    return {"search_image_macs": steps + scores, "weight_step_image_macs": steps, "score_image_macs": scores,
            "retrain_image_macs": retrain, "ratio": (steps + scores) / retrain if retrain else None,
            "epochs_fraction": epochs_fraction,
            "convention": "image-MACs at ImageNet geometry; a training step 3 forward passes, a score 1"}


def _resume(ckpt: Path, device: torch.device, parts: dict[str, Any], world: int, total: int,
            log: Callable[[str], None]
            ) -> tuple[JointState | None, float, dict[str, int] | None, dict[str, float] | None]:
    """The joint run's state, the seconds, the compute (``NetworkProblem.compute``) and the seconds' split
    (``NetworkProblem.seconds``) spent before an interruption, restored into ``parts`` from the search's
    checkpoint; (None, 0, {}, {}) without one (the compute or split None when the checkpoint did not count it).
    A checkpoint of another process count or length is refused."""
    saved = load_state(ckpt, device, parts, log)
    if saved is None:
        return None, 0.0, {}, {}
    if (saved.get("world"), saved.get("total")) != (world, total):
        raise ValueError(f"{ckpt} was written by a run of {saved.get('total')} weight steps on "
                         f"{saved.get('world')} process(es); this one has {total} on {world}: resume with the "
                         f"same process count, or delete the checkpoint to start the search again")
    state = saved["joint"]
    log(f"resumed the search from {ckpt} at weight step {state.next_step} of {total}")
    # a checkpoint written before the search counted its compute has none: None, so the count says it is partial
    return (state, saved["seconds"], (dict(saved["compute"]) if "compute" in saved else None),
            (dict(saved["split"]) if "split" in saved else None))


def _loaders(ctx: Context[ProposedConfig], recipe: TrainConfig, score_batch_size: int, decode_at: int, world: int):
    """(sub-train loader, its loading plan, the scoring loader over sub-eval), both decoding at ``decode_at``."""
    from repro.data import make_loader

    data = ctx.data
    train_loader, plan = make_loader(data.folder / "train.beton", train=True, batch_size=recipe.batch_size,
                                     resolution=decode_at, indices=data.sub_train, seed=ctx.seed,
                                     num_workers=ctx.profile.data.workers, crop_scale=recipe.crop_scale,
                                     reuse=True)
    # evaluation loaders read in the order given and sub-eval is stored class by class: shuffled once, so
    # that every scoring batch mixes the classes (in file order a batch of 64 held one or two of them)
    score_order = np.random.default_rng(ctx.seed).permutation(np.asarray(data.sub_eval))
    score_loader, _ = make_loader(data.folder / "train.beton", train=False, batch_size=score_batch_size,
                                  resolution=decode_at, indices=score_order, num_workers=ctx.profile.data.workers,
                                  drop_last=True, reuse=True)
    if len(data.sub_eval) // world < score_batch_size:  # checked on the global count: every rank agrees
        raise ValueError(f"score_batch_size={score_batch_size} is larger than a process's share of sub-eval "
                         f"({len(data.sub_eval)} images over {world}); lower methods.proposed.score_batch_size")
    return train_loader, plan, score_loader


def _summary(space: SearchSpace, budget: Budget, outcome: SearchOutcome, seconds: float, resumed_at: int,
             weight_steps: int) -> dict[str, Any]:
    """What a search's record says of it: the vectors and architectures it started and ended at, the costs,
    the losses at both ends, its steps and time."""
    trajectory = outcome.trajectory
    return {"arch": outcome.arch.to_dict(), "vector": [float(x) for x in outcome.vector],
            "start_vector": [float(x) for x in outcome.start], "coordinates": space.names,
            "start_arch": space.decode(outcome.start).with_imagenet_geometry().to_dict(),
            "seconds": seconds, "resumed_at_step": resumed_at or None, "weight_steps": weight_steps,
            "hyper_steps": len(trajectory),
            "cost": budget.cost(outcome.arch), "limit": budget.limit, "unit": budget.unit,
            "max_scored_cost": max(outcome.scored_costs, default=None),
            "first_loss": trajectory[0]["loss"] if trajectory else None,
            "last_loss": trajectory[-1]["loss"] if trajectory else None}


__all__ = ["Proposed", "ProposedConfig", "NetworkProblem", "run_search", "proposed_config"]
