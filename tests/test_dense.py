"""Dense indexing and search: brute-force equality, shard invariance, run format, faiss (faiss-cpu)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from optical_clir.errors import ConfigError, InputError
from optical_clir.models.encoder import TokenEncoder
from optical_clir.models.scoring import dot_scores, maxsim_scores
from optical_clir.models.tiny import ACTIONS, ANIMALS, PLACES, save_tiny_backbone
from optical_clir.retrieval import dense
from optical_clir.retrieval.backends import describe_backends
from optical_clir.retrieval.dense import (
    NpyRows,
    SearchSettings,
    TopK,
    autocast_dtype,
    build_ann_index,
    encode_documents,
    load_manifest,
    maxsim_flat,
    search,
    select_topk,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list]:
    root = tmp_path_factory.mktemp("dense")
    rng = np.random.default_rng(0)
    docs = []
    for i in range(23):
        words = [str(rng.choice(w)) for w in (ANIMALS, ACTIONS, PLACES)]
        words = words[: 1 + i % 3]  # different lengths
        docs.append({"id": f"D{i}", "title": "the" if i % 2 else "", "text": " ".join(words)})
    docs_path = root / "docs.jsonl"
    docs_path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    queries = root / "queries.tsv"
    queries.write_text("q1\twhere does the cat sleep\nq2\tthe big dog runs\nq3\tfish in the lake\n")
    return docs_path, queries, docs


def _model(tmp: Path, scoring: str) -> Path:
    torch.manual_seed(0)
    backbone = save_tiny_backbone(tmp / "bb", seed=5)
    enc = TokenEncoder({"backbone": str(backbone), "dim": 8, "scoring": scoring})
    return enc.save_pretrained(tmp / "model")


def _read_run(path: Path) -> dict[str, list[tuple[str, int, float]]]:
    run: dict[str, list[tuple[str, int, float]]] = {}
    for line in path.read_text().splitlines():
        qid, q0, docid, rank, score, tag = line.split(" ")
        assert q0 == "Q0" and tag == "test-tag"
        run.setdefault(qid, []).append((docid, int(rank), float(score)))
    return run


def _brute_force(model_dir: Path, docs: list[dict], queries: Path) -> dict[str, list[tuple]]:
    enc = TokenEncoder.from_pretrained(model_dir, device="cpu")
    texts = [f"{d['title']} {d['text']}" if d["title"] else d["text"] for d in docs]
    qs = [line.split("\t") for line in queries.read_text().splitlines()]
    with torch.no_grad():
        if enc.config.scoring == "maxsim":
            d, dm = enc.encode_tokens(texts)
            q, qm = enc.encode_tokens([t for _, t in qs], enc.config.query_max_length)
            scores = maxsim_scores(q, qm, d, dm)
        else:
            scores = dot_scores(enc.encode_pooled([t for _, t in qs], 32), enc.encode_pooled(texts))
    out = {}
    for i, (qid, _) in enumerate(qs):
        order = sorted(range(len(docs)), key=lambda j: -float(scores[i, j]))
        out[qid] = [(docs[j]["id"], float(scores[i, j])) for j in order]
    return out


@pytest.mark.parametrize("scoring", ["maxsim", "dot"])
def test_search_equals_brute_force_and_shard_invariant(collection, tmp_path, scoring) -> None:
    docs_path, queries, docs = collection
    model_dir = _model(tmp_path, scoring)
    expected = _brute_force(model_dir, docs, queries)
    runs = []
    for shard_size, batch_size in ((100, 8), (5, 3), (7, 4)):
        index = tmp_path / f"index-{shard_size}"
        manifest = encode_documents(
            model_dir,
            docs_path,
            index,
            batch_size=batch_size,
            shard_size=shard_size,
            dtype="float32",
            device="cpu",
        )
        assert manifest["num_docs"] == 23 and load_manifest(index) == manifest
        assert len(manifest["shards"]) == -(-23 // shard_size)
        assert all(s["num_docs"] <= shard_size for s in manifest["shards"])
        run_path = tmp_path / f"run-{shard_size}.txt"
        n = search(
            model_dir, index, queries, run_path, k=10, run_tag="test-tag", doc_chunk=4, device="cpu"
        )
        assert n == 30
        runs.append(_read_run(run_path))
    # same ranking whatever the shards and batches (scores may differ in the last float bits)
    for run in runs[1:]:
        assert {q: [r[:2] for r in v] for q, v in run.items()} == {
            q: [r[:2] for r in v] for q, v in runs[0].items()
        }
        for qid in run:
            assert [r[2] for r in run[qid]] == pytest.approx([r[2] for r in runs[0][qid]], abs=1e-5)
    for qid, ranked in runs[0].items():
        assert [r[1] for r in ranked] == list(range(1, 11))
        assert [r[0] for r in ranked] == [d for d, _ in expected[qid][:10]]
        assert [r[2] for r in ranked] == pytest.approx([s for _, s in expected[qid][:10]], abs=1e-5)


def test_float16_index_and_k_larger_than_collection(collection, tmp_path) -> None:
    docs_path, queries, docs = collection
    model_dir = _model(tmp_path, "maxsim")
    index = tmp_path / "index"
    manifest = encode_documents(model_dir, docs_path, index, shard_size=10, device="cpu")
    assert manifest["dtype"] == "float16"
    emb = np.load(index / "shard-00000.emb.npy")
    offsets = np.load(index / "shard-00000.offsets.npy")
    assert emb.dtype == np.float16 and offsets[-1] == emb.shape[0] and len(offsets) == 11
    run = tmp_path / "run.txt"
    assert search(model_dir, index, queries, run, k=100, run_tag="test-tag", device="cpu") == 69
    got = _read_run(run)
    expected = _brute_force(model_dir, docs, queries)
    for qid, ranked in got.items():
        assert [r[2] for r in ranked] == pytest.approx([s for _, s in expected[qid]], abs=2e-2)


def test_errors(collection, tmp_path, monkeypatch) -> None:
    docs_path, queries, _ = collection
    model_dir = _model(tmp_path, "dot")
    index = tmp_path / "index"
    encode_documents(model_dir, docs_path, index, device="cpu")
    with pytest.raises(ConfigError, match="needs the ANN index"):
        search(model_dir, index, queries, tmp_path / "r", backend="faiss_ivf")
    with pytest.raises(ConfigError, match="backend"):
        search(model_dir, index, queries, tmp_path / "r", backend="annoy")
    with pytest.raises(InputError, match="manifest"):
        search(model_dir, tmp_path, queries, tmp_path / "r")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "x"}\n{"id": "b"}\n')
    with pytest.raises(InputError) as err:
        encode_documents(model_dir, bad, tmp_path / "idx2", device="cpu")
    assert err.value.line == 2 and not (tmp_path / "idx2").exists()
    other = TokenEncoder.from_pretrained(_model(tmp_path / "m2", "maxsim"), device="cpu")
    with pytest.raises(ConfigError, match="does not match"):
        search(model_dir, index, queries, tmp_path / "r", encoder=other)


def _ranked(run: dict) -> dict:
    return {q: [r[0] for r in v] for q, v in run.items()}


@pytest.mark.parametrize("scoring", ["maxsim", "dot"])
def test_faiss_ivf_with_every_list_probed_equals_exact(collection, tmp_path, scoring) -> None:
    """With every inverted list searched and enough candidates, the candidate stage misses
    nothing, and the candidates' scores are the exact ones."""
    docs_path, queries, _ = collection
    model_dir = _model(tmp_path, scoring)
    index = tmp_path / "index"
    encode_documents(model_dir, docs_path, index, shard_size=9, dtype="float32", device="cpu")
    meta = build_ann_index(index, tmp_path / "ann", {"nlist": 4, "train_vectors": 1000})
    assert meta["ntotal"] == (
        sum(s.get("num_tokens", s["num_docs"]) for s in load_manifest(index)["shards"])
    )
    exact, approx = tmp_path / "exact.txt", tmp_path / "faiss.txt"
    search(model_dir, index, queries, exact, k=5, run_tag="test-tag", device="cpu")
    search(
        model_dir, index, queries, approx, k=5, backend="faiss_ivf", ann_dir=tmp_path / "ann",
        ann={"nprobe": 4, "k_tokens": 1000, "query_chunk": 2}, run_tag="test-tag", device="cpu",
    )  # fmt: skip
    a, b = _read_run(exact), _read_run(approx)
    assert _ranked(a) == _ranked(b)
    for qid in a:
        assert [x[2] for x in a[qid]] == pytest.approx([x[2] for x in b[qid]], abs=1e-5)


