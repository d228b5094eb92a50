"""The benchmark scripts' pure helpers (no timing is checked): the OT comparison's plans
agree with POT's, and the workload builders make what the benchmarks say they time."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import _common  # noqa: E402
import bm25_threads  # noqa: E402
import distill_throughput  # noqa: E402
import encode_throughput  # noqa: E402
import gpu_check  # noqa: E402
import ot_sinkhorn  # noqa: E402
import scale  # noqa: E402


def _random_batch(seed: int) -> ot_sinkhorn.OTBatch:
    g = torch.Generator().manual_seed(seed)
    s, t = torch.randn(3, 5, 16, generator=g), torch.randn(3, 7, 16, generator=g)
    s_mask = torch.arange(5)[None] < torch.tensor([5, 3, 4])[:, None]
    t_mask = torch.arange(7)[None] < torch.tensor([7, 6, 2])[:, None]
    return ot_sinkhorn.batch_from_vectors(s, s_mask, t, t_mask)


def test_ot_benchmark_sides_compute_the_same_plan() -> None:
    problem = _random_batch(1)
    mine, _ = ot_sinkhorn.ours(problem, 0.1, 5000, 1e-9)
    theirs, _ = ot_sinkhorn.peer(problem, 0.1, 5000, 1e-9)
    assert ot_sinkhorn.max_plan_difference(mine, theirs) < 1e-5
    assert mine[1, 3:].abs().sum() == 0 and theirs[2, :, 2:].abs().sum() == 0


def test_ot_benchmark_detects_a_wrong_plan() -> None:
    problem = _random_batch(2)
    mine, _ = ot_sinkhorn.ours(problem, 0.1, 5000, 1e-9)
    assert ot_sinkhorn.max_plan_difference(mine, mine.flip(1)) > 1e-3


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


def test_bm25_benchmark_compares_rankings_and_builds_the_peer_command(tmp_path: Path) -> None:
    a, b = tmp_path / "a.run", tmp_path / "b.run"
    a.write_text("q1 Q0 d1 1 2.500000 t\nq1 Q0 d2 2 1.250000 t\n")
    b.write_text("q1 Q0 d1 1 2.500040 Anserini\nq1 Q0 d2 2 1.250000 Anserini\n")
    assert bm25_threads.same_rankings(a, b)  # scores to four decimals, other tag
    b.write_text("q1 Q0 d2 1 2.500000 Anserini\nq1 Q0 d1 2 1.250000 Anserini\n")
    assert not bm25_threads.same_rankings(a, b)
    b.write_text("q1 Q0 d1 1 2.600000 Anserini\nq1 Q0 d2 2 1.250000 Anserini\n")
    assert not bm25_threads.same_rankings(a, b)
    argv = bm25_threads.peer_argv(tmp_path / "idx", tmp_path / "q.tsv", a, 1000, 2)
    assert argv[0] == "pyserini.search.lucene"
    flags = {
        flag: (value if not value.startswith("--") else None)
        for flag, value in zip(argv[1:], [*argv[2:], "--"], strict=True)
        if flag.startswith("--")
    }
    assert "--bm25" in flags and flags["--bm25"] is None
    assert flags["--threads"] == "2" and flags["--batch-size"] == "128"
    assert (flags["--k1"], flags["--b"], flags["--hits"]) == ("0.9", "0.4", "1000")


def test_gpu_check_writes_the_synthetic_collection(tmp_path: Path) -> None:
    import json

    path = tmp_path / "docs.jsonl"
    assert gpu_check.synthetic_documents(path, 700) == 700
    docs = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(docs) == 700 and len({d["id"] for d in docs}) == 700
    demo = [json.loads(line) for line in gpu_check.DOCS.read_text().splitlines()]
    # the demo passages cycled, words shuffled
    assert sorted(docs[len(demo)]["text"].split()) == sorted(demo[0]["text"].split())


def test_scale_benchmark_peer_ranks_like_the_new_search(tmp_path: Path) -> None:
    """The old per-batch loop kept as the scale benchmark's peer finds the same top
    documents as today's search, on a small synthetic collection of several shards."""
    from optical_clir.models.tiny import save_tiny_encoder
    from optical_clir.retrieval.dense import encode_documents, search

    docs, queries = tmp_path / "docs.jsonl", tmp_path / "q.tsv"
    scale.write_collection(docs, 150)
    scale.write_queries(queries, 40)
    assert len(docs.read_text().splitlines()) == 150
    model = save_tiny_encoder(tmp_path / "m", seed=0, dim=8, doc_max_length=32)
    encode_documents(model, docs, tmp_path / "index", shard_size=60, device="cpu")
    run, old = tmp_path / "run.trec", tmp_path / "old.json"
    search(model, tmp_path / "index", queries, run, k=10, device="cpu")
    scale.old_search(
        str(model), str(tmp_path / "index"), str(queries), str(old), k=10, device="cpu"
    )
    assert scale.same_top(old, run) == 1.0
    ranked = scale.run_rankings(run)
    assert scale.recall_at(ranked, ranked, 10) == 1.0
    assert scale.recall_at({q: v[:5] for q, v in ranked.items()}, ranked, 10) == 0.5
