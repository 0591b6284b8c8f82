"""A control the paper lacks: the best of k random architectures of the proposed method's space at equal FLOPs.

Does the search beat sampling? (Li & Talwalkar, 2019; Yu et al., "Evaluating the search phase of neural
architecture search", 2020.) Each candidate is a vector drawn uniformly between the space's bounds
(``repro.space.SearchSpace``: the proposed method's own space and variant) and projected onto the budget the way
the proposed search projects its vectors (``repro.space.project`` with its ``fill``), so every candidate spends
the budget (FLOPs or latency, not compute) as the search's result does. Each is trained from scratch with the
cell's retraining recipe on sub-train and scored by top-1 on sub-eval, the split the proposed search scores on;
the best is returned and the pipeline retrains it on the full training split like any searched network. The
candidates' draws, costs, training seconds and sub-eval top-1 are in the record (``info``), and each
candidate's training resumes after a crash.

Cost: ``candidates`` trainings on sub-train before the retraining, so a cell costs about ``candidates + 1``
retrainings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from repro.config import to_mapping
from repro.method import Context, Method, SearchResult, Work
from repro.registry import register, registered
from repro.space import VARIANTS, SearchSpace, SpaceConfig, project


@dataclass(frozen=True)
class RandomSearchConfig:
    candidates: int = 5  # k: architectures drawn, trained and scored; the best is the cell's network

    def __post_init__(self) -> None:
        if self.candidates < 1:
            raise ValueError(f"candidates={self.candidates} must be at least 1 (the k of best-of-k)")


@register
class RandomSearch(Method[RandomSearchConfig]):
    """The best of ``candidates`` random architectures of the proposed space, each meeting the budget."""

    name = "random"
    variants = VARIANTS
    retrain = "scratch"
    config_type = RandomSearchConfig
    constraint_kinds = ("flops", "gpu_latency", "cpu_latency")

    def settings(self, methods: dict[str, Any], family: str | None = None) -> Any:
        """Its own settings and the proposed method's space and fill, which it draws from: a change to those
        is another cell."""
        space, fill = _proposed(methods, family)
        return {**super().settings(methods, family), "proposed_space": to_mapping(space), "proposed_fill": fill}

    def cheapest_for(self, family: str, variant: str, methods: dict[str, Any]):
        """The proposed method's cheapest network (its space's lower corner), which every draw is projected
        above."""
        return registered("proposed")().cheapest_for(family, variant, methods)

    def work(self, family: str, variant: str, config: RandomSearchConfig, profile, fraction: float) -> list[Work]:
        epochs = profile.train_for(family).epochs
        return [Work(f"{config.candidates} candidates x {epochs:g} sub-train epochs", config.candidates * epochs,
                     "subtrain", "found"),
                Work(f"{config.candidates} candidates scored on sub-eval", config.candidates, "subeval", "found",
                     forward_only=True)]

    def search(self, ctx: Context[RandomSearchConfig]) -> SearchResult:
        space_config, fill = _proposed(ctx.profile.methods, ctx.family)
        space = SearchSpace(ctx.family, ctx.variant, space_config, num_classes=ctx.data.num_classes)
        archs, vectors = draw(space, ctx.budget, ctx.config.candidates, ctx.seed, fill)
        scored, seconds = [], 0.0
        for i, arch in enumerate(archs):
            top1, trained = _train_and_score(ctx, arch, i)
            seconds += trained  # a candidate finished before a crash counts its training, not its re-reading
            cost = ctx.budget.cost(arch)
            scored.append({"index": i, "arch": arch.with_imagenet_geometry().to_dict(), "cost": cost,
                           "sub_eval_top1": top1, "train_seconds": trained,
                           "vector": [float(x) for x in vectors[i]]})
            ctx.log(f"random candidate {i + 1}/{len(archs)}: {ctx.budget.format(cost)}, sub-eval top-1 "
                    f"{100 * top1:.1f}%")
        best = max(scored, key=lambda c: (c["sub_eval_top1"], -c["index"]))  # ties: the earlier draw
        return SearchResult(archs[best["index"]].with_imagenet_geometry(),
                            info={"candidates": scored, "best": best["index"], "limit": ctx.budget.limit,
                                  "unit": ctx.budget.unit, "fill": fill, "seconds": seconds},
                            seconds=seconds)


def _proposed(methods: dict[str, Any], family: str | None) -> tuple[SpaceConfig, float]:
    """The proposed method's space settings and projection fill in this profile, from the registry (a method
    does not import another's module)."""
    proposed = registered("proposed")().config(methods, family)
    return proposed.space, proposed.joint.fill


def draw(space: SearchSpace, budget, k: int, seed: int, fill: float) -> tuple[list, list[np.ndarray]]:
    """``k`` vectors uniform between the space's bounds (the seed's generator, so the i-th draw is the same
    whatever k), each projected onto the budget; their architectures and vectors."""
    rng = np.random.default_rng([seed, 0x5EED])
    vectors = [project(space, budget, rng.uniform(space.lower, space.upper), fill) for _ in range(k)]
    return [space.decode(v) for v in vectors], vectors


def _train_and_score(ctx: Context[RandomSearchConfig], arch, index: int) -> tuple[float, float]:
    """Top-1 on sub-eval of ``arch`` trained from scratch on sub-train with the cell's recipe (resumable:
    its checkpoint is in the search's folder), and its training's seconds, the interrupted part included."""
    from repro.train.trainer import TrainData, fit, initial_model

    data = ctx.data
    beton = data.folder / "train.beton"
    train = TrainData(beton, beton, data.num_classes, data.base_resolution, train_indices=np.asarray(data.sub_train),
                      val_indices=np.asarray(data.sub_eval), workers=ctx.profile.data.workers,
                      decode=ctx.profile.data.decode)
    model = initial_model(arch.replace(num_classes=data.num_classes), ctx.seed)
    outcome = fit(model, train, ctx.recipe, ctx.seed, arch.resolution, ctx.store.folder / f"candidate{index}",
                  ctx.device, lambda _s: None)
    return float(outcome["top1"]), float(outcome["train_seconds"])


__all__ = ["RandomSearch", "RandomSearchConfig", "draw"]
