"""The benchmark scripts' pure helpers (no timing is checked): the OT comparison's plans
agree with POT's, and the workload builders make what the benchmarks say they time."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import _common  # noqa: E402
import bm25_threads  # noqa: E402
import distill_throughput  # noqa: E402
import encode_throughput  # noqa: E402
import ot_sinkhorn  # noqa: E402


@pytest.mark.parametrize("ragged", [False, True])
@pytest.mark.parametrize("method", list(ot_sinkhorn.POT_METHODS))
def test_ot_benchmark_plans_agree_with_pot(ragged: bool, method: str) -> None:
    problem = ot_sinkhorn.make_batch(3, 5, 7, dim=16, ragged=ragged, seed=1)
    ours = ot_sinkhorn.ours_plans(problem, epsilon=0.1, n_iters=30)
    pot = ot_sinkhorn.pot_plans(ot_sinkhorn.pot_inputs(problem, "numpy"), 0.1, 30, method)
    assert [p.shape for p in pot] == [(x, y) for x, y in problem.lengths]
    assert ot_sinkhorn.max_plan_difference(ours, pot, problem.lengths) < 1e-4
    if ragged:
        assert any(x < 5 or y < 7 for x, y in problem.lengths)


def test_ot_benchmark_detects_a_wrong_plan() -> None:
    problem = ot_sinkhorn.make_batch(2, 4, 6, dim=8, seed=2)
    ours = ot_sinkhorn.ours_plans(problem, epsilon=0.1, n_iters=30)
    pot = ot_sinkhorn.pot_plans(ot_sinkhorn.pot_inputs(problem, "numpy"), 0.1, 30, "sinkhorn_log")
    pot[1] = pot[1][::-1].copy()  # rows swapped: a different plan
    assert ot_sinkhorn.max_plan_difference(ours, pot, problem.lengths) > 1e-3


def test_workload_builders(tmp_path: Path) -> None:
    queries = bm25_threads.repeated_queries(tmp_path / "q.tsv", 130)
    assert len(queries) == 130 and len(set(queries)) == 130
    lines = (tmp_path / "q.tsv").read_text().splitlines()
    assert len(lines) == 130 and all(len(line.split("\t")) == 2 for line in lines)

    texts = encode_throughput.repeated_collection(tmp_path / "d.jsonl", 2)
    n_demo = len(encode_throughput.DOCS.read_text().splitlines())
    assert len(texts) == 2 * n_demo == len((tmp_path / "d.jsonl").read_text().splitlines())
    assert texts[:n_demo] == texts[n_demo:]

    assert distill_throughput.step_times_from_stamps([1.0, 1.5, 2.5]) == [0.5, 1.0]


def test_common_helpers() -> None:
    calls = []
    times = _common.time_calls(lambda: calls.append(1), repeats=3, warmup=2)
    assert len(times) == 3 and len(calls) == 5
    both = _common.time_interleaved({"a": lambda: None, "b": lambda: None}, repeats=2)
    assert {k: len(v) for k, v in both.items()} == {"a": 2, "b": 2}
    table = _common.markdown_table(["x", "y"], [[1, 2]])
    assert table.splitlines() == ["| x | y |", "| --- | --- |", "| 1 | 2 |"]
    info = _common.machine_info()
    assert info["cpu_count"] and info["torch_threads"] >= 1
