"""The joint optimizer of the paper's method: weights and the architecture vector in one run.

``joint_search`` alternates, for ``total_steps`` weight steps:

* a **weight step**: an architecture sampled around the current vector (``project(v + sigma * z)``) is
  trained on one sub-train batch with the shared weights. It is trained, not scored, so it is projected
  with the budget's estimate where the budget has one (``Budget.estimated``: a latency table's prediction
  without measuring the layers it lacks), which keeps a latency search from timing a new network at every
  weight step;
* every ``hyper_every`` weight steps (after the first ``hyper_start`` of the run, while the shared weights
  are still near their initialisation and say nothing about architectures), a **hyperparameter step**:
  ``2 * pairs`` antithetic perturbations and the centre are projected onto the budget, scored on one
  sub-eval batch (the same batch for all, so their differences are not batch noise), the NES gradient is
  formed (``repro.search.nes``; coordinates with coarse rounding steps scaled up, ``coarse_power``), sigma
  adapts, and ``v`` takes a momentum-SGD step, its largest coordinate
  change clipped to ``max_step``, with a cosine-decaying learning rate, then is projected onto the budget
  (onto its boundary when it would use less than ``fill`` of it).

What the network is does not matter here: a ``Problem`` trains and scores. ``repro.search.proposed`` gives
the weight-sharing network's; the tests give a planted loss with a known constrained optimum.

Every scored vector and the returned one satisfy the budget (``repro.space.project``). The run is a
function of the seed: the perturbations come from one ``numpy`` generator seeded with it, so under
``torchrun`` every rank draws the same architectures (the network problem all-reduces the scores).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from repro.arch import ArchConfig
from repro.cost.budget import Budget
from repro.search.nes import NESConfig, adapt_sigma, antithetic_gradient, sigma_bounds
from repro.space import SearchSpace, largest_uniform, project


@dataclass(frozen=True)
class HyperConfig:
    lr: float = 0.05  # step size on the vector (ratio units per unit of estimated gradient)
    # 0.5 and a decay to 1%: on the planted problem (tests/test_search.py) 0.9 and 10% ended 0.03-0.14 from
    # the optimum, the NES noise of the push into the budget's boundary walking the vector along it
    momentum: float = 0.5
    max_step: float = 0.05  # no coordinate moves more than this in one step
    final_lr_fraction: float = 0.01  # cosine decay from lr to lr * this over the hyperparameter steps
    # a coordinate whose sigma floor (nes.floor_steps) is k times nes.sigma steps k ** coarse_power times as
    # far per unit of estimated gradient: 1 evens out the estimate's noise, which falls as 1 / sigma_i, so the
    # finely perturbed widths do not take up the whole max_step and leave the depths still (measured on a
    # planted loss wanting fewer blocks: MobileNet V2 kept 16-17 of 17 blocks in 20 steps at 0, 12-14 at 1)
    coarse_power: float = 1.0

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.max_step <= 0:
            raise ValueError(f"hyper.lr={self.lr} and hyper.max_step={self.max_step} must be positive")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"hyper.momentum={self.momentum} must be in [0, 1)")
        if not 0 <= self.final_lr_fraction <= 1:
            raise ValueError(f"hyper.final_lr_fraction={self.final_lr_fraction} must be in [0, 1]")
        if self.coarse_power < 0:
            raise ValueError(f"hyper.coarse_power={self.coarse_power} must not be negative")


@dataclass(frozen=True)
class JointConfig:
    hyper_every: int = 2  # weight steps per hyperparameter step
    hyper_start: float = 0.25  # fraction of the weight steps before the first hyperparameter step
    sample_sigma: float = 1.0  # weight steps train v + sample_sigma * sigma * z (0: only v itself)
    # every vector is projected onto the budget's boundary when it uses less than this share of it
    # (repro.space.project): the search allocates the budget; 0 lets vectors fall below it
    fill: float = 0.97
    nes: NESConfig = field(default_factory=NESConfig)
    hyper: HyperConfig = field(default_factory=HyperConfig)

    def __post_init__(self) -> None:
        if self.hyper_every < 1:
            raise ValueError(f"hyper_every={self.hyper_every} must be at least 1")
        if not 0 <= self.hyper_start < 1:
            raise ValueError(f"hyper_start={self.hyper_start} must be in [0, 1)")
        if not 0 <= self.fill <= 1:
            raise ValueError(f"fill={self.fill} must be in [0, 1]")
        if self.sample_sigma < 0:
            raise ValueError(f"sample_sigma={self.sample_sigma} must not be negative")


class Problem(Protocol):
    """What the optimizer needs from a network (or from a planted loss)."""

    def weight_step(self, arch: ArchConfig, step: int) -> float: ...

    def score(self, vectors: list[np.ndarray], archs: list[ArchConfig], step: int) -> np.ndarray: ...


@dataclass
class SearchOutcome:
    vector: np.ndarray
    arch: ArchConfig
    start: np.ndarray
    trajectory: list[dict[str, Any]]
    scored_costs: list[float]  # the cost of every scored vector, for the constraint check


@dataclass
class JointState:
    """Everything the loop carries from one weight step to the next: a checkpoint of the vector side."""

    v: np.ndarray
    start: np.ndarray
    sigma: np.ndarray
    velocity: np.ndarray
    rng: dict[str, Any]  # the numpy generator's bit_generator.state
    next_step: int = 0
    done_hyper: int = 0
    trajectory: list[dict[str, Any]] = field(default_factory=list)
    scored_costs: list[float] = field(default_factory=list)


def hyper_steps_of(cfg: JointConfig, total_steps: int) -> list[int]:
    """The weight-step indices after which a hyperparameter step runs."""
    first = math.ceil(cfg.hyper_start * total_steps)
    return [s for s in range(total_steps) if s + 1 > first and (s + 1) % cfg.hyper_every == 0]


def initial_state(space: SearchSpace, budget: Budget, cfg: JointConfig, seed: int,
                  start: np.ndarray | None = None) -> JointState:
    """The state before the first step; ``start`` defaults to the largest uniform vector within the budget."""
    v = largest_uniform(space, budget) if start is None else project(space, budget, start, cfg.fill)
    sigma = np.clip(np.full(space.dim, cfg.nes.sigma), *sigma_bounds(cfg.nes, space.grid_step))
    return JointState(v, v.copy(), sigma, np.zeros(space.dim),
                      np.random.default_rng(seed).bit_generator.state)


def joint_search(space: SearchSpace, budget: Budget, cfg: JointConfig, total_steps: int, problem: Problem,
                 seed: int, start: np.ndarray | None = None, state: JointState | None = None,
                 checkpoint: Callable[[JointState], None] | None = None, checkpoint_every: int = 0,
                 progress: Callable[[int], None] | None = None) -> SearchOutcome:
    """Run the joint optimization (see the module docstring) from ``state`` (a checkpoint) or from the
    beginning. ``checkpoint(state)`` is called after every ``checkpoint_every`` weight steps (0: never); a
    run resumed from that state goes on exactly as the uninterrupted one would, given a problem that
    restores its own side (weights, data position)."""
    st = initial_state(space, budget, cfg, seed, start) if state is None else state
    rng = np.random.default_rng()
    rng.bit_generator.state = st.rng
    hyper_at = set(hyper_steps_of(cfg, total_steps))
    sampling = budget.estimated()  # weight-step samples are trained, not scored: see the module docstring
    n_hyper = len(hyper_at)
    for step in range(st.next_step, total_steps):
        noise = rng.standard_normal(space.dim) * st.sigma * cfg.sample_sigma
        sample = project(space, sampling, st.v + noise, cfg.fill)
        weight_loss = problem.weight_step(space.decode(sample), step)
        st.next_step = step + 1
        if progress is not None:
            progress(step)
        if step in hyper_at:
            _hyper_step(space, budget, cfg, st, rng, problem, step, weight_loss, n_hyper)
        if checkpoint is not None and checkpoint_every and st.next_step % checkpoint_every == 0:
            st.rng = rng.bit_generator.state
            checkpoint(st)
    st.rng = rng.bit_generator.state
    return SearchOutcome(st.v, space.decode(st.v), st.start, st.trajectory, st.scored_costs)


def _hyper_step(space: SearchSpace, budget: Budget, cfg: JointConfig, st: JointState, rng: np.random.Generator,
                problem: Problem, step: int, weight_loss: float, n_hyper: int) -> None:
    """Score 2 * pairs perturbations and the centre, estimate the gradient, adapt sigma, move v."""
    z = rng.standard_normal((cfg.nes.pairs, space.dim))
    vectors = [st.v] + [project(space, budget, st.v + s * st.sigma * zk, cfg.fill) for zk in z for s in (1, -1)]
    archs = [space.decode(x) for x in vectors]
    st.scored_costs.extend(budget.cost(a) for a in archs)
    losses = np.asarray(problem.score(vectors, archs, step), dtype=np.float64)
    centre, plus, minus = losses[0], losses[1::2], losses[2::2]
    grad = antithetic_gradient(z, plus, minus, st.sigma)
    bounds = sigma_bounds(cfg.nes, space.grid_step)
    st.sigma = adapt_sigma(st.sigma, z, plus, minus, centre, cfg.nes, bounds)
    grad = grad * np.maximum(1.0, bounds[0] / cfg.nes.sigma) ** cfg.hyper.coarse_power
    lr = _cosine(cfg.hyper, st.done_hyper, n_hyper)
    st.velocity = cfg.hyper.momentum * st.velocity + grad
    delta = lr * st.velocity
    biggest = np.abs(delta).max()
    if biggest > cfg.hyper.max_step:
        delta *= cfg.hyper.max_step / biggest
    moved = project(space, budget, st.v - delta, cfg.fill)
    # momentum keeps only the part of the step the projection let through: a push into the budget's
    # boundary would otherwise pile up in the velocity and, once clipped to max_step, crowd out the rest
    st.velocity = (st.v - moved) / lr
    st.v = moved
    st.done_hyper += 1
    arch = space.decode(st.v)
    st.trajectory.append({
        "step": step + 1, "hyper_step": st.done_hyper, "loss": float(centre), "loss_mean": float(losses.mean()),
        "weight_loss": float(weight_loss), "cost": budget.cost(arch), "limit": budget.limit,
        "unit": budget.unit, **_describe(arch), "sigma_mean": float(st.sigma.mean()),
        "grad_norm": float(np.linalg.norm(grad)), "lr": lr, "vector": [round(float(x), 5) for x in st.v]})


def _describe(arch: Any) -> dict[str, Any]:
    if isinstance(arch, ArchConfig):
        return {"resolution": arch.resolution, "depths": list(arch.depths)}
    return {}


def _cosine(cfg: HyperConfig, k: int, n: int) -> float:
    progress = k / max(1, n - 1)
    low = cfg.lr * cfg.final_lr_fraction
    return low + (cfg.lr - low) * 0.5 * (1 + math.cos(math.pi * progress))


def write_trajectory(path: Path, trajectory: list[dict[str, Any]], names: list[str]) -> None:
    """The trajectory as JSON lines (first line: the coordinate names), written atomically."""
    from repro.atomic import atomic_write_bytes

    lines = [json.dumps({"coordinates": names})] + [json.dumps(e) for e in trajectory]
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())


def plot_trajectory(path: Path, trajectory: list[dict[str, Any]], names: list[str], title: str) -> None:
    """Sub-eval loss, cost / limit and the vector's coordinates against the step, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [e["step"] for e in trajectory]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    losses = np.array([e["loss"] for e in trajectory])
    axes[0].plot(steps, losses, alpha=0.5, label="centre (one sub-eval batch)")
    axes[0].plot(steps, [e["loss_mean"] for e in trajectory], alpha=0.3, label="mean of perturbations")
    if len(losses) >= 5:  # each point is one batch: the running mean shows the trend
        axes[0].plot(steps[4:], np.convolve(losses, np.ones(5) / 5, mode="valid"), "k", lw=1.5,
                     label="centre, mean of 5")
    axes[0].set(xlabel="weight step", ylabel="sub-eval loss", title="sub-eval loss")
    axes[0].legend(fontsize=8)
    axes[1].plot(steps, [e["cost"] / e["limit"] for e in trajectory])
    axes[1].axhline(1.0, color="k", lw=0.8, ls="--")
    axes[1].set(xlabel="weight step", ylabel=f"cost / limit ({trajectory[0]['unit'] if trajectory else ''})",
                title="constraint")
    vectors = np.array([e["vector"] for e in trajectory]) if trajectory else np.zeros((0, len(names)))
    for i, name in enumerate(names):
        kind = name.split(":")[0]
        style = {"w": "-", "resolution": "--", "depth": ":"}.get(kind, "-")
        axes[2].plot(steps, vectors[:, i], style, lw=1.6 if kind != "w" else 0.8,
                     label=name if kind != "w" else None)
    axes[2].set(xlabel="weight step", ylabel="ratio to the canonical network", title="architecture vector")
    if any(not n.startswith("w:") for n in names):
        axes[2].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
