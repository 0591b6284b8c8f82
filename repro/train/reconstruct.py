"""What the pruning baselines share (ThiNet, CP, SFP, AutoPruner; AMC's refit), kept in the trainer's layer so that
no baseline imports another: which channels a ResNet
bottleneck prunes and in which order, the keep ratio that meets a budget, samples of a layer's input patches
and output at random positions, and least squares.

The layers pruned in a ResNet-50 bottleneck are its first two convolutions' outputs (the ``conv1`` and
``conv2`` width slots): their channels are internal to the block, while ``conv3``'s outputs are tied to the
residual stream. Pruning a slot is judged at the layer that *reads* it (conv2 for conv1's slot, conv3 for
conv2's), whose output is what ThiNet and CP reconstruct: its input patch at a sampled output position,
split per input channel, says how much each channel contributes to that output.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
import torch.nn.functional as F

from repro.arch import ArchConfig
from repro.data import resize_batch
from repro.method import Context, Method, SearchResult, TrainedNetwork, Work, reference_work
from repro.models import build_model
from repro.models.prune import consumers, select_channels
from repro.train.subsets import SubsetData, finetune
from repro.train.trainer import read_checkpoint, rng_state, save_checkpoint, set_rng_state


@dataclass(frozen=True)
class LayerwiseConfig:
    """The settings ThiNet and CP share (each declares its own defaults)."""

    section: ClassVar[str] = "methods.<layer-wise method>"
    calibration_images: int = 5000  # sub-train images sampled for each layer (the stream's first ones)
    points_per_image: int = 10  # sampled output positions of the reading layer per image
    block_finetune_epochs: float = 0.0  # sub-train epochs of fine-tuning after each bottleneck's two layers
    block_finetune_lr: float = 1e-4  # constant, at block_finetune_batch images per step (scaled to ours)
    block_finetune_batch: int = 128
    finetune: dict[str, Any] = field(default_factory=dict)  # changes to the recipe for the final fine-tune

    def __post_init__(self) -> None:
        for name in ("calibration_images", "points_per_image", "block_finetune_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{self.section}.{name}={getattr(self, name)} must be at least 1")
        if self.block_finetune_epochs < 0 or self.block_finetune_lr <= 0:
            raise ValueError(f"{self.section}.block_finetune_epochs={self.block_finetune_epochs} (>= 0) and "
                             f"block_finetune_lr={self.block_finetune_lr} (> 0) out of range")


def bottleneck_steps(arch: ArchConfig) -> list[tuple[int, str]]:
    """(width slot, name of the weight that reads it) for conv1 then conv2 of each bottleneck, in network order
    (ResNet-50 only)."""
    if arch.family != "resnet50":
        raise ValueError(f"bottleneck pruning is defined for resnet50, not {arch.family!r}")
    spec = arch.spec
    out = []
    for blk in spec.blocks:
        if blk.index >= arch.depths[blk.stage]:
            continue
        for role in ("conv1", "conv2"):
            slot = blk.slot(role)
            (reader,) = consumers(arch, slot)
            out.append((slot, reader))
    return out


def with_ratio(arch: ArchConfig, slots: Sequence[int], ratio: float) -> ArchConfig:
    """``arch`` with each of ``slots`` at ``round(ratio x width)`` channels (at least 1)."""
    widths = list(arch.widths)
    for s in slots:
        widths[s] = max(1, int(round(arch.widths[s] * ratio)))
    return arch.replace(widths=tuple(widths))


def cheapest_pruned(family: str, skip: Sequence[int] = ()) -> ArchConfig:
    """The full network with every bottleneck slot but ``skip`` at one channel: the cheapest network a keep
    ratio for the bottlenecks can give (``ratio_for_budget``'s floor)."""
    arch = ArchConfig.canonical(family)
    return with_ratio(arch, [s for s, _ in bottleneck_steps(arch) if s not in skip], 0.0)


def ratio_for_budget(arch: ArchConfig, slots: Sequence[int], cost, limit: float, tol: float = 1e-4
                     ) -> tuple[float, ArchConfig]:
    """The largest keep ratio (one for every slot, as ThiNet-70/50/30 and SFP's rates) whose network costs at
    most ``limit`` by ``cost``, and that network; a clear error when even one channel per slot is too much."""
    lowest = with_ratio(arch, slots, 0.0)
    if cost(lowest) > limit:
        raise ValueError(f"pruning {len(slots)} slots of {arch.family} cannot reach {limit:,.0f}: one channel "
                         f"each still costs {cost(lowest):,.0f}")
    if cost(arch) <= limit:
        return 1.0, arch
    lo, hi = 0.0, 1.0
    while hi - lo > tol:
        mid = (lo + hi) / 2
        if cost(with_ratio(arch, slots, mid)) <= limit:
            lo = mid
        else:
            hi = mid
    return lo, with_ratio(arch, slots, lo)


C = TypeVar("C")


class BottleneckPruning(Method[C]):
    """A method that prunes a trained ResNet's bottleneck slots (but ``skipped``) at one keep ratio (ThiNet,
    CP, SFP, AutoPruner): the cell's published rate (a ``rate`` target), else the largest that meets the
    budget. Its cheapest network has one channel in each of them."""

    target_kinds = ("header", "flops", "speedup", "rate")

    def skipped(self, family: str) -> tuple[int, ...]:
        """The bottleneck slots this method leaves at full width."""
        return ()

    def cheapest(self, family: str, variant: str, config: C) -> ArchConfig:
        return cheapest_pruned(family, self.skipped(family))

    def work(self, family: str, variant: str, config: C, profile, fraction: float) -> list[Work] | None:
        """ThiNet's and CP's layer-by-layer pruning (``LayerwiseConfig``): the reference network, each
        layer's calibration images through the network, and the fine-tuning after each bottleneck; another
        bottleneck method declares its own."""
        if not isinstance(config, LayerwiseConfig):
            return None
        layers = len(bottleneck_steps(ArchConfig.canonical(family)))
        out = [reference_work(profile, family),
               Work(f"{layers} layers x {config.calibration_images} calibration images",
                    layers * config.calibration_images, None, forward_only=True)]
        if config.block_finetune_epochs > 0:
            blocks = layers // 2
            out.append(Work(f"{blocks} bottlenecks x {config.block_finetune_epochs:g} sub-train epochs",
                            blocks * config.block_finetune_epochs, "subtrain"))
        return out


@dataclass
class Samples:
    """A convolution's input patches and outputs at sampled output positions of a batch of images:
    ``patches`` (points, in_channels, kh x kw) and ``output`` (points, out_channels), the bias (if any) left
    out of the output so that it is exactly the sum of the channels' contributions."""

    patches: torch.Tensor
    output: torch.Tensor


def contributions(patches: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """(points, in_channels, out_channels): what each input channel adds to each output at each point; summed
    over the input channels it is the convolution's output there."""
    w = weight.reshape(weight.shape[0], weight.shape[1], -1).to(patches.dtype)
    return torch.einsum("pck,ock->pco", patches, w)


def output_error(samples: Samples, weight: torch.Tensor) -> float:
    """Relative squared error of the sampled outputs computed from the patches with ``weight``."""
    pred = samples.patches.flatten(1) @ weight.reshape(weight.shape[0], -1).to(samples.patches.dtype).T
    return relative_error(samples.output, pred)


def relative_error(target: torch.Tensor, pred: torch.Tensor) -> float:
    """||target - pred||^2 / ||target||^2."""
    return float(((target - pred) ** 2).sum() / (target ** 2).sum().clamp_min(1e-30))


def _positions(n: int, positions: int, points: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randint(0, positions, (n, points), generator=gen)


def collect(pairs: Sequence[tuple[torch.nn.Module, str]], data, resolution: int, images: int, points: int,
            seed: int, batch_source=None) -> list[Samples]:
    """For each (network, name of a convolution's weight): ``Samples`` of that convolution over the same
    sub-train batches (the first ones of the stream, until ``images`` images) and the same ``points`` random
    output positions per image. With two pairs
    (a pruned network and the original), CP pairs the pruned network's inputs with the original's outputs.
    The convolutions must have the same output size (the networks differ in channels only)."""
    gen = torch.Generator().manual_seed(seed)
    found: list[dict[str, list[torch.Tensor]]] = [{"p": [], "y": []} for _ in pairs]
    current: dict[str, torch.Tensor] = {}
    hooks = []

    def hook(i: int):
        def fn(module, inputs, output):
            x, y = inputs[0].detach().float(), output.detach().float()
            if module.bias is not None:
                y = y - module.bias.detach().float()[None, :, None, None]
            cols = F.unfold(x, module.kernel_size, module.dilation, module.padding, module.stride)
            n, ck, positions = cols.shape
            if "idx" not in current:
                current["idx"] = _positions(n, positions, points, gen)
            idx = current["idx"].to(x.device)
            cols = cols.gather(2, idx[:, None, :].expand(n, ck, points))  # (n, c*k*k, points)
            ys = y.flatten(2).gather(2, idx[:, None, :].expand(n, y.shape[1], points))
            k = ck // x.shape[1]
            found[i]["p"].append(cols.permute(0, 2, 1).reshape(n * points, x.shape[1], k).cpu())
            found[i]["y"].append(ys.permute(0, 2, 1).reshape(n * points, y.shape[1]).cpu())
        return fn

    for i, (model, name) in enumerate(pairs):
        module = dict(model.named_modules())[name.rsplit(".", 1)[0]]
        if module.groups != 1:
            raise ValueError(f"{name} is a grouped convolution: channel reconstruction needs a dense one")
        hooks.append(module.register_forward_hook(hook(i)))
        model.eval()
    source = data.train_batches() if batch_source is None else batch_source
    try:
        seen = 0
        with torch.no_grad():
            for batch, _ in source:
                if seen >= images:
                    break
                batch = batch[:images - seen]
                seen += len(batch)
                current.clear()
                x = resize_batch(data.normalize(batch), resolution)
                for model, _ in pairs:
                    model(x)
    finally:
        for h in hooks:
            h.remove()
    return [Samples(torch.cat(f["p"]), torch.cat(f["y"])) for f in found]


def least_squares(x: torch.Tensor, y: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """The weight (out x len(keep)) that best maps the kept input columns of ``x`` (points x inputs) to ``y``
    (points x out), in double precision."""
    x = x if keep is None else x[:, keep]
    sol = torch.linalg.lstsq(x.double(), y.double()).solution  # (kept, out)
    return sol.T.float()


@dataclass
class PruningSearch:
    """What a pruning search of a trained ResNet-50 starts from (ThiNet, CP, SFP, AutoPruner): the shared
    reference network, the slots it prunes and the one keep ratio: the cell's published rate (a ``rate``
    target), else the largest that meets the budget. Its checkpoints
    live in the context's search folder (``state_path``)."""

    title: str  # "thinet resnet50 2G", the head of the search's log line
    ctx: Context
    reference: TrainedNetwork
    arch0: ArchConfig
    slots: list[int]
    ratio: float
    goal: ArchConfig

    @property
    def state_path(self) -> Path:
        return self.ctx.store.folder / "state.pt"

    @classmethod
    def open(cls, ctx: Context, method: str, skip: Sequence[int] = ()) -> PruningSearch:
        arch0 = ArchConfig.canonical(ctx.family)
        slots = [s for s, _ in bottleneck_steps(arch0) if s not in skip]
        if ctx.target.kind == "rate":  # the published rate (ThiNet-70: 0.7), whatever its network costs
            ratio, goal = float(ctx.target.value), with_ratio(arch0, slots, float(ctx.target.value))
        else:  # the largest one rate that meets the budget, before any training
            ratio, goal = ratio_for_budget(arch0, slots, ctx.budget.cost, ctx.budget.limit)
        reference = ctx.reference()
        ctx.store.folder.mkdir(parents=True, exist_ok=True)
        title = f"{method} {ctx.family} {ctx.constraint.label()}"
        if not ctx.target.is_header:
            title += f" at {ctx.target.label()}"
        return cls(title, ctx, reference, arch0, slots, ratio, goal)

    def resume(self, progress: str, **fresh: Any) -> dict[str, Any]:
        """The state an interrupted search saved (logged with ``progress``, formatted with it), or a fresh one:
        the full network's architecture and weights, no time spent, and ``fresh``."""
        st = read_checkpoint(self.state_path, log=self.ctx.log)
        if st is not None:
            set_rng_state(st.pop("rng"))  # what the search draws next (AutoPruner's new gates) as if uninterrupted
            self.ctx.log(f"{self.title}: resumed {progress.format(**st)} ({self.state_path})")
            return st
        weights = {k: v.detach().cpu() for k, v in self.reference.model.state_dict().items()}
        return {"arch": self.arch0.to_dict(), "state": weights, "seconds": 0.0, **fresh}

    def checkpoint(self, st: dict[str, Any]) -> None:
        """Save the search's state ``st`` and the random generators' (``resume`` restores both)."""
        save_checkpoint(self.state_path, **st, rng=rng_state())

    def finish(self, arch: ArchConfig, state: dict, seconds: float, done: str, **extra: Any) -> SearchResult:
        """Drop the checkpoint, log the keep ratio, the cost and ``done`` (what the search did), and return the
        ``SearchResult`` (the pipeline writes it)."""
        budget = self.ctx.budget
        cost = budget.cost(arch)
        info = {"keep_ratio": self.ratio, "cost": cost, "limit": budget.limit, "reference": self.reference.key,
                "seconds": seconds, **extra, "arch": arch.with_imagenet_geometry().to_dict()}
        self.state_path.unlink(missing_ok=True)
        self.ctx.log(f"{self.title}: keep ratio {self.ratio:.3f}, {budget.format(cost)}, {done}")
        return SearchResult(arch.with_imagenet_geometry(), weights=state, info=info, seconds=seconds)


def _block(weight_name: str) -> str:
    return weight_name.split(".conv")[0]  # "blocks.3.conv2.0.weight" -> "blocks.3"


@dataclass(frozen=True)
class LayerChoice:
    """What a layer-wise method decided for one slot: the channels kept (sorted indices of the slot's current
    channels) and the reading layer's new weight at its current (unpruned) shape: its kept input columns
    refit, the others left for ``select_channels`` to drop."""

    keep: torch.Tensor
    reader_weight: torch.Tensor
    error_before: float  # relative reconstruction error of the reader's sampled outputs with the kept channels
    error_after: float  # the same after the method's refit


def prune_layerwise(method: str, ctx: Context, choose: Callable[..., LayerChoice], target: str) -> SearchResult:
    """Prune a trained network's bottleneck slots one after another, in network order, to the widths of the
    search's one keep ratio (``PruningSearch.open``: the published rate, or ``ratio_for_budget``'s); returns a
    ``SearchResult`` with the pruned network's weights (the pipeline fine-tunes them).

    For each slot, ``Samples`` of its reading layer are collected on the first ``cfg.calibration_images``
    sub-train images at ``cfg.points_per_image`` positions per image: inputs from the network pruned so far; outputs
    from the same network (``target="current"``, ThiNet: reconstruct the layer as it is) or from the original
    network (``target="original"``, CP: the accumulated error of the earlier layers is corrected too). Then
    ``choose(samples, reader_weight, keep, generator)`` returns a ``LayerChoice``. After each bottleneck's two
    slots, ``cfg.block_finetune_epochs`` epochs of sub-train at a constant ``cfg.block_finetune_lr`` (ThiNet's
    fine-tune per block; 0 for none, as CP). The search state is checkpointed after every bottleneck, so an
    interrupted search resumes at the next one."""
    search = PruningSearch.open(ctx, method)
    family, constraint, cfg = ctx.family, ctx.constraint, ctx.config
    reference, arch0, goal = search.reference.model, search.arch0, search.goal
    steps = bottleneck_steps(arch0)
    num_classes = ctx.data.num_classes
    st = search.resume(f"after {{done}} of {len(steps)} layers", done=0, layers=[])
    data = SubsetData.for_search(ctx)
    recipe = ctx.recipe
    original = data.prepare(reference).eval() if target == "original" else None
    resolution = data.resolution(arch0.resolution)
    start = time.perf_counter()
    from tqdm import tqdm

    bar = tqdm(total=len(steps), initial=st["done"], desc=f"{method} {family} {constraint.label()}", unit="layer",
               disable=True if ctx.quiet else None)
    try:
        for i in range(st["done"], len(steps)):
            slot, reader = steps[i]
            arch = ArchConfig.from_dict(st["arch"])
            keep = goal.widths[slot]
            if keep < arch.widths[slot]:
                model = build_model(arch.replace(num_classes=num_classes), init=False)
                model.load_state_dict(st["state"])
                model = data.prepare(model)
                pairs = [(model, reader)] if target == "current" else [(model, reader), (original, reader)]
                found = collect(pairs, data, resolution, cfg.calibration_images, cfg.points_per_image,
                                ctx.seed * 1000 + i)
                samples = found[0] if target == "current" else Samples(found[0].patches, found[1].output)
                # another stream than the positions': ThiNet draws an output channel per sampled position
                gen = torch.Generator().manual_seed(1_000_003 * (ctx.seed + 1) + i)
                choice = choose(samples, st["state"][reader], keep, gen)
                state = dict(st["state"])
                state[reader] = choice.reader_weight.to(state[reader].dtype)
                arch, state = select_channels(state, arch, {slot: choice.keep})
                st["layers"].append({"slot": slot, "reader": reader, "kept": keep, "of": int(arch0.widths[slot]),
                                     "error_before": choice.error_before, "error_after": choice.error_after})
                st.update(arch=arch.to_dict(), state=state)
            block_ends = i + 1 == len(steps) or _block(steps[i + 1][1]) != _block(reader)
            tune = round(cfg.block_finetune_epochs * len(data.train_loader))
            if block_ends and tune > 0 and ArchConfig.from_dict(st["arch"]) != arch0:
                model = build_model(ArchConfig.from_dict(st["arch"]).replace(num_classes=num_classes), init=False)
                model.load_state_dict(st["state"])
                model = data.prepare(model)
                lr = cfg.block_finetune_lr * recipe.batch_size / cfg.block_finetune_batch
                loss = finetune(model, data, data.train_batches(i * tune), tune, recipe, arch0.resolution, lr)
                st["state"] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
                st["layers"][-1]["block_finetune_loss"] = loss
            st["done"] = i + 1
            st["seconds"] += time.perf_counter() - start
            start = time.perf_counter()
            if block_ends:  # a checkpoint per bottleneck (the state is the whole network)
                search.checkpoint(st)
            bar.update(1)
    finally:
        bar.close()
    arch = ArchConfig.from_dict(st["arch"])
    done = f"{len(st['layers'])} layers pruned in {st['seconds']:.0f} s"
    return search.finish(arch, st["state"], st["seconds"], done, layers=st["layers"])


__all__ = ["BottleneckPruning", "LayerChoice", "LayerwiseConfig", "Samples", "bottleneck_steps", "cheapest_pruned",
           "collect", "contributions", "least_squares", "output_error", "PruningSearch", "prune_layerwise",
           "ratio_for_budget", "relative_error", "with_ratio"]
