"""AMC (He et al., "AMC: AutoML for Model Compression and Acceleration on Mobile Devices", ECCV 2018; public
code mit-han-lab/amc) as a ``Method``: ``amc``, variant *Channel*, for MobileNet V1 and V2.

The environment (their ``env/channel_pruning_env.py``), starting from the trained full network
(``ctx.reference``): an episode walks the prunable layers in order; at layer ``t`` the agent
(``baselines.amc_ddpg``) sees the layer's embedding (index, type, input and output channels, stride, kernel,
MACs, MACs already removed, MACs of the layers after it, previous action; each feature min-max normalized
over the layers) and answers a preserve ratio for the channels that layer ``t`` *reads*:

* MobileNet V1: the input channels of each pointwise convolution and of the classifier, i.e. the output
  channels of the stem and of every pointwise convolution (the depthwise convolution between follows them);
* MobileNet V2: the expanded channels of each inverted-residual block (read by its projection) and the last
  1x1 convolution's outputs (read by the classifier); the block outputs tied by residual additions stay.

The ratio is limited so that the layers after it can still meet the budget at ``lbound`` (their
``_action_wall``), kept at least ``lbound`` and rounded to a multiple of ``channel_round`` channels. The
channels kept are those with the largest summed absolute weight in the reading layer; that layer's weights
are then refit by least squares on features of the *original* network (its inputs and outputs at
``points_per_image`` random positions of ``calibration_batches`` sub-train batches). At the episode's end the
pruned network, not fine-tuned, is scored on *sub-eval*: the reward is its top-1 (their ``acc_reward``). The
best episode's network is then fine-tuned by the pipeline (``retrain = "finetune"``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from repro.arch import ArchConfig
from repro.config import from_mapping
from repro.method import Context, Method, SearchResult, Work, reference_work
from repro.registry import register
from repro.train.reconstruct import least_squares
from repro.train.subsets import SubsetData

AGENT = "amc_agent.pt"


@dataclass(frozen=True)
class AMCConfig:
    lbound: float = 0.2  # their --lbound: the smallest preserve ratio
    rbound: float = 1.0  # their --rbound
    channel_round: int = 8  # their --channel_round: kept channels are a multiple of this
    calibration_batches: int = 60  # their --n_calibration_batches (of --data_bsize 50 images)
    points_per_image: int = 10  # their --n_points_per_layer
    eval_batches: int | None = None  # sub-eval batches per reward (None: all of sub-eval)
    warmup_episodes: int = 100  # their --warmup
    train_episodes: int = 700  # their --train_episode 800 counts the warm-up too
    ddpg: dict[str, Any] = field(default_factory=dict)  # other DDPGConfig fields (hidden sizes, noise, ...)
    finetune: dict[str, Any] = field(default_factory=dict)  # changes to the recipe for the final fine-tune

    def __post_init__(self) -> None:
        if not 0 < self.lbound <= self.rbound <= 1:
            raise ValueError(f"methods.amc.lbound={self.lbound} and rbound={self.rbound} must satisfy "
                             f"0 < lbound <= rbound <= 1")
        for name in ("channel_round", "calibration_batches", "points_per_image"):
            if getattr(self, name) < 1:
                raise ValueError(f"methods.amc.{name}={getattr(self, name)} must be at least 1")
        if self.warmup_episodes < 0 or self.train_episodes < 0 or self.warmup_episodes + self.train_episodes < 1:
            raise ValueError("methods.amc.warmup_episodes and train_episodes must be non-negative, at least one "
                             "episode in all")

    def agent_config(self, seed: int):
        from baselines.amc_ddpg import DDPGConfig

        return from_mapping(DDPGConfig, {**self.ddpg, "warmup_episodes": self.warmup_episodes,
                                         "train_episodes": self.train_episodes, "seed": seed}, "methods.amc.ddpg")



def prunable(arch: ArchConfig) -> list[tuple[int, str]]:
    """(width slot, name of the weight that reads it) for each step of an episode, in network order."""
    from repro.models.prune import consumers

    spec = arch.spec
    if arch.family == "mobilenet_v1":
        slots = list(range(spec.num_widths))
    elif arch.family == "mobilenet_v2":
        slots = [i for i, s in enumerate(spec.slots) if s.role in ("expand", "last")]
    else:
        raise ValueError(f"AMC is set up here for mobilenet_v1 and mobilenet_v2, not {arch.family!r}")
    out = []
    for s in slots:
        (reader,) = consumers(arch, s)
        out.append((s, reader))
    return out


def round_channels(channels: float, r: int) -> int:
    """``channels`` rounded up to a multiple of ``r`` (at least ``r``): their ``channel_round``."""
    return max(r, int(np.ceil(channels / r - 1e-9)) * r)


def at_lower_bound(arch: ArchConfig, cfg: AMCConfig) -> ArchConfig:
    """``arch`` with every prunable layer at the agent's smallest action (``lbound`` of its channels, rounded):
    the cheapest network an episode can end in."""
    widths = list(arch.widths)
    for slot, _ in prunable(arch):
        widths[slot] = min(arch.widths[slot], round_channels(cfg.lbound * arch.widths[slot], cfg.channel_round))
    return arch.replace(widths=tuple(widths))


class Features:
    """Inputs and outputs of each reading layer of the original network at sampled positions."""

    def __init__(self, model: torch.nn.Module, readers: list[str], data, resolution: int, batches: int,
                 points: int, seed: int):
        from repro.data import resize_batch

        modules = dict(model.named_modules())
        xs: dict[str, list[torch.Tensor]] = {r: [] for r in readers}
        ys: dict[str, list[torch.Tensor]] = {r: [] for r in readers}
        gen = torch.Generator().manual_seed(seed)
        hooks = []

        def hook(name):
            def fn(module, inputs, output):
                x, y = inputs[0].detach().float(), output.detach().float()
                if x.ndim == 4:  # 1x1 convolution: positions of each image, the same for input and output
                    n, c, h, w = x.shape
                    idx = torch.randint(0, h * w, (n, points), generator=gen)
                    x = x.flatten(2).gather(2, idx[:, None, :].expand(n, c, points).to(x.device))
                    y = y.flatten(2).gather(2, idx[:, None, :].expand(n, y.shape[1], points).to(y.device))
                    x, y = x.permute(0, 2, 1).reshape(-1, c), y.permute(0, 2, 1).reshape(-1, y.shape[1])
                elif getattr(module, "bias", None) is not None:
                    y = y - module.bias.detach().float()  # refit the weight only
                xs[name].append(x.cpu())
                ys[name].append(y.cpu())
            return fn

        for r in readers:
            hooks.append(modules[r.rsplit(".", 1)[0]].register_forward_hook(hook(r)))
        model.eval()
        try:
            with torch.no_grad():
                for i, (images, _) in enumerate(data.train_batches()):
                    if i >= batches:
                        break
                    model(resize_batch(data.normalize(images), resolution))
        finally:
            for h in hooks:
                h.remove()
        self.X = {r: torch.cat(v) for r, v in xs.items()}
        self.Y = {r: torch.cat(v) for r, v in ys.items()}


class ChannelPruningEnv:
    """AMC's environment over a trained network (``baselines.amc_ddpg.Env``)."""

    def __init__(self, arch: ArchConfig, state: dict[str, torch.Tensor], features: Features, budget, cfg: AMCConfig,
                 score):
        from baselines.amc_ddpg import normalize_embeddings

        self.arch, self.state, self.features, self.budget = arch, state, features, budget
        self.cfg, self.score = cfg, score
        self.steps = prunable(arch)
        self.channels = [arch.widths[s] for s, _ in self.steps]
        self.layer_macs = [self._layer_macs(t) for t in range(len(self.steps))]
        rows = []
        for t, (_slot, reader) in enumerate(self.steps):
            w = state[reader]
            kernel = w.shape[-1] if w.ndim == 4 else 1
            rows.append([t, float(w.ndim == 2), w.shape[1], w.shape[0], 1, kernel, self.layer_macs[t], 0, 0, 1])
        # the static features min-max normalized once; the last three are set per step, as fractions of the
        # full network's cost (their channel_pruning_env: reduced / org_flops, rest / org_flops, last action)
        self.embedding = normalize_embeddings(np.array(rows, dtype=np.float64))
        self.full_cost = float(budget.cost(arch))
        lowest = at_lower_bound(arch, cfg)
        if self.budget.cost(lowest) > self.budget.limit:
            raise ValueError(f"AMC cannot meet {budget.format(budget.limit)}: every prunable layer at lbound="
                             f"{cfg.lbound} still costs {budget.format(budget.cost(lowest))}")

    def _layer_macs(self, t: int) -> float:
        """The MACs that depend on step ``t``'s channels (twice what halving them removes: linear in them)."""
        from repro.cost.flops import count_macs

        slot = self.steps[t][0]
        widths = list(self.arch.widths)
        widths[slot] = max(1, widths[slot] // 2)
        return float(count_macs(self.arch) - count_macs(self.arch.replace(widths=tuple(widths)))) * 2

    def _round(self, channels: float) -> int:
        return round_channels(channels, self.cfg.channel_round)

    def _widths_at(self, t: int, chosen: list[int]) -> ArchConfig:
        widths = list(self.arch.widths)
        for (slot, _), c in zip(self.steps, chosen, strict=False):
            widths[slot] = min(c, self.arch.widths[slot])
        return self.arch.replace(widths=tuple(widths))

    def reset(self) -> np.ndarray:
        self.t, self.chosen, self.prev = 0, [], 1.0
        return self._observe()

    def _observe(self) -> np.ndarray:
        row = self.embedding[min(self.t, len(self.steps) - 1)].copy()
        now = self.budget.cost(self._widths_at(self.t, self.chosen + self.channels[len(self.chosen):]))
        row[7] = (self.full_cost - now) / self.full_cost  # removed so far
        # the MACs of the layers still to decide (their ``rest``), as a fraction of the full network's
        row[8] = min(1.0, float(sum(self.layer_macs[self.t + 1:])) / float(sum(self.layer_macs)))
        row[9] = self.prev
        return row.astype(np.float32)

    def wall(self, t: int, action: float) -> int:
        """The channels for step ``t``: the action's, at most what lets the later layers meet the budget at
        ``lbound``, at least ``lbound``'s (their ``_action_wall``), a multiple of ``channel_round``."""
        c = self.channels[t]
        later = [self._round(self.cfg.lbound * x) for x in self.channels[t + 1:]]
        low = self._round(self.cfg.lbound * c)
        want = min(c, max(low, self._round(float(np.clip(action, self.cfg.lbound, self.cfg.rbound)) * c)))
        options = sorted({min(c, k) for k in range(low, c + self.cfg.channel_round, self.cfg.channel_round)})
        fitting = [k for k in options if k <= want and
                   self.budget.cost(self._widths_at(0, self.chosen + [k] + later)) <= self.budget.limit]
        return max(fitting) if fitting else low

    def step(self, action: float):
        c = self.wall(self.t, action)
        self.chosen.append(c)
        self.prev = c / self.channels[self.t]
        self.t += 1
        if self.t < len(self.steps):
            return self._observe(), 0.0, False, {}
        arch, state = self.build(self.chosen)
        top1 = self.score(arch, state)
        info = {"widths": list(self.chosen), "arch": arch.to_dict(), "top1": top1, "cost": self.budget.cost(arch)}
        return self._observe(), float(top1), True, info

    def build(self, chosen: list[int]) -> tuple[ArchConfig, dict[str, torch.Tensor]]:
        """The pruned network of these channel counts: largest-magnitude channels, readers refit."""
        from repro.models.prune import select_channels

        state = dict(self.state)
        keep = {}
        for (slot, reader), c in zip(self.steps, chosen, strict=True):
            w = state[reader]
            importance = w.abs().sum(dim=[d for d in range(w.ndim) if d != 1])
            idx = importance.argsort(descending=True)[:c].sort().values
            keep[slot] = idx
            if c < w.shape[1]:
                refit = least_squares(self.features.X[reader], self.features.Y[reader], idx)
                full = torch.zeros_like(w.reshape(w.shape[0], -1))
                full[:, idx] = refit.to(w.dtype)
                state[reader] = full.reshape(w.shape)
        return select_channels(state, self.arch, keep)


@register
class AMC(Method[AMCConfig]):
    name = "amc"
    variants = ("channel",)
    retrain = "finetune"
    config_type = AMCConfig
    families = ("mobilenet_v1", "mobilenet_v2")  # ResNet-50: the ResNet baselines issue

    def cheapest(self, family: str, variant: str, config: AMCConfig) -> ArchConfig:
        return at_lower_bound(ArchConfig.canonical(family), config)

    def work(self, family: str, variant: str, config: AMCConfig, profile, fraction: float) -> list[Work]:
        """The reference network, the features of ``calibration_batches`` of 50 images, and one sub-eval pass
        per episode (its reward; the least squares of each layer run on the features, not counted)."""
        episodes = config.warmup_episodes + config.train_episodes
        eval_images = (config.eval_batches * profile.train.eval_batch_size if config.eval_batches else None)
        return [reference_work(profile, family),
                Work(f"features of {config.calibration_batches} x 50 images", config.calibration_batches * 50,
                     None, forward_only=True),
                Work(f"{episodes} episodes scored on sub-eval", episodes * (eval_images or 1),
                     None if eval_images else "subeval", "found", forward_only=True)]

    def search(self, ctx: Context[AMCConfig]) -> SearchResult:
        from tqdm import tqdm

        from baselines.amc_ddpg import DDPGAgent, run_search
        from repro.models import build_model
        from repro.train.trainer import read_checkpoint, save_checkpoint

        family, constraint, cfg, budget = ctx.family, ctx.constraint, ctx.config, ctx.budget
        agent_cfg = cfg.agent_config(ctx.seed)
        reference = ctx.reference()
        data = SubsetData.for_search(ctx)
        model = data.prepare(reference.model)
        arch = ArchConfig.canonical(family)
        resolution = data.resolution(arch.resolution)
        steps = prunable(arch)
        features = Features(model, [r for _, r in steps], data, resolution, cfg.calibration_batches,
                            cfg.points_per_image, ctx.seed)
        state = {k: v.detach().cpu() for k, v in reference.model.state_dict().items()}
        num_classes = ctx.data.num_classes

        def score(pruned: ArchConfig, pruned_state: dict) -> float:
            net = build_model(pruned.replace(num_classes=num_classes))
            net.load_state_dict(pruned_state)
            return data.evaluate(data.prepare(net), pruned.resolution, cfg.eval_batches)["top1"]

        env = ChannelPruningEnv(arch, state, features, budget, cfg, score)
        agent = DDPGAgent(env.embedding.shape[1], len(steps), agent_cfg)
        ckpt, earlier, rewards = ctx.store.folder / AGENT, 0.0, []
        saved = read_checkpoint(ckpt, log=ctx.log)
        if saved is not None:
            agent.load_state_dict(saved["agent"])
            earlier, rewards = saved["seconds"], saved["rewards"]
            ctx.log(f"amc: resumed at episode {agent.episode} ({ckpt})")
        start = time.perf_counter()
        total = agent_cfg.warmup_episodes + agent_cfg.train_episodes
        bar = tqdm(total=total, initial=agent.episode, desc=f"amc {family} {constraint.label()}", unit="episode",
                   disable=True if ctx.quiet else None)
        def on_episode(episode: int, reward: float, info: dict) -> None:
            rewards.append(reward)
            save_checkpoint(ctx.store.path(AGENT), agent=agent.state_dict(), rewards=rewards,
                            seconds=earlier + time.perf_counter() - start)

        try:
            best = run_search(env, agent, agent_cfg, progress=lambda _e: bar.update(1), on_episode=on_episode)
        finally:
            bar.close()
        seconds = earlier + time.perf_counter() - start
        best_arch, best_state = env.build(best.info["widths"])
        info = {"episodes": total, "best_episode": best.episode, "best_top1_unfinetuned": best.reward,
                "widths": best.info["widths"], "arch": best_arch.with_imagenet_geometry().to_dict(),
                "cost": budget.cost(best_arch), "limit": budget.limit, "reference": reference.key,
                "seconds": seconds, "rewards": rewards}
        ckpt.unlink(missing_ok=True)
        ctx.log(f"amc {family} {constraint.label()}: best episode {best.episode}, sub-eval top-1 {best.reward:.3f} "
                f"before fine-tuning, {budget.format(info['cost'])}")
        return SearchResult(best_arch.with_imagenet_geometry(), weights=best_state, info=info, seconds=seconds)


__all__ = ["AMC", "AMCConfig", "ChannelPruningEnv", "Features", "least_squares", "prunable"]
