"""Natural evolution strategies: a gradient estimate of a loss that can only be evaluated, and the
self-adaptation of the perturbation scale.

With ``n`` antithetic pairs ``v +- sigma * z_k`` (``z_k`` standard normal, ``sigma`` one scale per
coordinate) the estimate is

    g_i = sum_k z_ki * (L(v + sigma z_k) - L(v - sigma z_k)) / (2 n sigma_i),

the gradient of the Gaussian-smoothed loss (Wierstra et al., 2014; Salimans et al., 2017). It equals
``sum_k eps_k (L_k - b) / (2 n sigma^2)`` over the 2n samples for any baseline ``b``: the antithetic pairs
subtract the baseline exactly, so no extra variance comes from the loss's level.

The scale adapts as in separable NES (Schaul et al., 2011): the natural gradient of the expected loss in
``log sigma_i`` is ``mean_k u_k (z_ki^2 - 1)`` with ``u_k`` the pair's mean loss minus the centre's loss
(here divided by the spread of the scores, so the rule does not depend on the loss's unit). Where larger
perturbations of a coordinate cost loss (curvature, near an optimum) its scale shrinks; where they gain,
it grows; it stays within ``[sigma_min, sigma_max]``.

The mapping to an architecture rounds (widths to multiples of 8, depth to whole blocks), so a coordinate's
perturbation changes the network only once it crosses a rounding step: a depth coordinate of a four-block
stage moves in steps of 0.25, the width of a 16-channel layer in steps of 0.5. Below about half a step the
perturbed networks are (almost) all the centre's, the scored differences are zero and the coordinate never
moves (measured: at sigma 0.05 every depth search of Table 2 on the smoke profile kept the maximum depths).
So each coordinate's scale is also held at or above ``floor_steps`` of its own rounding step
(``sigma_bounds``); for wide layers and the resolution the step is small and ``sigma_min`` rules.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class NESConfig:
    pairs: int = 4  # antithetic pairs per estimate (2 * pairs + 1 scores with the centre)
    sigma: float = 0.05  # initial perturbation scale, in ratio units (0.05 = 5% of the canonical width)
    sigma_min: float = 0.01
    sigma_max: float = 0.2
    sigma_lr: float = 0.1  # learning rate of log(sigma); 0 keeps sigma fixed
    # each coordinate's sigma is at least this many of its own rounding steps (see the module docstring);
    # 0 leaves only sigma_min
    floor_steps: float = 0.5

    def __post_init__(self) -> None:
        if self.pairs < 1:
            raise ValueError(f"nes.pairs={self.pairs} must be at least 1")
        if not 0 < self.sigma_min <= self.sigma <= self.sigma_max:
            raise ValueError(f"nes sigma {self.sigma} must lie in [sigma_min, sigma_max] = "
                             f"[{self.sigma_min}, {self.sigma_max}], all positive")
        if self.sigma_lr < 0:
            raise ValueError(f"nes.sigma_lr={self.sigma_lr} must not be negative")
        if self.floor_steps < 0:
            raise ValueError(f"nes.floor_steps={self.floor_steps} must not be negative")


def sigma_bounds(cfg: NESConfig, grid_step: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-coordinate ``(low, high)`` of sigma: ``low = max(sigma_min, floor_steps * grid_step)``,
    ``high = max(sigma_max, low)``; ``grid_step`` is the vector change of one rounding step per coordinate."""
    low = np.maximum(cfg.sigma_min, cfg.floor_steps * np.asarray(grid_step, dtype=np.float64))
    return low, np.maximum(cfg.sigma_max, low)


def antithetic_gradient(z: np.ndarray, loss_plus: np.ndarray, loss_minus: np.ndarray,
                        sigma: np.ndarray) -> np.ndarray:
    """The NES gradient estimate from ``z`` (n x d) and the losses at ``v + sigma z`` and ``v - sigma z``."""
    z = np.asarray(z, dtype=np.float64)
    diff = np.asarray(loss_plus, dtype=np.float64) - np.asarray(loss_minus, dtype=np.float64)
    return (z * diff[:, None]).sum(axis=0) / (2 * len(z) * np.asarray(sigma, dtype=np.float64))


def adapt_sigma(sigma: np.ndarray, z: np.ndarray, loss_plus: np.ndarray, loss_minus: np.ndarray,
                loss_centre: float, cfg: NESConfig,
                bounds: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """One separable-NES update of the per-coordinate scale (see the module docstring), kept within
    ``bounds`` (``sigma_bounds``; default ``[sigma_min, sigma_max]``)."""
    low, high = (cfg.sigma_min, cfg.sigma_max) if bounds is None else bounds
    if cfg.sigma_lr == 0:
        return np.asarray(sigma, dtype=np.float64)
    lp, lm = np.asarray(loss_plus, dtype=np.float64), np.asarray(loss_minus, dtype=np.float64)
    u = (lp + lm) / 2 - loss_centre
    spread = np.concatenate([lp, lm, [loss_centre]]).std()
    if spread <= 0:
        return np.asarray(sigma, dtype=np.float64)
    grad_log_sigma = (u[:, None] * (np.asarray(z) ** 2 - 1)).mean(axis=0) / spread
    return np.clip(sigma * np.exp(-cfg.sigma_lr / 2 * grad_log_sigma), low, high)
