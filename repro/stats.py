"""The statistics every comparison of seeds shares: the mean with its 95% t-interval.

A proxy accuracy from one seed is a draw, not a measurement (docs/proxy_protocol.md); several seeds of one cell
are summarised as their mean and the half-width of the Student-t interval of that mean, which is what the
tables print as ``mean ± half (n=k)`` and the plots draw as error bars.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass


def t_half_width(values: list[float], level: float = 0.95) -> float:
    """Half-width of the two-sided ``level`` t-interval of the mean of ``values``; NaN for fewer than two."""
    if not 0 < level < 1:
        raise ValueError(f"level={level!r} must lie strictly between 0 and 1 (0.95 for a 95% interval)")
    if len(values) < 2:
        return float("nan")
    from scipy import stats

    return float(stats.t.ppf(0.5 + level / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values)))


def detectable_difference(sd: float, n: int, level: float = 0.95, power: float = 0.8) -> float:
    """The smallest difference between two cells' means (n seeds each, within-cell sd ``sd``) that a
    two-sided t-test at ``level`` finds with probability ``power``: (t_{1-a/2} + t_{power}) * sd * sqrt(2/n),
    with 2(n - 1) degrees of freedom (the usual normal approximation with t quantiles)."""
    if n < 2:
        return float("inf")
    from scipy import stats

    dof = 2 * (n - 1)
    return float((stats.t.ppf(0.5 + level / 2, dof) + stats.t.ppf(power, dof)) * sd * math.sqrt(2 / n))


def welch_interval(a: list[float], b: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """The difference of means ``mean(b) - mean(a)`` and its two-sided ``level`` Welch interval (unequal
    variances, Welch-Satterthwaite degrees of freedom), as ``(difference, low, high)``; NaN bounds when either
    sample has fewer than two values."""
    if not 0 < level < 1:
        raise ValueError(f"level={level!r} must lie strictly between 0 and 1 (0.95 for a 95% interval)")
    diff = statistics.mean(b) - statistics.mean(a)
    if len(a) < 2 or len(b) < 2:
        return diff, float("nan"), float("nan")
    from scipy import stats

    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, diff, diff
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = float(stats.t.ppf(0.5 + level / 2, dof)) * se
    return diff, diff - half, diff + half


@dataclass(frozen=True)
class Effect:
    """A paired effect (ours minus the other row's top-1, same seed, in points) over one or several columns:
    its mean, the two-sided 95% t-interval, the degrees of freedom, the pairs it rests on, the standard error
    and the smallest effect the comparison could have detected (alpha 0.05 two-sided, power 0.8)."""

    mean: float
    low: float
    high: float
    n: int  # pairs (seeds x columns)
    dof: int
    se: float
    detectable: float

    @property
    def half(self) -> float:
        return (self.high - self.low) / 2

    def p_value(self, against: float = 0.0) -> float:
        """Two-sided p-value of the t-test of the mean against ``against``; NaN without degrees of freedom."""
        if self.dof < 1:
            return float("nan")
        if self.se == 0:
            return 0.0 if self.mean != against else 1.0
        from scipy import stats

        return float(2 * stats.t.sf(abs(self.mean - against) / self.se, self.dof))


def _effect(mean: float, se: float, n: int, dof: int, level: float, power: float) -> Effect:
    if dof < 1:
        nan = float("nan")
        return Effect(mean, nan, nan, n, dof, nan, float("inf"))
    from scipy import stats

    t = float(stats.t.ppf(0.5 + level / 2, dof))
    return Effect(mean, mean - t * se, mean + t * se, n, dof, se,
                  (t + float(stats.t.ppf(power, dof))) * se)


def paired_effect(differences: list[float], level: float = 0.95, power: float = 0.8) -> Effect:
    """The mean of one column's paired differences with its t-interval (n - 1 degrees of freedom)."""
    if not differences:
        raise ValueError("no paired differences: a claim's column needs a seed run for both of its rows")
    n = len(differences)
    se = statistics.stdev(differences) / math.sqrt(n) if n > 1 else float("nan")
    return _effect(statistics.mean(differences), se, n, n - 1, level, power)


def pooled_effect(columns: list[list[float]], level: float = 0.95, power: float = 0.8) -> Effect:
    """The mean of the per-column mean differences and its standard error from the within-column variances,
    sqrt(sum(var_c / n_c)) / C; each column needs at least two pairs. Degrees of freedom: Welch-Satterthwaite's,
    (sum v_c)^2 / sum(v_c^2 / (n_c - 1)) with v_c = var_c / n_c, rounded down: n - C (n pairs over C columns)
    when the columns spread alike, fewer when one column's spread dominates (with n - C the interval then
    covered 87% instead of 95%: a noisy 45M column beside quiet ones)."""
    if not columns or any(len(c) < 2 for c in columns):
        raise ValueError(f"pooling needs at least two pairs in every column; got {[len(c) for c in columns]}")
    k = len(columns)
    n = sum(map(len, columns))
    mean = statistics.mean(statistics.mean(c) for c in columns)
    v = [statistics.variance(c) / len(c) for c in columns]
    se = math.sqrt(sum(v)) / k
    denominator = sum(vc ** 2 / (len(c) - 1) for vc, c in zip(v, columns, strict=True))
    dof = n - k if denominator == 0 else min(n - k, max(1, math.floor(sum(v) ** 2 / denominator + 1e-9)))
    return _effect(mean, se, n, dof, level, power)


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given (NaN stays NaN and is not counted)."""
    order = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    m = len(order)
    adjusted = [float("nan")] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted
