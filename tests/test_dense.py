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
from optical_clir.retrieval.dense import encode_documents, load_manifest, search

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
    with monkeypatch.context() as mp:
        mp.setitem(sys.modules, "faiss", None)  # faiss not installed: import fails
        with pytest.raises(ConfigError, match="faiss-cpu"):
            search(model_dir, index, queries, tmp_path / "r", backend="faiss")
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


@pytest.mark.parametrize("scoring", ["maxsim", "dot"])
def test_faiss_backend(collection, tmp_path, scoring) -> None:
    """faiss (faiss-cpu) as the candidate stage: with candidates to spare it finds the exact
    top k; with few, every document it returns carries its exact score, and for dot (a flat
    inner-product index per shard) the top ``candidates`` of the collection are still found."""
    docs_path, queries, _ = collection
    model_dir = _model(tmp_path, scoring)
    index = tmp_path / "index"
    encode_documents(model_dir, docs_path, index, shard_size=9, dtype="float32", device="cpu")
    exact, every = tmp_path / "exact.txt", tmp_path / "every.txt"
    search(model_dir, index, queries, exact, k=5, run_tag="test-tag", device="cpu")
    search(model_dir, index, queries, every, k=23, run_tag="test-tag", device="cpu")
    exact_scores = {q: {d: s for d, _, s in v} for q, v in _read_run(every).items()}

    def faiss_run(candidates: int) -> dict[str, list[tuple[str, int, float]]]:
        path = tmp_path / f"faiss-{candidates}.txt"
        search(model_dir, index, queries, path, k=5, backend="faiss",
               faiss_candidates=candidates, run_tag="test-tag", device="cpu")  # fmt: skip
        return _read_run(path)

    a, b = _read_run(exact), faiss_run(1000)
    assert a.keys() == b.keys()
    for qid in a:
        assert [x[0] for x in a[qid]] == [x[0] for x in b[qid]]
        assert [x[2] for x in a[qid]] == pytest.approx([x[2] for x in b[qid]], abs=1e-5)

    few = faiss_run(3)
    for qid, ranked in few.items():
        assert 1 <= len(ranked) <= 5
        for docid, _, score in ranked:
            assert score == pytest.approx(exact_scores[qid][docid], abs=1e-5)
        if scoring == "dot":
            assert [x[0] for x in ranked[:3]] == [x[0] for x in a[qid][:3]]
