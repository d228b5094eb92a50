"""Percentile-bootstrap confidence intervals of mean effectiveness, resampling queries.

The input of :func:`ci_table` is a *long* per-query frame, one row per (language, system,
seed, query, measure) with columns ``language, system, seed, query_id, measure, value``.
The per-query TSVs of :mod:`optical_clir.evaluation.measures` are *wide* (index ``qid``,
one column per measure) and carry no language, system or seed; :func:`per_query_long` and
:func:`read_per_query_long` turn a set of them, keyed by ``(language, system, seed)``, into
the long frame.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "CI_COLUMNS",
    "LONG_COLUMNS",
    "bootstrap_mean_ci",
    "ci_table",
    "per_query_long",
    "read_per_query_long",
    "seed_averaged",
]

LONG_COLUMNS = ("language", "system", "seed", "query_id", "measure", "value")
CI_COLUMNS = (
    "language",
    "system",
    "measure",
    "mean",
    "low",
    "high",
    "n_queries",
    "n_seeds",
    "confidence",
)

# Resampled indices are drawn in blocks of about this many entries to bound memory.
_BLOCK_ENTRIES = 1 << 22


def bootstrap_mean_ci(
    values: Sequence[float] | np.ndarray,
    n_resamples: int = 10000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``(mean, low, high)``: the sample mean and its percentile-bootstrap interval.

    Each of ``n_resamples`` resamples draws ``len(values)`` values with replacement (one
    per query); the interval is the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2``
    quantiles of the resample means. Deterministic for a ``seed``. A single value or a
    constant sample gives ``(v, v, v)``.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"values must be 1-D, got shape {x.shape}")
    if x.size == 0:
        raise ValueError("cannot bootstrap an empty sample")
    if not np.isfinite(x).all():
        raise ValueError("values must be finite (no NaN or inf)")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    n = x.size
    if n == 1 or np.all(x == x[0]):
        v = float(x[0])
        return v, v, v
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples, dtype=np.float64)
    block = max(1, _BLOCK_ENTRIES // n)
    for start in range(0, n_resamples, block):
        rows = min(block, n_resamples - start)
        idx = rng.integers(0, n, size=(rows, n))
        means[start : start + rows] = x[idx].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(x.mean()), float(low), float(high)


def _check_long(frame: pd.DataFrame, needed: Sequence[str]) -> None:
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"per-query frame lacks columns {missing}; has {list(frame.columns)}")


def seed_averaged(per_query: pd.DataFrame, measure: str) -> pd.DataFrame:
    """Each query's ``measure`` averaged over seeds, per (language, system).

    Returns columns ``language, system, query_id, value, n_seeds``, queries sorted by id
    (so that the bootstrap does not depend on the row order of the input). Every seed of a
    (language, system) must cover the same queries, once each (otherwise the seed average
    would mix different query sets); a frame without a ``seed`` column is one seed.
    """
    _check_long(per_query, ("language", "system", "query_id", "measure", "value"))
    rows = per_query[per_query["measure"] == measure]
    if rows.empty:
        known = sorted(per_query["measure"].astype(str).unique())
        raise ValueError(f"no rows for measure {measure!r}; measures present: {known}")
    if "seed" not in rows.columns:
        rows = rows.assign(seed=0)
    keys = ["language", "system", "seed", "query_id"]
    duplicated = rows.duplicated(keys)
    if duplicated.any():
        first = rows[duplicated].iloc[0]
        raise ValueError(
            f"duplicate rows for {dict(first[keys])} (measure {measure!r}); "
            "expected one value per (language, system, seed, query)"
        )
    out = []
    for (language, system), group in rows.groupby(["language", "system"], sort=False):
        query_sets = {
            seed: frozenset(g["query_id"]) for seed, g in group.groupby("seed", sort=False)
        }
        if len(set(query_sets.values())) > 1:
            sizes = {seed: len(q) for seed, q in query_sets.items()}
            raise ValueError(
                f"{language}/{system}: the seeds were evaluated on different queries "
                f"(queries per seed: {sizes})"
            )
        # Sorted by query id, so that the resamples (hence the CI) do not depend on row order.
        mean = group.groupby("query_id", sort=True)["value"].mean()
        out.append(
            pd.DataFrame(
                {
                    "language": language,
                    "system": system,
                    "query_id": mean.index,
                    "value": mean.to_numpy(dtype=np.float64),
                    "n_seeds": len(query_sets),
                }
            )
        )
    return pd.concat(out, ignore_index=True)


def ci_table(
    per_query: pd.DataFrame,
    measure: str,
    n_resamples: int = 10000,
    confidence: float = 0.95,
    bootstrap_seed: int = 0,
) -> pd.DataFrame:
    """Mean ``measure`` and its bootstrap CI per (language, system), resampling queries.

    ``per_query`` is the long frame (columns ``language, system, seed, query_id, measure,
    value``; see :func:`per_query_long`). With several training seeds, each query's value
    is first averaged over the seeds and the bootstrap then resamples queries only, so the
    interval reflects query sampling, not seed variance: our choice, not the paper's.
    Every group uses the same ``bootstrap_seed`` (groups with equally many queries share
    their resample indices). Returns :data:`CI_COLUMNS`, groups in order of appearance.
    """
    averaged = seed_averaged(per_query, measure)
    rows = []
    for (language, system), group in averaged.groupby(["language", "system"], sort=False):
        mean, low, high = bootstrap_mean_ci(
            group["value"].to_numpy(), n_resamples, confidence, bootstrap_seed
        )
        rows.append(
            {
                "language": language,
                "system": system,
                "measure": measure,
                "mean": mean,
                "low": low,
                "high": high,
                "n_queries": len(group),
                "n_seeds": int(group["n_seeds"].iloc[0]),
                "confidence": confidence,
            }
        )
    return pd.DataFrame(rows, columns=list(CI_COLUMNS))


def per_query_long(tables: Mapping[tuple[str, str, int], pd.DataFrame]) -> pd.DataFrame:
    """Wide per-query tables (index ``qid``, one column per measure, as written by
    :func:`optical_clir.evaluation.measures.write_per_query`) keyed by ``(language, system,
    seed)`` -> the long frame with columns :data:`LONG_COLUMNS`."""
    parts = []
    for (language, system, seed), table in tables.items():
        long = (
            table.rename_axis("query_id")
            .reset_index()
            .melt(id_vars="query_id", var_name="measure", value_name="value")
        )
        parts.append(long.assign(language=language, system=system, seed=seed))
    if not parts:
        return pd.DataFrame(columns=list(LONG_COLUMNS))
    frame = pd.concat(parts, ignore_index=True)[list(LONG_COLUMNS)]
    frame["query_id"] = frame["query_id"].astype(str)
    frame["value"] = frame["value"].astype(np.float64)
    return frame


def read_per_query_long(paths: Mapping[tuple[str, str, int], str | Path]) -> pd.DataFrame:
    """Read per-query TSVs keyed by ``(language, system, seed)`` into the long frame."""
    from optical_clir.evaluation.measures import read_per_query

    return per_query_long({key: read_per_query(path) for key, path in paths.items()})
