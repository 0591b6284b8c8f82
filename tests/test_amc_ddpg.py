"""AMC's DDPG agent (baselines/amc_ddpg.py) on a planted problem: it learns, it stays in its bounds, its
exploration noise decays as AMC's does, a checkpointed search resumes exactly, bad configs are refused."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
import torch

from baselines.amc_ddpg import DDPGAgent, DDPGConfig, normalize_embeddings, run_search

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny networks: one thread is faster on 2 cores

TARGETS = (0.3, 0.8, 0.5, 0.9, 0.2)


class ToyEnv:
    """One step per "layer"; the state is the layer's one-hot index and the previous action (AMC's state
    carries a_{t-1} too); the reward, given at the end only, is -sum_i (a_i - target_i)^2. Every action
    taken is logged, so tests can compare action sequences."""

    def __init__(self, targets: tuple[float, ...] = TARGETS) -> None:
        self.targets = np.asarray(targets)
        self.n = len(targets)
        self.log: list[float] = []

    def _state(self, i: int, prev: float) -> np.ndarray:
        s = np.zeros(self.n + 1)
        s[i], s[-1] = 1.0, prev
        return s

    def reset(self) -> np.ndarray:
        self.actions: list[float] = []
        return self._state(0, 1.0)

    def step(self, action: float) -> tuple[np.ndarray, float, bool, dict[str, Any]]:
        self.actions.append(action)
        self.log.append(action)
        if len(self.actions) == self.n:
            reward = -float(((np.asarray(self.actions) - self.targets) ** 2).sum())
            return self._state(self.n - 1, action), reward, True, {"actions": list(self.actions)}
        return self._state(len(self.actions), action), 0.0, False, {}


def _search(cfg: DDPGConfig, env: ToyEnv | None = None) -> tuple[DDPGAgent, list[float], list[float]]:
    env = env or ToyEnv()
    agent = DDPGAgent(env.n + 1, env.n, cfg)
    rewards: list[float] = []
    sigmas: list[float] = []

    def on_episode(episode: int, reward: float, info: dict[str, Any]) -> None:
        rewards.append(reward)
        sigmas.append(agent.sigma)

    run_search(env, agent, cfg, on_episode=on_episode)
    return agent, rewards, sigmas


def test_ddpg_learns_planted_targets() -> None:
    # AMC's hyperparameters, only fewer episodes. Uniform actions score E = sum(t^2 - t + 1/3) = -0.797 here;
    # seeds 0-2 reached -0.04 / -0.07 / -0.19 over their last 10 of 80 trained episodes
    cfg = DDPGConfig(warmup_episodes=20, train_episodes=80, seed=0)
    agent, rewards, _ = _search(cfg)
    warm, trained = np.mean(rewards[:20]), np.mean(rewards[-10:])
    assert -1.1 < warm < -0.5, warm  # the warm-up really is uniform play
    assert trained > warm + 0.4, (warm, trained)
    assert trained > -0.25, trained
    assert agent.best is not None and agent.best.reward == max(rewards)
    assert agent.best.info["actions"] == pytest.approx(TARGETS, abs=0.2)


def test_actions_stay_in_bounds() -> None:
    # targets outside [lbound, rbound] push the actor against both bounds; warm-up and noisy actions alike
    cfg = DDPGConfig(warmup_episodes=5, train_episodes=15, lbound=0.2, rbound=0.7, seed=1)
    env = ToyEnv((0.0, 1.0, 0.05, 0.95))
    _search(cfg, env)
    log = np.asarray(env.log)
    assert len(log) == 20 * 4
    assert log.min() >= 0.2 and log.max() <= 0.7, (log.min(), log.max())
    assert log.min() < 0.3 and log.max() > 0.6  # the range is used, not collapsed to its middle
    # the noise is a normal truncated at the bounds (sigma >= 0.24 here), not clipped: no mass on the bounds
    assert not np.isin(log, [0.2, 0.7]).any()


def test_noise_sigma_decays_per_episode_after_warmup() -> None:
    cfg = DDPGConfig(warmup_episodes=3, train_episodes=6, init_delta=0.5, delta_decay=0.95, seed=2)
    np_state, torch_state = np.random.get_state()[1].copy(), torch.get_rng_state()
    agent, _, sigmas = _search(cfg)
    # the agent draws only from its own generators
    assert np.array_equal(np.random.get_state()[1], np_state) and torch.equal(torch.get_rng_state(), torch_state)
    trained = np.asarray(sigmas[3:])
    np.testing.assert_allclose(trained, 0.5 * 0.95 ** np.arange(6), rtol=1e-12)
    assert agent.noise_sigma(3 + 10) == pytest.approx(0.5 * 0.95**10)


def test_state_dict_round_trip_resumes_exactly() -> None:
    cfg = DDPGConfig(warmup_episodes=3, train_episodes=5, batch_size=8, seed=3)
    saved: dict[int, bytes] = {}
    original_env = ToyEnv()
    original = DDPGAgent(original_env.n + 1, original_env.n, cfg)

    def checkpoint(episode: int, reward: float, info: dict[str, Any]) -> None:
        buf = io.BytesIO()
        torch.save(original.state_dict(), buf)
        saved[episode] = buf.getvalue()

    best = run_search(original_env, original, cfg, on_episode=checkpoint)
    # resume after the 2nd trained episode: policy updates, noise and replay sampling have all started
    resumed_env = ToyEnv()
    resumed = DDPGAgent(resumed_env.n + 1, resumed_env.n, cfg)
    resumed.load_state_dict(torch.load(io.BytesIO(saved[4]), weights_only=True))
    resumed_best = run_search(resumed_env, resumed, cfg)
    assert resumed_env.log == original_env.log[5 * 5:]  # bit-identical actions for episodes 5..7
    assert len(resumed_env.log) == 3 * 5
    assert resumed_best == best
    for a, b in zip(resumed.actor.parameters(), original.actor.parameters(), strict=True):
        assert torch.equal(a, b)


def test_load_state_dict_refuses_other_config() -> None:
    sd = DDPGAgent(6, 5, DDPGConfig(seed=0)).state_dict()
    with pytest.raises(ValueError, match="cfg"):
        DDPGAgent(6, 5, DDPGConfig(seed=1)).load_state_dict(sd)
    with pytest.raises(ValueError, match="n_steps"):
        DDPGAgent(6, 4, DDPGConfig(seed=0)).load_state_dict(sd)


@pytest.mark.parametrize(("field", "value"), [
    ("hidden1", 0), ("batch_size", 0), ("memory_episodes", 0), ("warmup_episodes", -1), ("train_episodes", -1),
    ("lr_actor", 0.0), ("lr_critic", -1e-3), ("init_delta", 0.0), ("discount", 1.5), ("tau", -0.1),
    ("moving_alpha", 2.0), ("delta_decay", 0.0), ("lbound", 1.0), ("lbound", -0.1), ("rbound", 1.5),
])
def test_config_validation_names_the_field(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=rf"ddpg\.{field}="):
        DDPGConfig(**{field: value})


def test_normalize_embeddings_min_max_per_feature() -> None:
    m = np.array([[0.0, 3.0, 7.0], [2.0, 5.0, 7.0], [4.0, 4.0, 7.0]])
    out = normalize_embeddings(m)
    np.testing.assert_allclose(out[:, 0], [0.0, 0.5, 1.0])
    np.testing.assert_allclose(out[:, 1], [0.0, 1.0, 0.5])
    np.testing.assert_allclose(out[:, 2], [7.0, 7.0, 7.0])  # constant: left as is, as AMC does
    with pytest.raises(ValueError, match="shape"):
        normalize_embeddings(np.zeros(3))


def test_reward_before_done_is_refused() -> None:
    class Leaky(ToyEnv):
        def step(self, action: float) -> tuple[np.ndarray, float, bool, dict[str, Any]]:
            s, r, done, info = super().step(action)
            return s, (r if done else 0.1), done, info

    cfg = DDPGConfig(warmup_episodes=1, train_episodes=0)
    with pytest.raises(ValueError, match="before the final step"):
        run_search(Leaky(), DDPGAgent(6, 5, cfg), cfg)
