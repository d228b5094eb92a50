"""Paired significance tests over per-query scores, with multiple-comparison corrections.

The t statistic is computed here from its definition; only the Student t distribution's
tail comes from scipy. Unit tests check both against ``scipy.stats.ttest_rel``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import special


def paired_ttest(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Two-sided paired t-test of H0: mean(a - b) = 0; returns (t, p).

    t = mean(d) / (sd(d) / sqrt(n)) with d = a - b and sd the sample standard deviation
    (n - 1 degrees of freedom). Identical samples give (0, 1); a constant non-zero
    difference gives (±inf, 0). Needs at least two pairs.
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(
            f"paired samples must be 1-D and of equal length, got {x.shape} and {y.shape}"
        )
    n = x.size
    if n < 2:
        raise ValueError("a paired t-test needs at least two pairs")
    d = x - y
    mean = float(d.mean())
    sd = float(d.std(ddof=1))
    if sd == 0.0:
        if mean == 0.0:
            return 0.0, 1.0
        return math.copysign(math.inf, mean), 0.0
    t = mean / (sd / math.sqrt(n))
    p = 2.0 * _student_t_sf(abs(t), n - 1)
    return t, min(1.0, p)


def _student_t_sf(t: float, df: int) -> float:
    """Upper tail P(T > t) of Student's t with ``df`` degrees of freedom, via the regularised beta."""
    x = df / (df + t * t)
    return 0.5 * float(special.betainc(df / 2.0, 0.5, x))


def bonferroni(pvalues: Sequence[float]) -> list[float]:
    """Bonferroni-adjusted p-values: min(1, m * p)."""
    m = len(pvalues)
    return [min(1.0, p * m) for p in pvalues]


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (uniformly more powerful than Bonferroni, same FWER control).

    Sorted ascending, the i-th (0-based) p-value becomes max over j <= i of (m - j) * p_(j),
    capped at 1, then mapped back to the input order.
    """
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, (m - rank) * pvalues[i])
        adjusted[i] = min(1.0, running)
    return adjusted


CORRECTIONS = {"holm": holm, "bonferroni": bonferroni, "none": lambda p: list(p)}


def correct(pvalues: Sequence[float], method: str) -> list[float]:
    """Adjust p-values for multiple comparisons with ``holm``, ``bonferroni`` or ``none``."""
    if method not in CORRECTIONS:
        raise ValueError(f"unknown correction '{method}', expected one of {sorted(CORRECTIONS)}")
    return CORRECTIONS[method](pvalues)
