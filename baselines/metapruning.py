"""MetaPruning (Liu et al., ICCV 2019; public code liuzechun/MetaPruning) as a ``Method``: ``metapruning``,
variant *Channel*.

1. **PruningNet** (``baselines.metapruning_net``): the widest network of MetaPruning's encoding with weights
   generated from the encoding; trained on *sub-train* with a random encoding per batch (each gene uniform
   over the 31 scales), SGD with the recipe's momentum, weight decay and label smoothing, the learning rate
   decaying linearly to 0 (their ``train.py``: 64 epochs, batch 512, lr 0.25). It does not depend on the
   constraint: one PruningNet per family, profile, data and seed is trained by whichever cell needs it first
   and kept as an artifact with a record of its own (kind ``pruningnet``); an interrupted training resumes
   from its checkpoint.
2. **Evolutionary search** (``evolve``, their ``search.py``): a population of 50 encodings, 20 iterations;
   each iteration scores the new candidates, keeps the best 50 seen, takes the top 10 as parents, and makes
   25 mutations (each gene replaced with probability 0.1 by a random other scale), 25 crossovers (each gene
   from one of two distinct parents) and random encodings for the rest; candidates over the FLOPs budget
   and repeats are rejected. A candidate's score is its top-1 error on *sub-eval* after its BatchNorm
   statistics are re-estimated on sub-train batches (their ``infer``: 100 batches). A snapshot after every
   iteration makes the search resumable.
3. The best encoding's network is trained from scratch by the pipeline (``retrain = "scratch"``), as they do.

One departure, for tight budgets: MetaPruning draws random encodings uniformly and loops until one fits; under
45M MACs none of 2,000 uniform MobileNet V1 or V2 encodings fits, so the loop would not end. Random encodings
here are drawn uniformly from the scales up to a cap: the largest cap at which at least ``min_fit_rate`` of
draws fit (the full range whenever that holds, as at 330M). Mutations and crossovers are unchanged.

**The FLOPs window** (``flops_window``; their ResNet-50 ``search.py`` keeps only candidates within 1950M-2050M
for its 2G model, 2.5% either side): a candidate fits when its MACs are within the budget and at least
``(1 - flops_window)`` of it. Their window also reaches 2.5% over the target; ours stops at it, as every
method's network here meets its budget. When no cap from the top gives draws that reach the window (a 3G
window is above what uniform draws over all scales cost), the random draws' lowest scale is raised instead
(their ResNet-50 search draws its random candidates from scales 0.46-0.79 only).

Settings: the profile's ``methods.metapruning`` (``MetaPruningConfig``); the smoke profile scales the numbers
down (population, iterations, epochs, recalibration batches, the generators' hidden width), never the code.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from repro.arch import ArchConfig
from repro.method import Context, Method, SearchResult, Work
from repro.registry import register


@dataclass(frozen=True)
class EvolutionConfig:
    """Their ``search.py``: population 50, 20 iterations, 25 mutations (p = 0.1), 25 crossovers, top 10
    parents, best 50 kept."""

    population: int = 50
    iterations: int = 20
    mutations: int = 25
    mutation_prob: float = 0.1
    crossovers: int = 25
    parents: int = 10
    keep: int = 50
    min_fit_rate: float = 0.01  # random draws: the scale cap's acceptance rate (see the module docstring)

    def __post_init__(self) -> None:
        for name in ("population", "iterations", "parents", "keep"):
            if getattr(self, name) < 1:
                raise ValueError(f"evolution.{name}={getattr(self, name)} must be at least 1")
        if self.mutations < 0 or self.crossovers < 0 or self.mutations + self.crossovers > self.population:
            raise ValueError(f"evolution.mutations={self.mutations} and crossovers={self.crossovers} must be "
                             f"non-negative and sum to at most population={self.population}")
        if not 0 <= self.mutation_prob <= 1:
            raise ValueError(f"evolution.mutation_prob={self.mutation_prob} must be within 0..1")
        if self.parents < 2 and self.crossovers:
            raise ValueError(f"evolution.parents={self.parents}: crossovers need at least 2 parents")
        if not 0 < self.min_fit_rate <= 1:
            raise ValueError(f"evolution.min_fit_rate={self.min_fit_rate} must be within (0, 1]")


@dataclass(frozen=True)
class MetaPruningConfig:
    pruningnet_epochs: int = 64  # their mobilenetv1/training/train.py default
    pruningnet_lr: float = 0.25  # at pruningnet_batch images per step (their batch 512); scaled with the batch
    pruningnet_batch: int = 512
    # hidden units of each weight generator (theirs: 32; 64 in V2's bottlenecks); the generators hold
    # hidden x (the widest weights) parameters, so this sets the PruningNet's memory
    hidden: int = 32
    recalibration_batches: int = 100  # sub-train batches that re-estimate a candidate's BatchNorm statistics
    eval_batches: int | None = None  # sub-eval batches per score (None: all of sub-eval)
    checkpoint_every: int = 500  # PruningNet steps between checkpoints
    # how the PruningNet's learning rate decays: linearly to 0 (their MobileNet train.py) or by
    # pruningnet_step_gamma at the fractions pruningnet_step_milestones of the run (their ResNet train.py)
    pruningnet_schedule: Literal["linear", "step"] = "linear"
    pruningnet_step_milestones: tuple[float, ...] = (0.25, 0.5, 0.75)
    pruningnet_step_gamma: float = 0.1
    # candidates must cost at least (1 - flops_window) of the budget (None: no lower bound; their ResNet
    # search.py: 1950M-2050M at 2G, 0.025)
    flops_window: float | None = None
    evolution: EvolutionConfig = field(default_factory=EvolutionConfig)

    def __post_init__(self) -> None:
        for name in ("pruningnet_epochs", "pruningnet_batch", "hidden", "recalibration_batches", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"methods.metapruning.{name}={getattr(self, name)} must be at least 1")
        if self.flops_window is not None and not 0 < self.flops_window < 1:
            raise ValueError(f"methods.metapruning.flops_window={self.flops_window} must be within (0, 1) or null")
        if not all(0 < m < 1 for m in self.pruningnet_step_milestones):
            raise ValueError(f"methods.metapruning.pruningnet_step_milestones={self.pruningnet_step_milestones} "
                             f"must be fractions of the run within (0, 1)")
        if self.pruningnet_lr <= 0:
            raise ValueError(f"methods.metapruning.pruningnet_lr={self.pruningnet_lr} must be positive")
        if self.eval_batches is not None and self.eval_batches < 1:
            raise ValueError(f"methods.metapruning.eval_batches={self.eval_batches} must be at least 1 or null")



# --- evolution --------------------------------------------------------------------------------------

Genome = tuple[int, ...]


@dataclass
class EvolutionState:
    """Everything a resumed search needs (their ``searching_snapshot.pkl`` plus the tested scores)."""

    iteration: int = 0
    candidates: list[Genome] = field(default_factory=list)  # to be scored in this iteration
    scores: dict[Genome, float] = field(default_factory=dict)  # every candidate scored so far (error)
    top: list[Genome] = field(default_factory=list)  # best ``keep`` so far, best first
    cap: int | None = None  # random draws' highest scale
    floor: int = 0  # random draws' lowest scale

    def to_dict(self) -> dict[str, Any]:
        return {"iteration": self.iteration, "candidates": [list(c) for c in self.candidates],
                "scores": [[list(g), s] for g, s in self.scores.items()], "top": [list(c) for c in self.top],
                "cap": self.cap, "floor": self.floor}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvolutionState:
        return cls(d["iteration"], [tuple(c) for c in d["candidates"]], {tuple(g): s for g, s in d["scores"]},
                   [tuple(c) for c in d["top"]], d["cap"], d.get("floor", 0))


def scale_range(size: int, choices: int, fits: Callable[[Genome], bool], rng: np.random.Generator,
                min_rate: float, draws: int = 200) -> tuple[int, int]:
    """(floor, cap), indices into the choices, of the random draws: the largest cap at which uniform draws in
    0..cap fit at ``min_rate``; if none does (a FLOPs window above what such draws cost), the lowest floor at
    which draws in floor..top do."""
    top = choices - 1
    for floor, cap in [(0, c) for c in range(top, -1, -1)] + [(f, top) for f in range(1, top + 1)]:
        hits = sum(fits(tuple(int(v) for v in rng.integers(floor, cap + 1, size))) for _ in range(draws))
        if hits >= min_rate * draws:
            return floor, cap
    raise ValueError("no encoding fits the budget (and its FLOPs window) at any range of scales: the constraint is "
                     "infeasible for this encoding")


def scale_cap(size: int, choices: int, fits: Callable[[Genome], bool], rng: np.random.Generator,
              min_rate: float, draws: int = 200) -> int:
    """The largest cap (an index into the choices) at which uniform draws in 0..cap fit at ``min_rate``."""
    floor, cap = scale_range(size, choices, fits, rng, min_rate, draws)
    if floor:
        raise ValueError("no encoding fits the budget even at the smallest scale: the constraint is infeasible for "
                         "this encoding")
    return cap


def _random(n: int, size: int, cap: int, fits, seen: set, rng: np.random.Generator, limit: int = 100_000,
            floor: int = 0):
    out, tries = [], 0
    while len(out) < n:
        tries += 1
        if tries > limit:
            raise RuntimeError(f"found only {len(out)} of {n} new random encodings under the budget in {limit} draws")
        g = tuple(int(v) for v in rng.integers(floor, cap + 1, size))
        if g not in seen and fits(g):
            seen.add(g)
            out.append(g)
    return out


def _mutations(parents: Sequence[Genome], n: int, prob: float, choices: int, fits, seen: set,
               rng: np.random.Generator, rounds: int = 10) -> list[Genome]:
    out: list[Genome] = []
    for _ in range(rounds):  # their max_iters = 10 rounds of n tries
        for _ in range(n):
            seed = np.array(parents[rng.integers(len(parents))])
            change = rng.random(len(seed)) < prob
            # a changed gene moves by 1..choices-1 (mod choices): always to another scale
            g = tuple(int(v) for v in (seed + change * rng.integers(1, choices, len(seed))) % choices)
            if g not in seen and fits(g):
                seen.add(g)
                out.append(g)
                if len(out) == n:
                    return out
    return out


def _crossovers(parents: Sequence[Genome], n: int, fits, seen: set, rng: np.random.Generator) -> list[Genome]:
    out: list[Genome] = []
    for _ in range(10 * n):  # their max_iters = 10 x crossover_num
        if len(out) == n:
            break
        i, j = rng.choice(len(parents), 2, replace=False)
        mask = rng.integers(0, 2, len(parents[i])).astype(bool)
        g = tuple(int(a if m else b) for a, b, m in zip(parents[i], parents[j], mask, strict=True))
        if g not in seen and fits(g):
            seen.add(g)
            out.append(g)
    return out


def evolve(size: int, choices: int, fits: Callable[[Genome], bool], score: Callable[[Genome], float],
           cfg: EvolutionConfig, seed: int, state: EvolutionState | None = None,
           checkpoint: Callable[[EvolutionState], None] | None = None,
           progress: Callable[[int], None] | None = None) -> EvolutionState:
    """MetaPruning's evolution over genomes of ``size`` genes in ``0..choices-1``: ``score`` (lower is better)
    only ever sees genomes that ``fits``; returns the final state (``top[0]`` the best)."""
    rng = np.random.default_rng([seed, 0 if state is None else state.iteration])
    if state is None:
        state = EvolutionState()
        state.floor, state.cap = scale_range(size, choices, fits, rng, cfg.min_fit_rate)
        state.candidates = _random(cfg.population, size, state.cap, fits, set(), rng, floor=state.floor)
    while state.iteration < cfg.iterations:
        for g in state.candidates:
            if g not in state.scores:
                state.scores[g] = float(score(g))
                if progress:
                    progress(1)
        pool = set(state.top) | set(state.candidates)
        state.top = sorted(pool, key=lambda g: (state.scores[g], g))[:cfg.keep]
        parents = state.top[:cfg.parents]
        seen = set(state.scores)
        state.iteration += 1
        if state.iteration < cfg.iterations:
            rng = np.random.default_rng([seed, state.iteration])
            new = _mutations(parents, cfg.mutations, cfg.mutation_prob, choices, fits, seen, rng)
            if len(parents) >= 2:
                new += _crossovers(parents, cfg.crossovers, fits, seen, rng)
            new += _random(cfg.population - len(new), size, state.cap, fits, seen, rng, floor=state.floor)
            state.candidates = new
        else:
            state.candidates = []
        if checkpoint:
            checkpoint(state)
    return state


def fits_within(enc, budget, window: float | None) -> tuple[Callable[[Genome], bool], float]:
    """Whether a genome's network meets ``budget`` and, with a FLOPs ``window``, costs at least
    ``(1 - window)`` of its limit; and that lowest cost (0 without a window)."""
    lowest = 0.0 if window is None else (1 - window) * budget.limit

    def fits(g: Genome) -> bool:
        arch = enc.decode(g)
        return budget.fits(arch) and budget.cost(arch) >= lowest

    return fits, lowest


# --- the method -------------------------------------------------------------------------------------

@register
class MetaPruning(Method[MetaPruningConfig]):
    name = "metapruning"
    variants = ("channel",)
    retrain = "scratch"
    config_type = MetaPruningConfig
    families = ("mobilenet_v1", "mobilenet_v2", "resnet50")

    def cheapest(self, family: str, variant: str, config: MetaPruningConfig) -> ArchConfig:
        """Every gene at the smallest channel scale (0.10)."""
        from baselines.metapruning_net import encoding

        enc = encoding(family)
        return enc.decode((0,) * enc.size)

    def work(self, family: str, variant: str, config: MetaPruningConfig, profile, fraction: float) -> list[Work]:
        """The PruningNet (shared by the family's cells of a seed) and the evolution's candidates: each one's
        BatchNorm re-estimated on ``recalibration_batches`` and scored on sub-eval (forward passes)."""
        ev = config.evolution
        scored = ev.population + ev.iterations * (ev.mutations + ev.crossovers)
        batch = profile.train_for(family).batch_size
        return [Work(f"PruningNet: {config.pruningnet_epochs} sub-train epochs (shared per family and seed)",
                     config.pruningnet_epochs, "subtrain", shared="pruningnet"),
                Work(f"evolution: {scored} candidates re-estimated ({config.recalibration_batches} batches)",
                     scored * config.recalibration_batches * batch, None, "found", forward_only=True),
                Work(f"evolution: {scored} candidates scored on sub-eval", scored, "subeval", "found",
                     forward_only=True)]

    def search(self, ctx: Context[MetaPruningConfig]) -> SearchResult:
        from baselines.metapruning_net import SCALES, encoding
        from baselines.metapruning_train import train_pruningnet
        from repro.atomic import atomic_write_text
        from repro.train.subsets import SubsetData

        family, constraint, cfg, budget = ctx.family, ctx.constraint, ctx.config, ctx.budget
        enc = encoding(family)
        net_key, net = train_pruningnet(family, enc, cfg, ctx)
        snapshot = ctx.store.folder / "snapshot.json"
        state = EvolutionState.from_dict(json.loads(snapshot.read_text())) if snapshot.is_file() else None
        earlier = 0.0 if state is None else json.loads(snapshot.read_text()).get("seconds", 0.0)
        data = SubsetData.for_search(ctx)
        fits, lowest = fits_within(enc, budget, cfg.flops_window)

        score = _scorer(net, enc, data, cfg, ctx.data.num_classes)
        start = time.perf_counter()

        def save(st: EvolutionState) -> None:
            seconds = earlier + time.perf_counter() - start
            atomic_write_text(ctx.store.path("snapshot.json"), json.dumps({**st.to_dict(), "seconds": seconds}))

        from tqdm import tqdm

        ev = cfg.evolution
        bar = tqdm(total=ev.population * ev.iterations, desc=f"metapruning {family} {constraint.label()}",
                   unit="cand", disable=True if ctx.quiet else None)
        try:
            state = evolve(enc.size, len(SCALES), fits, score, ev, ctx.seed, state, save, bar.update)
        finally:
            bar.close()
        best = state.top[0]
        arch = enc.decode(best)
        summary = {"arch": arch.to_dict(), "genome": list(best), "error": state.scores[best],
                   "scored": len(state.scores), "cap": state.cap, "floor": state.floor, "macs": budget.cost(arch),
                   "limit": budget.limit, "lowest": lowest,
                   "pruningnet": net_key, "seconds": earlier + time.perf_counter() - start,
                   "top": [[list(g), state.scores[g]] for g in state.top[:10]]}
        snapshot.unlink(missing_ok=True)  # done: the pipeline writes the result
        ctx.log(f"metapruning {family} {constraint.label()}: best sub-eval error {state.scores[best]:.3f} of "
                f"{len(state.scores)} scored; {budget.format(summary['macs'])}")
        return SearchResult(arch, info=summary, seconds=summary["seconds"])


def _scorer(net, enc, data, cfg: MetaPruningConfig, num_classes: int) -> Callable[[Genome], float]:
    """A genome's sub-eval top-1 error after BatchNorm recalibration (their ``infer``)."""
    batches = data.train_batches()  # one stream: each candidate recalibrates on the next batches (as theirs)

    def score(g: Genome) -> float:
        arch = enc.decode(g).replace(num_classes=num_classes)
        model = data.prepare(net.extract(arch))
        data.recalibrate(model, arch.resolution, cfg.recalibration_batches, batches)
        return 1.0 - data.evaluate(model, arch.resolution, cfg.eval_batches)["top1"]

    return score


__all__ = ["MetaPruning", "MetaPruningConfig", "EvolutionConfig", "EvolutionState", "evolve", "fits_within",
           "scale_cap", "scale_range"]