def test_faiss_ivf_ranks_only_candidates_with_exact_scores(collection, tmp_path) -> None:
    """One nearest token per query token: few candidates, each scored with exact MaxSim."""
    docs_path, queries, _ = collection
    model_dir = _model(tmp_path, "maxsim")
    index = tmp_path / "index"
    encode_documents(model_dir, docs_path, index, shard_size=7, dtype="float32", device="cpu")
    build_ann_index(index, tmp_path / "ann", {"nlist": 2})
    exact, approx = tmp_path / "exact.txt", tmp_path / "faiss.txt"
    search(model_dir, index, queries, exact, k=100, run_tag="test-tag", device="cpu")
    search(
        model_dir, index, queries, approx, k=100, backend="faiss_ivf", ann_dir=tmp_path / "ann",
        ann={"nprobe": 1, "k_tokens": 1}, run_tag="test-tag", device="cpu",
    )  # fmt: skip
    full = {q: {d: s for d, _, s in v} for q, v in _read_run(exact).items()}
    got = _read_run(approx)
    assert got.keys() == full.keys()
    for qid, ranked in got.items():
        assert 1 <= len(ranked) < 23  # the query's candidates only
        for docid, _, score in ranked:
            assert score == pytest.approx(full[qid][docid], abs=1e-5)


