"""The statistics every comparison of seeds shares: the mean with its 95% t-interval.

A proxy accuracy from one seed is a draw, not a measurement (docs/proxy_protocol.md); several seeds of one cell
are summarised as their mean and the half-width of the Student-t interval of that mean, which is what the
tables print as ``mean ± half (n=k)`` and the plots draw as error bars.
"""

from __future__ import annotations

import math
import statistics


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
