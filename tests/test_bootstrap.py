"""Percentile bootstrap of mean effectiveness (evaluation/bootstrap.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from optical_clir.evaluation.bootstrap import (
    CI_COLUMNS,
    LONG_COLUMNS,
    bootstrap_mean_ci,
    ci_table,
    per_query_long,
    read_per_query_long,
)
from optical_clir.evaluation.measures import write_per_query


def _ap_like(n: int, seed: int) -> np.ndarray:
    """Skewed values in [0, 1], like per-query average precision."""
    return np.random.default_rng(seed).beta(0.6, 1.8, size=n)


def _long(values: dict[tuple[str, str, int], list[float]], measure: str = "AP") -> pd.DataFrame:
    rows = [
        {
            "language": lang,
            "system": system,
            "seed": seed,
            "query_id": f"q{i:03d}",  # sorts in list order
            "measure": measure,
            "value": v,
        }
        for (lang, system, seed), vals in values.items()
        for i, v in enumerate(vals)
    ]
    return pd.DataFrame(rows, columns=list(LONG_COLUMNS))


# ------------------------------------------------------------------------ bootstrap_mean_ci


def test_interval_contains_the_mean() -> None:
    x = _ap_like(50, seed=1)
    mean, low, high = bootstrap_mean_ci(x, n_resamples=2000)
    assert mean == pytest.approx(float(x.mean()))
    assert low < mean < high
    assert low >= 0.0 and high <= 1.0


def test_width_shrinks_with_more_queries() -> None:
    widths = []
    for n in (20, 200, 2000):
        _, low, high = bootstrap_mean_ci(_ap_like(n, seed=2), n_resamples=2000)
        widths.append(high - low)
    assert widths[0] > 2 * widths[1] > 4 * widths[2]


def test_agrees_with_the_normal_approximation_for_many_queries() -> None:
    x = _ap_like(3000, seed=3)
    mean, low, high = bootstrap_mean_ci(x, n_resamples=10000, confidence=0.95)
    half = 1.959964 * x.std(ddof=1) / math.sqrt(x.size)
    assert low == pytest.approx(mean - half, abs=0.08 * half)
    assert high == pytest.approx(mean + half, abs=0.08 * half)
    # and a narrower level gives a narrower interval, still near the normal one
    _, low90, high90 = bootstrap_mean_ci(x, n_resamples=10000, confidence=0.90)
    assert low < low90 < high90 < high
    assert (high90 - low90) / 2 == pytest.approx(1.644854 / 1.959964 * half, rel=0.08)


def test_matches_a_plain_loop_with_the_same_draws() -> None:
    """Independent slow computation: resample with the same generator, one mean at a time."""
    x = _ap_like(30, seed=4)
    rng = np.random.default_rng(7)
    idx = rng.integers(0, x.size, size=(500, x.size))
    means = sorted(sum(x[i] for i in row) / x.size for row in idx)
    expected = np.quantile(means, [0.05, 0.95])
    _, low, high = bootstrap_mean_ci(x, n_resamples=500, confidence=0.90, seed=7)
    assert (low, high) == pytest.approx(tuple(expected), abs=1e-12)


def test_deterministic_for_a_seed_and_different_across_seeds() -> None:
    x = _ap_like(40, seed=5)
    assert bootstrap_mean_ci(x, 1000, seed=3) == bootstrap_mean_ci(list(x), 1000, seed=3)
    assert bootstrap_mean_ci(x, 1000, seed=3) != bootstrap_mean_ci(x, 1000, seed=4)


def test_single_value_and_constant_input_give_a_point() -> None:
    assert bootstrap_mean_ci([0.25]) == (0.25, 0.25, 0.25)
    assert bootstrap_mean_ci([0.1] * 7) == (0.1, 0.1, 0.1)
    assert bootstrap_mean_ci(np.zeros(100)) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("values", "kwargs"),
    [
        ([], {}),
        ([0.1, float("nan")], {}),
        ([[0.1, 0.2]], {}),
        ([0.1, 0.2], {"confidence": 1.0}),
        ([0.1, 0.2], {"n_resamples": 0}),
    ],
)
def test_bad_input_is_rejected(values: list, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        bootstrap_mean_ci(values, **kwargs)


# --------------------------------------------------------------------------------- ci_table


def test_ci_table_one_row_per_language_and_system() -> None:
    a, b, c = _ap_like(30, 10), _ap_like(30, 11), _ap_like(25, 12)
    frame = _long({("sw", "bm25", 0): a, ("sw", "optical", 0): b, ("so", "bm25", 0): c})
    # another measure in the same frame is ignored
    frame = pd.concat([frame, _long({("sw", "bm25", 0): [1.0] * 30}, measure="nDCG@10")])
    table = ci_table(frame, "AP", n_resamples=1000, bootstrap_seed=2)
    assert list(table.columns) == list(CI_COLUMNS)
    assert list(zip(table["language"], table["system"], strict=True)) == [
        ("sw", "bm25"),
        ("sw", "optical"),
        ("so", "bm25"),
    ]
    assert table["n_queries"].tolist() == [30, 30, 25]
    assert table["n_seeds"].tolist() == [1, 1, 1]
    for values, row in zip((a, b, c), table.itertuples(), strict=True):
        assert (row.mean, row.low, row.high) == bootstrap_mean_ci(values, 1000, 0.95, 2)
        assert row.measure == "AP" and row.confidence == 0.95


def test_ci_table_averages_each_query_over_seeds_first() -> None:
    # seeds agree on which queries are hard, as real runs do: query variance dominates
    base, noise = _ap_like(40, 20), np.random.default_rng(21).normal(0, 0.02, size=(3, 40))
    s0, s1, s2 = np.clip(base + noise, 0, 1)
    frame = _long({("sw", "optical", 0): s0, ("sw", "optical", 1): s1, ("sw", "optical", 2): s2})
    frame = frame.sample(frac=1.0, random_state=0)  # row order does not matter
    row = ci_table(frame, "AP", n_resamples=2000).iloc[0]
    assert row["n_seeds"] == 3 and row["n_queries"] == 40
    per_query = (s0 + s1 + s2) / 3
    assert (row["mean"], row["low"], row["high"]) == pytest.approx(
        bootstrap_mean_ci(per_query, 2000), abs=1e-12
    )
    # the CI depends on the set of rows, not their order (up to rounding of the seed means)
    again = ci_table(frame.iloc[::-1], "AP", n_resamples=2000).iloc[0]
    cols = ["mean", "low", "high"]
    assert again[cols].tolist() == pytest.approx(row[cols].tolist(), abs=1e-12)
    # pooling the 120 (seed, query) values as if they were queries would be too narrow
    _, low, high = bootstrap_mean_ci(np.concatenate([s0, s1, s2]), 2000)
    assert high - low < row["high"] - row["low"]


def test_ci_table_without_a_seed_column_is_one_seed() -> None:
    frame = _long({("sw", "bm25", 0): [0.1, 0.4, 0.3]}).drop(columns="seed")
    row = ci_table(frame, "AP", n_resamples=100).iloc[0]
    assert row["n_seeds"] == 1 and row["mean"] == pytest.approx(0.8 / 3)


def test_ci_table_rejects_seeds_on_different_queries_and_duplicates() -> None:
    frame = _long({("sw", "optical", 0): [0.1, 0.2, 0.3], ("sw", "optical", 1): [0.1, 0.2]})
    with pytest.raises(ValueError, match="different queries"):
        ci_table(frame, "AP")
    twice = pd.concat([frame, frame])
    with pytest.raises(ValueError, match="duplicate"):
        ci_table(twice, "AP")
    with pytest.raises(ValueError, match="no rows for measure 'nDCG@10'"):
        ci_table(frame, "nDCG@10")
    with pytest.raises(ValueError, match="lacks columns"):
        ci_table(frame.drop(columns="query_id"), "AP")


def test_per_query_files_to_long_frame(tmp_path: Path) -> None:
    tables = {
        ("sw", "bm25", 0): pd.DataFrame(
            {"AP": [0.5, 0.0], "nDCG@10": [0.6, 0.1]}, index=pd.Index(["001", "7"], name="qid")
        ),
        ("sw", "optical", 1): pd.DataFrame(
            {"AP": [0.25, 1.0], "nDCG@10": [0.3, 1.0]}, index=pd.Index(["001", "7"], name="qid")
        ),
    }
    paths = {}
    for key, table in tables.items():
        paths[key] = tmp_path / f"{key[1]}-{key[2]}.tsv"
        write_per_query(table, paths[key])
    long = read_per_query_long(paths)
    assert list(long.columns) == list(LONG_COLUMNS)
    assert len(long) == 8
    ap = long[(long["system"] == "optical") & (long["measure"] == "AP")]
    assert ap["query_id"].tolist() == ["001", "7"]  # ids stay strings
    assert ap["value"].tolist() == [0.25, 1.0] and set(ap["seed"]) == {1}
    assert long.equals(per_query_long(tables))
    table = ci_table(long, "nDCG@10", n_resamples=200)
    assert table["mean"].tolist() == pytest.approx([0.35, 0.65])