def test_faiss_ivf_errors(collection, tmp_path, monkeypatch) -> None:
    docs_path, queries, _ = collection
    model_dir = _model(tmp_path, "maxsim")
    index, other = tmp_path / "index", tmp_path / "other"
    encode_documents(model_dir, docs_path, index, device="cpu")
    with pytest.raises(ConfigError, match="pq_m"):
        build_ann_index(index, tmp_path / "ann", {"nlist": 2, "pq_m": 3})
    with pytest.raises(ConfigError, match=r"dense\.ann\.nprob"):
        build_ann_index(index, tmp_path / "ann", {"nprob": 2})
    half = tmp_path / "half.jsonl"
    half.write_text("".join(docs_path.read_text().splitlines(keepends=True)[:10]))
    encode_documents(model_dir, half, other, device="cpu")
    build_ann_index(other, tmp_path / "ann-other", {"nlist": 2})
    with pytest.raises(InputError, match="another dense index"):
        search(
            model_dir, index, queries, tmp_path / "r", backend="faiss_ivf",
            ann_dir=tmp_path / "ann-other", device="cpu",
        )  # fmt: skip
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss -> ImportError
    with pytest.raises(ConfigError, match="faiss-cpu"):
        build_ann_index(index, tmp_path / "ann", {"nlist": 2})


