"""AMC's DDPG agent (He et al., "AMC: AutoML for Model Compression and Acceleration on Mobile Devices",
ECCV 2018), written against no particular environment.

The agent walks a network layer by layer: the state is the layer's embedding, the action a number in
``[lbound, rbound]`` that the environment turns into the layer's preserve ratio, and the reward arrives
once, when the last layer has been decided. The numbers and the mechanics follow the authors' code,
github.com/mit-han-lab/amc (``amc_search.py``, ``lib/agent.py``, the keras-rl ``SequentialMemory`` in
``lib/memory.py``, ``env/channel_pruning_env.py``); each default below names where it came from. Where we
differ from that code it is said next to the difference.

``run_search(env, agent, cfg)`` is the episode loop of ``amc_search.py``'s ``train``; ``env`` is anything
with ``reset() -> state`` and ``step(action) -> (next_state, reward, done, info)``. The run is a function
of ``cfg.seed``: the agent owns its numpy and torch generators and touches no global random state, and
``state_dict`` holds everything needed to resume it mid-search (networks, optimizers, replay memory,
reward baseline, noise, generators, episode counter, best episode so far).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
import torch
from scipy import stats
from torch import nn


@dataclass(frozen=True)
class DDPGConfig:
    hidden1: int = 300  # amc_search.py --hidden1 (lib/agent.py's own default, 400, is overridden)
    hidden2: int = 300  # amc_search.py --hidden2
    lr_actor: float = 1e-4  # amc_search.py --lr_a
    lr_critic: float = 1e-3  # amc_search.py --lr_c
    discount: float = 1.0  # amc_search.py --discount
    tau: float = 0.01  # amc_search.py --tau: soft target update
    batch_size: int = 64  # amc_search.py --bsize
    # amc_search.py --rmsize 100 is "memory size for each layer": the script multiplies it by the number of
    # prunable layers, so the memory holds about this many episodes' transitions (capacity counts transitions)
    memory_episodes: int = 100
    # amc_search.py --warmup 100: episodes of uniformly random actions and no updates. AMC's loop tests
    # ``episode <= warmup`` and so plays 101; we play exactly this many
    warmup_episodes: int = 100
    # episodes after warm-up. amc_search.py --train_episode 800 counts all episodes, warm-up included
    train_episodes: int = 700
    init_delta: float = 0.5  # amc_search.py --init_delta: sigma of the truncated-normal exploration noise
    delta_decay: float = 0.95  # amc_search.py --delta_decay: sigma *= this per episode after warm-up
    moving_alpha: float = 0.5  # lib/agent.py self.moving_alpha: step of the reward baseline's moving average
    # lib/agent.py fixes the agent's bounds at 0 and 1 (its ``args.lbound`` is commented out); AMC's
    # --lbound 0.2 / --rbound 1 are applied by the environment (ChannelPruningEnv._action_wall)
    lbound: float = 0.0
    rbound: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("hidden1", "hidden2", "batch_size", "memory_episodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"ddpg.{name}={getattr(self, name)!r} must be a positive integer")
        for name in ("warmup_episodes", "train_episodes"):
            if getattr(self, name) < 0:
                raise ValueError(f"ddpg.{name}={getattr(self, name)!r} must not be negative")
        for name in ("lr_actor", "lr_critic", "init_delta"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ddpg.{name}={getattr(self, name)!r} must be positive")
        for name in ("discount", "tau", "moving_alpha"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"ddpg.{name}={getattr(self, name)!r} must be in [0, 1]")
        if not 0 < self.delta_decay <= 1:
            raise ValueError(f"ddpg.delta_decay={self.delta_decay!r} must be in (0, 1]")
        if not 0 <= self.lbound < self.rbound <= 1:
            raise ValueError(f"ddpg.lbound={self.lbound!r} and ddpg.rbound={self.rbound!r} must satisfy "
                             "0 <= lbound < rbound <= 1 (the actor's sigmoid range)")


class Env(Protocol):
    """An AMC-style environment: one ``step`` per layer, the reward nonzero only on the final step."""

    def reset(self) -> np.ndarray: ...

    def step(self, action: float) -> tuple[np.ndarray, float, bool, dict[str, Any]]: ...


@dataclass(frozen=True)
class Transition:
    state: np.ndarray
    action: float
    next_state: np.ndarray
    done: bool


@dataclass(frozen=True)
class Best:
    episode: int
    reward: float
    info: dict[str, Any]  # the environment's info of that episode's final step (its actions, architecture)


def normalize_embeddings(matrix: np.ndarray) -> np.ndarray:
    """Min-max normalise each feature (column) over the layers (rows), as ChannelPruningEnv's
    ``_build_state_embedding`` does; a constant column is left as it is, as there."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] == 0:
        raise ValueError(f"layer embeddings must be a non-empty (layers, features) matrix, got shape {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError("layer embeddings contain NaN or infinite values")
    lo, hi = m.min(axis=0), m.max(axis=0)
    span = hi - lo
    out = m.copy()
    varying = span > 0
    out[:, varying] = (m[:, varying] - lo[varying]) / span[varying]
    return out


class Actor(nn.Module):
    """state -> action in [0, 1]: two ReLU layers and a sigmoid (lib/agent.py ``Actor``)."""

    def __init__(self, state_dim: int, hidden1: int, hidden2: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(state_dim, hidden1), nn.ReLU(), nn.Linear(hidden1, hidden2), nn.ReLU(),
                                 nn.Linear(hidden2, 1), nn.Sigmoid())

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self.net(state)


class Critic(nn.Module):
    """(state, action) -> Q. As lib/agent.py ``Critic``: state and action each go through their own linear
    layer into the first hidden layer, where they are summed."""

    def __init__(self, state_dim: int, hidden1: int, hidden2: int) -> None:
        super().__init__()
        self.state_in = nn.Linear(state_dim, hidden1)
        self.action_in = nn.Linear(1, hidden1)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(hidden1, hidden2), nn.ReLU(), nn.Linear(hidden2, 1))

    def forward(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.head(self.state_in(state) + self.action_in(action))


def _build(cls: type[nn.Module], state_dim: int, cfg: DDPGConfig, gen: torch.Generator) -> nn.Module:
    # built on the meta device so that nn.Linear draws nothing from the global generator, then given
    # PyTorch's default nn.Linear initialisation (what AMC gets: its init_w option is unused) from ``gen``
    with torch.device("meta"):
        module = cls(state_dim, cfg.hidden1, cfg.hidden2)
    module = module.to_empty(device="cpu")
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=gen)
            bound = 1 / math.sqrt(layer.in_features)
            nn.init.uniform_(layer.bias, -bound, bound, generator=gen)
    return module


