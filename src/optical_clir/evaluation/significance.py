"""Paired significance tests over per-query scores, with multiple-comparison corrections.

Two tests, as the field runs them (Smucker, Allan and Carterette, CIKM 2007): the paired
two-sided t-test (``scipy.stats.ttest_rel``) and the paired randomization test
(``scipy.stats.permutation_test`` swapping the two systems' scores within each query, on the
mean difference). Per-query wins, ties and losses describe the same comparison in counts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

TESTS = ("ttest", "randomization")
# Two per-query scores closer than this count as a tie (seed averages differ by rounding).
TIE_TOLERANCE = 1e-9


def _paired(a: Sequence[float], b: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(
            f"paired samples must be 1-D and of equal length, got {x.shape} and {y.shape}"
        )
    if x.size < 2:
        raise ValueError("a paired test needs at least two pairs")
    return x, y


def paired_ttest(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Two-sided paired t-test of H0: mean(a - b) = 0; returns (t, p).

    ``scipy.stats.ttest_rel``, with the degenerate cases made explicit: identical samples
    give (0, 1); a constant non-zero difference gives (±inf, 0), "identical" and "constant"
    up to :data:`TIE_TOLERANCE` (rounding must not make a t statistic). Needs two pairs.
    """
    x, y = _paired(a, b)
    d = x - y
    mean = float(d.mean())
    if np.all(np.abs(d - mean) <= TIE_TOLERANCE):
        if abs(mean) <= TIE_TOLERANCE:
            return 0.0, 1.0
        return math.copysign(math.inf, mean), 0.0
    result = stats.ttest_rel(x, y)
    return float(result.statistic), float(result.pvalue)


def _mean_difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x - y, axis=axis)


def paired_randomization_test(
    a: Sequence[float], b: Sequence[float], n_resamples: int = 10000, seed: int = 0
) -> tuple[float, float]:
    """Two-sided paired randomization test of H0: the two systems are exchangeable on every
    query; returns (mean difference, p).

    Each resample swaps ``a[i]`` and ``b[i]`` for a random subset of the queries
    (``permutation_type="samples"``); with at most ``n_resamples`` distinct swaps the test is
    exact. Identical samples (up to :data:`TIE_TOLERANCE`) give p = 1. Deterministic for a
    ``seed``.
    """
    x, y = _paired(a, b)
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    mean = float((x - y).mean())
    if np.all(np.abs(x - y) <= TIE_TOLERANCE):
        return mean, 1.0
    result = stats.permutation_test(
        (x, y),
        _mean_difference,
        permutation_type="samples",
        vectorized=True,
        n_resamples=n_resamples,
        alternative="two-sided",
        rng=np.random.default_rng(seed),
    )
    return mean, min(1.0, float(result.pvalue))


def win_tie_loss(
    a: Sequence[float], b: Sequence[float], tolerance: float = TIE_TOLERANCE
) -> tuple[int, int, int]:
    """Queries where ``a`` scores above, within ``tolerance`` of, and below ``b``."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(
            f"paired samples must be 1-D and of equal length, got {x.shape} and {y.shape}"
        )
    d = x - y
    ties = int(np.sum(np.abs(d) <= tolerance))
    wins = int(np.sum(d > tolerance))
    return wins, ties, int(d.size) - wins - ties


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