def test_each_shard_is_read_once_for_all_queries(collection, tmp_path, monkeypatch) -> None:
    """70 queries in 9 encoder batches: every shard's vectors are read once in all."""
    docs_path, _, _ = collection
    model_dir = _model(tmp_path, "maxsim")
    index = tmp_path / "index"
    manifest = encode_documents(model_dir, docs_path, index, shard_size=8, device="cpu")
    words = [*ANIMALS, *ACTIONS, *PLACES]
    queries = tmp_path / "q.tsv"
    queries.write_text(
        "".join(f"q{i}\tthe {words[i % 24]} {words[(5 * i) % 24]}\n" for i in range(70))
    )
    reads: list[Path] = []
    real_read = NpyRows.read

    def counting_read(self, start, stop):
        reads.append(self.path.name)
        return real_read(self, start, stop)

    monkeypatch.setattr(NpyRows, "read", counting_read)
    run = tmp_path / "run.txt"
    search(model_dir, index, queries, run, k=3, batch_size=8, run_tag="test-tag", device="cpu")
    assert sorted(reads) == sorted(f"{s['name']}.emb.npy" for s in manifest["shards"])
    # a small similarity budget and query chunks change nothing but the memory
    reads.clear()
    small = tmp_path / "run-small.txt"
    settings = SearchSettings(sim_elements=64, query_tokens=16, block_docs=3)
    search(
        model_dir, index, queries, small, k=3, settings=settings, run_tag="test-tag", device="cpu"
    )
    assert len(reads) == sum(-(-s["num_docs"] // 3) for s in manifest["shards"])
    a, b = _read_run(run), _read_run(small)
    assert _ranked(a) == _ranked(b)
    for qid in a:
        assert [x[2] for x in a[qid]] == pytest.approx([x[2] for x in b[qid]], abs=1e-5)


def test_maxsim_flat_equals_padded_maxsim() -> None:
    g = torch.Generator().manual_seed(3)
    q_len = np.array([3, 1, 4])
    d_len = np.array([2, 0, 5, 1, 3])  # an empty document scores 0
    q = torch.randn(int(q_len.sum()), 6, generator=g)
    d = torch.randn(int(d_len.sum()), 6, generator=g)

    def padded(flat, lengths):
        out = torch.zeros(len(lengths), int(lengths.max()), flat.shape[1])
        mask = torch.arange(int(lengths.max()))[None] < torch.from_numpy(lengths)[:, None]
        out[mask] = flat
        return out, mask

    expected = maxsim_scores(*padded(q, q_len), *padded(d, d_len))
    for budget in (1, 7, 10**6):
        got = maxsim_flat(q, q_len, d, d_len, budget)
        assert torch.allclose(got, expected, atol=1e-5)
    assert float(got[:, 1].abs().max()) == 0.0
    # the GPU's kernels (a scatter max, a segment sum) give the same, here on the CPU
    sim = q @ d.T
    tokmax = dense._segment_max_torch(sim, d_len)
    assert torch.allclose(tokmax, dense._segment_max(sim, d_len))
    half = dense._segment_max_torch(sim.half(), d_len)
    assert half.dtype == torch.float16 and torch.allclose(half.float(), tokmax, atol=1e-2)
    summed = dense._sum_per_query_torch(tokmax, q_len)
    assert torch.allclose(summed, dense._sum_per_query(tokmax, q_len), atol=1e-5)
    assert torch.allclose(summed, expected, atol=1e-5)


def test_topk_keeps_the_earliest_of_tied_documents() -> None:
    scores = torch.tensor([[1.0, 2.0, 2.0, 0.5, 2.0, 2.0]])
    values, cols = select_topk(scores, 3)
    assert cols.tolist() == [[1, 2, 4]] and values.tolist() == [[2.0, 2.0, 2.0]]
    top = TopK(1, 3)
    top.update(scores[:, :3], 0)
    top.update(scores[:, 3:], 3)
    assert top.index.tolist() == [[1, 2, 4]]
    top = TopK(2, 2)
    top.update(torch.tensor([[0.1, 0.3]]), torch.tensor([5, 9]), slice(1, 2))
    assert top.index.tolist() == [[-1, -1], [9, 5]]
    assert top.scores[0].tolist() == [float("-inf")] * 2


def test_encoding_in_worker_processes_equals_in_process(collection, tmp_path) -> None:
    docs_path, _, _ = collection
    model_dir = _model(tmp_path, "maxsim")
    one = encode_documents(
        model_dir, docs_path, tmp_path / "a", batch_size=3, shard_size=5, sort_window=4,
        dtype="float32", device="cpu", loader_workers=0,
    )  # fmt: skip
    two = encode_documents(
        model_dir, docs_path, tmp_path / "b", batch_size=3, shard_size=5, sort_window=4,
        dtype="float32", device="cpu", loader_workers=2,
    )  # fmt: skip
    assert one["shards"] == two["shards"]
    for shard in one["shards"]:
        name = shard["name"]
        assert (tmp_path / "a" / f"{name}.ids.json").read_text() == (
            tmp_path / "b" / f"{name}.ids.json"
        ).read_text()
        assert np.allclose(
            np.load(tmp_path / "a" / f"{name}.emb.npy"),
            np.load(tmp_path / "b" / f"{name}.emb.npy"),
            atol=1e-6,
        )
    bad = tmp_path / "bad.jsonl"
    bad.write_text(docs_path.read_text() + '{"id": "D0", "text": "again"}\n')
    with pytest.raises(InputError, match="duplicate document id") as err:
        encode_documents(model_dir, bad, tmp_path / "c", device="cpu", loader_workers=2)
    assert err.value.line == 24 and not (tmp_path / "c").exists()


def test_precision_choice() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert autocast_dtype("auto", cpu) is None and autocast_dtype("auto", cuda) == torch.float16
    assert autocast_dtype("bf16", cpu) == torch.bfloat16 and autocast_dtype("no", cuda) is None
    assert autocast_dtype("fp16", cpu) is None
    with pytest.raises(ConfigError, match=r"dense\.precision"):
        autocast_dtype("half", cpu)
    assert dense.default_nlist(10**6) == 4096 and dense.default_nlist(100) == 2


def test_the_tables_say_how_each_collection_was_searched() -> None:
    cfg = {"backend": "exact", "backend_by_collection": {}, "ann": {}}
    assert describe_backends(cfg, ["a", "b"]) == (
        "Dense retrieval: exact MaxSim over every document."
    )
    cfg = {
        "backend": "exact",
        "backend_by_collection": {"b": "faiss_ivf"},
        "ann": {"nlist": 64, "pq_m": 16, "nprobe": 8, "k_tokens": 32, "threads": 4},
    }
    line = describe_backends(cfg, ["a", "b"])
    assert line.startswith("Dense retrieval on b: ColBERT's two stages")
    assert "IVF64,PQ16" in line and "nprobe 8" in line and "32 nearest tokens" in line
    assert line.endswith("exact MaxSim on the other collections.")