class DDPGAgent:
    """AMC's DDPG for a fixed-length episode of ``n_steps`` decisions (one per layer).

    Kept on the CPU: 300-wide MLPs on batches of 64 gain nothing from a GPU, and the CPU keeps runs
    bit-reproducible; the environment's network may live anywhere.
    """

    def __init__(self, state_dim: int, n_steps: int, cfg: DDPGConfig) -> None:
        if state_dim < 1 or n_steps < 1:
            raise ValueError(f"state_dim={state_dim} and n_steps={n_steps} must be positive")
        self.cfg, self.state_dim, self.n_steps = cfg, state_dim, n_steps
        self.rng = np.random.default_rng(cfg.seed)
        self.torch_gen = torch.Generator().manual_seed(cfg.seed)
        self.actor = _build(Actor, state_dim, cfg, self.torch_gen)
        self.critic = _build(Critic, state_dim, cfg, self.torch_gen)
        # the targets start as copies (AMC's hard_update)
        self.actor_target, self.critic_target = copy.deepcopy(self.actor), copy.deepcopy(self.critic)
        self.actor_optim = torch.optim.Adam(self.actor.parameters(), lr=cfg.lr_actor)
        self.critic_optim = torch.optim.Adam(self.critic.parameters(), lr=cfg.lr_critic)
        # replay memory: a ring buffer of transitions; AMC's capacity is rmsize times the number of layers
        self.capacity = cfg.memory_episodes * n_steps
        self.states = np.zeros((self.capacity, state_dim), np.float32)
        self.next_states = np.zeros((self.capacity, state_dim), np.float32)
        self.actions = np.zeros(self.capacity, np.float32)
        self.rewards = np.zeros(self.capacity, np.float32)
        self.terminals = np.zeros(self.capacity, np.float32)
        self.size = self.pos = 0
        self.moving_average: float | None = None
        self.sigma = cfg.init_delta
        self.episode = 0  # episodes finished; the index of the next one
        self.best: Best | None = None

    def noise_sigma(self, episode: int) -> float:
        """lib/agent.py ``select_action``: init_delta * delta_decay ** (episode - warmup). With our episode
        count the first episode after warm-up explores with init_delta itself."""
        return self.cfg.init_delta * self.cfg.delta_decay ** max(0, episode - self.cfg.warmup_episodes)

    def select_action(self, state: np.ndarray, episode: int, warmup: bool) -> float:
        lo, hi = self.cfg.lbound, self.cfg.rbound
        if warmup:  # lib/agent.py random_action: uniform over the agent's bounds
            return float(self.rng.uniform(lo, hi))
        with torch.no_grad():
            mu = float(self.actor(torch.as_tensor(state, dtype=torch.float32).reshape(1, -1)))
        self.sigma = self.noise_sigma(episode)
        # truncated normal around the actor's action, cut at the bounds (lib/agent.py uses scipy's truncnorm
        # too), then clipped as AMC does, against rounding at the cut
        a = stats.truncnorm.rvs((lo - mu) / self.sigma, (hi - mu) / self.sigma, loc=mu, scale=self.sigma,
                                random_state=self.rng)
        return float(np.clip(a, lo, hi))

    def observe(self, transition: Transition, reward: float) -> None:
        """Write one transition into the replay memory (lib/agent.py ``observe``), overwriting the oldest."""
        i = self.pos
        self.states[i], self.next_states[i] = transition.state, transition.next_state
        self.actions[i], self.rewards[i] = transition.action, reward
        self.terminals[i] = float(transition.done)
        self.pos, self.size = (i + 1) % self.capacity, min(self.size + 1, self.capacity)

    def store_episode(self, transitions: Sequence[Transition], reward: float) -> None:
        """AMC gives every transition of an episode the episode's final reward (amc_search.py ``train``).
        AMC's memory also gets a dummy entry after each episode, because keras-rl's memory reads a next state
        from the following entry (and never samples the dummy); we store next states, so need none."""
        if len(transitions) != self.n_steps:
            raise ValueError(f"an episode has {len(transitions)} transitions; this agent was built for "
                             f"n_steps={self.n_steps} (one per layer)")
        for t in transitions:
            self.observe(t, reward)

    def update_policy(self) -> None:
        """One DDPG step on a minibatch from the memory (lib/agent.py ``update_policy``)."""
        if self.size == 0:
            raise RuntimeError("update_policy called with an empty replay memory; store an episode first")
        cfg = self.cfg
        # keras-rl's sampling: without replacement when the memory is large enough, else with replacement
        idx = self.rng.choice(self.size, cfg.batch_size, replace=self.size < cfg.batch_size)
        rewards = self.rewards[idx]
        # the baseline is a moving average of *minibatch* mean rewards, updated once per update (AMC's
        # "based on batch"), not of episode rewards; it is subtracted from the sampled rewards
        batch_mean = float(rewards.mean())
        if self.moving_average is None:
            self.moving_average = batch_mean
        else:
            self.moving_average += cfg.moving_alpha * (batch_mean - self.moving_average)
        s, s1 = torch.from_numpy(self.states[idx]), torch.from_numpy(self.next_states[idx])
        a = torch.from_numpy(self.actions[idx]).unsqueeze(1)
        r = torch.from_numpy(rewards - np.float32(self.moving_average)).unsqueeze(1)
        not_done = torch.from_numpy(1 - self.terminals[idx]).unsqueeze(1)
        with torch.no_grad():
            target = r + cfg.discount * not_done * self.critic_target(s1, self.actor_target(s1))
        value_loss = nn.functional.mse_loss(self.critic(s, a), target)
        self.critic_optim.zero_grad()
        value_loss.backward()
        self.critic_optim.step()
        policy_loss = -self.critic(s, self.actor(s)).mean()
        self.actor_optim.zero_grad()
        policy_loss.backward()
        self.actor_optim.step()
        with torch.no_grad():
            for target_net, net in ((self.actor_target, self.actor), (self.critic_target, self.critic)):
                for tp, p in zip(target_net.parameters(), net.parameters(), strict=True):
                    tp.mul_(1 - cfg.tau).add_(p, alpha=cfg.tau)

    def finish_episode(self, reward: float, info: dict[str, Any]) -> None:
        if self.best is None or reward > self.best.reward:
            self.best = Best(self.episode, float(reward), info)
        self.episode += 1

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed search needs; plain data and tensors (loads with ``weights_only=True`` when
        the best episode's info is plain data too)."""
        n = self.size
        return {
            "cfg": asdict(self.cfg), "state_dim": self.state_dim, "n_steps": self.n_steps,
            "actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
            "actor_target": self.actor_target.state_dict(), "critic_target": self.critic_target.state_dict(),
            "actor_optim": self.actor_optim.state_dict(), "critic_optim": self.critic_optim.state_dict(),
            "memory": {"states": torch.from_numpy(self.states[:n].copy()),
                       "next_states": torch.from_numpy(self.next_states[:n].copy()),
                       "actions": torch.from_numpy(self.actions[:n].copy()),
                       "rewards": torch.from_numpy(self.rewards[:n].copy()),
                       "terminals": torch.from_numpy(self.terminals[:n].copy()), "pos": self.pos},
            "moving_average": self.moving_average, "sigma": self.sigma, "episode": self.episode,
            "best": None if self.best is None else asdict(self.best),
            "rng": self.rng.bit_generator.state, "torch_rng": self.torch_gen.get_state(),
        }

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        for key, mine in (("cfg", asdict(self.cfg)), ("state_dim", self.state_dim), ("n_steps", self.n_steps)):
            if sd[key] != mine:
                raise ValueError(f"checkpoint {key}={sd[key]!r} does not match this agent's {key}={mine!r}")
        for name in ("actor", "critic", "actor_target", "critic_target", "actor_optim", "critic_optim"):
            getattr(self, name).load_state_dict(sd[name])
        mem = sd["memory"]
        n = len(mem["rewards"])
        for name in ("states", "next_states", "actions", "rewards", "terminals"):
            getattr(self, name)[:n] = mem[name].numpy()
        self.size, self.pos = n, mem["pos"]
        self.moving_average, self.sigma, self.episode = sd["moving_average"], sd["sigma"], sd["episode"]
        self.best = None if sd["best"] is None else Best(**sd["best"])
        self.rng.bit_generator.state = sd["rng"]
        self.torch_gen.set_state(sd["torch_rng"])


def run_search(env: Env, agent: DDPGAgent, cfg: DDPGConfig, progress: Callable[[int], None] | None = None,
               on_episode: Callable[[int, float, dict[str, Any]], None] | None = None) -> Best:
    """amc_search.py ``train``: ``cfg.warmup_episodes`` random episodes, then ``cfg.train_episodes`` with the
    actor and noise, ``n_steps`` policy updates after each (one per stored transition, as AMC updates once
    per observed transition). Starts at ``agent.episode``, so an agent loaded from a checkpoint resumes.
    ``on_episode(episode, reward, info)`` runs after each episode, the agent already updated: the place to
    checkpoint. Returns the episode with the highest reward."""
    if cfg != agent.cfg:
        raise ValueError(f"run_search cfg {cfg} differs from the agent's {agent.cfg}")
    while agent.episode < cfg.warmup_episodes + cfg.train_episodes:
        episode, warmup = agent.episode, agent.episode < cfg.warmup_episodes
        state = np.asarray(env.reset(), dtype=np.float32)
        transitions: list[Transition] = []
        done = False
        while not done:
            if len(transitions) == agent.n_steps:
                raise RuntimeError(f"episode {episode} ran {agent.n_steps} steps without done=True; AMC episodes "
                                   "have one step per layer")
            action = agent.select_action(state, episode, warmup)
            next_state, reward, done, info = env.step(action)
            next_state = np.asarray(next_state, dtype=np.float32)
            if not done and reward != 0:
                raise ValueError(f"episode {episode} step {len(transitions)}: reward {reward} before the final "
                                 "step; AMC-style environments reward only at done")
            transitions.append(Transition(state, action, next_state, bool(done)))
            state = next_state
        agent.store_episode(transitions, float(reward))
        if not warmup:
            # AMC interleaves observe and update per transition; updating after the whole episode differs
            # only in whether the episode's later transitions can be drawn in its earlier updates
            for _ in transitions:
                agent.update_policy()
        agent.finish_episode(float(reward), info)
        if progress is not None:
            progress(episode)
        if on_episode is not None:
            on_episode(episode, float(reward), info)
    if agent.best is None:
        raise ValueError("run_search ran no episodes: warmup_episodes + train_episodes is 0")
    return agent.best
