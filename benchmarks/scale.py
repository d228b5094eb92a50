"""Memory and time of indexing and search as the collection grows (20,000 to 200,000 documents).

Synthetic documents (6-20 words of the tiny test vocabulary, seeded) and queries (2-6 words),
a tiny test encoder (models/tiny.py: 2-layer BERT, 32-d token vectors), every stage in its
own process (peak resident memory from ``wait4``):

- preparing the collection (``prepare_collection``: read, check and write the documents,
  qrels of 3 documents per query checked against the document ids), BM25 indexing
  (``build_bm25_index``, one thread), dense encoding (``encode_documents``);
- exact search of 100 queries (``search``, backend exact), against the named peer: the
  search loop before this change (kept below as ``old_search``: every batch of 32 queries
  re-reads and re-pads the whole index), on the same index, same queries, same top 100;
- the candidate stage (backend faiss_ivf): building the IVF index over the document tokens
  and searching 1,000 queries, with its recall@100 against exact MaxSim on the first 100.

Targets: peak RSS of each stage at 200,000 documents within 1.3x of its peak at 20,000;
search seconds per million (query, document) pairs about the same at both sizes; the
peer's ratio printed beside. Times are one run each (the stages take minutes on 2 cores).

    .venv/bin/python benchmarks/scale.py [--sizes 20000 200000] [--device cpu|cuda] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, markdown_table, print_machine

SHARD_SIZE = 10000


# ------------------------------------------------------------------------------ workload


def write_collection(path: Path, n_docs: int, seed: int = 0) -> None:
    """``n_docs`` JSONL documents of 6-20 words from the tiny vocabulary."""
    from optical_clir.models.tiny import TOY_WORDS

    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as out:
        for i in range(n_docs):
            words = rng.choices(TOY_WORDS, k=rng.randint(6, 20))
            out.write(json.dumps({"id": f"d{i}", "title": "", "text": " ".join(words)}) + "\n")


def write_qrels(path: Path, n_queries: int, n_docs: int, seed: int = 2) -> None:
    """TREC qrels: three relevant documents per query, spread over the whole collection."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as out:
        for i in range(n_queries):
            for doc in rng.sample(range(n_docs), 3):
                out.write(f"q{i} 0 d{doc} 1\n")


def write_queries(path: Path, n_queries: int, seed: int = 1) -> None:
    """``qid<TAB>text`` queries of 2-6 content words."""
    from optical_clir.models.tiny import TOY_WORDS

    content = TOY_WORDS[20:]
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as out:
        for i in range(n_queries):
            out.write(f"q{i}\t{' '.join(rng.choices(content, k=rng.randint(2, 6)))}\n")


# ------------------------------------------------------------------------------ the peer


def old_search(
    model_dir: str,
    index_dir: str,
    queries_tsv: str,
    run_path: str,
    k: int = 1000,
    batch_size: int = 32,
    doc_chunk: int = 512,
    device: str = "auto",
    encoder: Any = None,
) -> int:
    """The exact search as it was before the single-pass search (commit 7ca5771): for every
    shard and every batch of ``batch_size`` queries, the shard is read again from its
    memory map, padded to ``[docs, longest, D]`` in chunks of ``doc_chunk`` documents and
    scored with ``maxsim_scores``; a running top-k sorted per update."""
    import numpy as np
    import torch

    from optical_clir.data.collection import read_queries
    from optical_clir.models.encoder import TokenEncoder
    from optical_clir.models.scoring import maxsim_scores
    from optical_clir.retrieval.dense import load_manifest

    class TopK:
        def __init__(self, n_queries: int, k: int) -> None:
            self.k = k
            self.scores = torch.empty(n_queries, 0)
            self.index = torch.empty(n_queries, 0, dtype=torch.long)

        def update(self, scores: torch.Tensor, first_doc: int) -> None:
            idx = torch.arange(first_doc, first_doc + scores.shape[1]).expand(scores.shape[0], -1)
            all_scores = torch.cat([self.scores, scores.float().cpu()], dim=1)
            all_index = torch.cat([self.index, idx], dim=1)
            order = torch.sort(all_scores, dim=1, descending=True, stable=True).indices[:, :k]
            self.scores = torch.gather(all_scores, 1, order)
            self.index = torch.gather(all_index, 1, order)

    def gather_docs(emb, offsets, docs, dev):
        starts, stops = offsets[docs], offsets[docs + 1]
        lengths = torch.from_numpy((stops - starts).astype(np.int64))
        t = max(1, int(lengths.max())) if len(docs) else 1
        out = torch.zeros(len(docs), t, emb.shape[1])
        flat = np.array(emb[starts[0] : stops[-1]], dtype=np.float32)  # contiguous runs only
        mask = torch.arange(t)[None, :] < lengths[:, None]
        out[mask] = torch.from_numpy(flat)
        return out.to(dev), mask.to(dev)

    index = Path(index_dir)
    manifest = load_manifest(index)
    enc = encoder if encoder is not None else TokenEncoder.from_pretrained(model_dir, device)
    dev = enc.device
    queries = read_queries(queries_tsv, strict=True)
    encoded = []
    with torch.inference_mode():
        for s in range(0, len(queries), batch_size):
            encoded.append(enc.encode([t for _, t in queries[s : s + batch_size]], 32))
        tops = [TopK(q.shape[0], k) for q, _ in encoded]
        first = 0
        for shard in manifest["shards"]:
            name = shard["name"]
            for (q, q_mask), top in zip(encoded, tops, strict=True):
                emb = np.load(index / f"{name}.emb.npy", mmap_mode="r")
                offsets = np.load(index / f"{name}.offsets.npy")
                n = len(offsets) - 1
                parts = []
                for s in range(0, n, doc_chunk):
                    d, d_mask = gather_docs(emb, offsets, np.arange(s, min(n, s + doc_chunk)), dev)
                    parts.append(maxsim_scores(q, q_mask, d, d_mask).cpu())
                top.update(torch.cat(parts, dim=1), first)
            first += int(shard["num_docs"])
    lines = sum(int(torch.isfinite(t.scores).sum()) for t in tops)
    Path(run_path).write_text(
        json.dumps([t.index.tolist() for t in tops])
    )  # the ranking, for the comparison
    return lines


# ------------------------------------------------------------------------------ stages


def stage(name: str, args: dict[str, Any]) -> dict[str, Any]:
    """Run one stage in this process (called in a child); return what it measured. The
    search stages load the query encoder before the clock starts."""
    import torch

    from optical_clir.models.encoder import TokenEncoder

    if args.get("threads"):
        torch.set_num_threads(int(args["threads"]))
    enc = None
    if name in ("search", "old_search", "ann_search"):
        enc = TokenEncoder.from_pretrained(args["model"], args["device"])
    start = time.perf_counter()
    out: dict[str, Any] = {}
    if name == "prepare":
        from optical_clir.data.collection import prepare_collection

        spec = {"source": "local", "docs": args["docs"], "qrels": args["qrels"],
                "queries": {"en": args["queries"]}, "strict": True}  # fmt: skip
        out["docs"] = prepare_collection(spec, args["out"])["documents"]
    elif name == "bm25":
        from optical_clir.retrieval.bm25 import build_bm25_index

        out["docs"] = build_bm25_index(args["docs"], args["out"], threads=1)
    elif name == "encode":
        from optical_clir.retrieval.dense import encode_documents

        manifest = encode_documents(
            args["model"], args["docs"], args["out"], batch_size=128, shard_size=SHARD_SIZE,
            device=args["device"],
        )  # fmt: skip
        out["docs"] = manifest["num_docs"]
        out["tokens"] = sum(s["num_tokens"] for s in manifest["shards"])
    elif name == "search":
        from optical_clir.retrieval.dense import search

        out["lines"] = search(
            args["model"], args["index"], args["queries"], args["out"], k=100, encoder=enc
        )
    elif name == "old_search":
        out["lines"] = old_search(
            args["model"], args["index"], args["queries"], args["out"], k=100, encoder=enc
        )
    elif name == "ann_build":
        import faiss

        from optical_clir.retrieval.dense import build_ann_index

        faiss.omp_set_num_threads(int(args.get("threads") or os.cpu_count() or 1))
        out["meta"] = build_ann_index(args["index"], args["out"], args["ann_settings"])
    elif name == "ann_search":
        from optical_clir.retrieval.dense import search

        out["lines"] = search(
            args["model"], args["index"], args["queries"], args["out"], k=100,
            backend="faiss_ivf", ann_dir=args["ann"], ann=args["ann_settings"], encoder=enc,
        )  # fmt: skip
    else:
        raise SystemExit(f"unknown stage {name}")
    out["seconds"] = time.perf_counter() - start
    return out


def measure(name: str, **args: Any) -> dict[str, Any]:
    """Run a stage in a child process; add its peak RSS (MiB) and wall seconds."""
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import scale; "
        "print('RESULT ' + json.dumps(scale.stage(sys.argv[2], json.loads(sys.argv[3]))))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(Path(__file__).parent), name, json.dumps(args)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    stdout = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"stage {name} failed (status {status}); run it alone to see why")
    result = json.loads(next(x for x in stdout.splitlines() if x.startswith("RESULT "))[7:])
    result["rss_mib"] = usage.ru_maxrss / 1024
    result["wall"] = time.perf_counter() - start
    return result


def run_rankings(path: Path) -> dict[str, list[str]]:
    ranked: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        qid, _, docid, *_ = line.split()
        ranked.setdefault(qid, []).append(docid)
    return ranked


def same_top(old_json: Path, run: Path) -> float:
    """Share of queries whose top documents (as a set) are the same in the peer's ranking
    (global document positions; the synthetic ids are ``d<position>``) and in ours."""
    old = json.loads(old_json.read_text())
    ours = run_rankings(run)
    flat = [row for batch in old for row in batch]
    qids = list(ours)
    same = [set(ours[q]) == {f"d{i}" for i in flat[n] if i >= 0} for n, q in enumerate(qids)]
    return sum(same) / len(same)


def recall_at(approx: dict[str, list[str]], exact: dict[str, list[str]], k: int) -> float:
    """Mean over the exact run's queries of |top k approx ∩ top k exact| / k."""
    values = [
        len(set(approx.get(q, [])[:k]) & set(d[:k])) / min(k, len(d)) for q, d in exact.items()
    ]
    return sum(values) / len(values)


# ------------------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20000, 200000])
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--candidate-queries", type=int, default=1000)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-peer", action="store_true", help="skip the old search loop")
    parser.add_argument("--quick", action="store_true", help="2,000 and 20,000 documents")
    args = parser.parse_args()
    sizes = [2000, 20000] if args.quick else args.sizes
    print_machine("Scale: indexing and search memory and time", device=args.device)
    common = {"device": args.device, "threads": args.threads}
    build_settings = {"seed": 0, "train_vectors": 65536}
    ann_settings = {"nprobe": 16, "k_tokens": 128}
    rows: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        from optical_clir.models.tiny import save_tiny_encoder

        model = str(save_tiny_encoder(tmp / "model", seed=0, dim=32, doc_max_length=32,
                                      query_max_length=16))  # fmt: skip
        queries = tmp / "queries.tsv"
        write_queries(queries, args.queries)
        many = tmp / "queries-many.tsv"
        write_queries(many, args.candidate_queries)  # the first ones are the same queries
        for n in sizes:
            docs = tmp / f"docs-{n}.jsonl"
            write_collection(docs, n)
            index = tmp / f"index-{n}"
            row: dict[str, Any] = {"docs": n}
            qrels = tmp / f"qrels-{n}.txt"
            write_qrels(qrels, args.queries, n)
            row["prepare"] = measure(
                "prepare", docs=str(docs), qrels=str(qrels), queries=str(queries),
                out=str(tmp / f"prepared-{n}"), **common,
            )  # fmt: skip
            row["bm25"] = measure("bm25", docs=str(docs), out=str(tmp / f"bm25-{n}"), **common)
            row["encode"] = measure("encode", model=model, docs=str(docs), out=str(index), **common)
            exact_run = tmp / f"exact-{n}.trec"
            row["search"] = measure(
                "search", model=model, index=str(index), queries=str(queries), out=str(exact_run),
                **common,
            )  # fmt: skip
            if not args.no_peer:
                row["old_search"] = measure(
                    "old_search", model=model, index=str(index), queries=str(queries),
                    out=str(tmp / f"old-{n}.json"), **common,
                )  # fmt: skip
                row["same"] = same_top(tmp / f"old-{n}.json", exact_run)
            ann = tmp / f"ann-{n}"
            row["ann_build"] = measure(
                "ann_build", index=str(index), out=str(ann), ann_settings=build_settings, **common
            )
            ann_run = tmp / f"ann-{n}.trec"
            row["ann_search"] = measure(
                "ann_search", model=model, index=str(index), queries=str(many), out=str(ann_run),
                ann=str(ann), ann_settings=ann_settings, **common,
            )  # fmt: skip
            row["recall100"] = recall_at(run_rankings(ann_run), run_rankings(exact_run), 100)
            rows[n] = row
            print(f"done: {n} documents", file=sys.stderr)

    small, large = sizes[0], sizes[-1]
    tokens = {n: rows[n]["encode"]["tokens"] for n in sizes}
    print(f"Documents: {', '.join(f'{n:,} ({tokens[n]:,} tokens)' for n in sizes)}; shards of "
          f"{SHARD_SIZE:,}; tiny encoder (32-d); {args.queries} queries for exact search, "
          f"{args.candidate_queries} through the candidate stage.\n")  # fmt: skip
    stages = [("prepare", "prepare collection"), ("bm25", "BM25 indexing"),
              ("encode", "dense encoding"), ("search", f"exact search, {args.queries} queries"),
              ("old_search", f"peer: old search loop, {args.queries} queries"),
              ("ann_build", "IVF index build"),
              ("ann_search", f"candidate stage, {args.candidate_queries} queries")]  # fmt: skip
    table = []
    for key, label in stages:
        if key not in rows[small]:
            continue
        a, b = rows[small][key], rows[large][key]
        table.append([label, f"{a['rss_mib']:.0f}", f"{b['rss_mib']:.0f}",
                      f"{b['rss_mib'] / a['rss_mib']:.2f}", f"{a['seconds']:.1f}",
                      f"{b['seconds']:.1f}"])  # fmt: skip
    print(markdown_table(
        ["stage", f"peak RSS MiB at {small:,}", f"at {large:,}", "RSS ratio (target <= 1.3)",
         f"seconds at {small:,}", f"at {large:,}"], table))  # fmt: skip
    print()
    per = []
    for n in sizes:
        pairs = args.queries * n / 1e6
        ours = rows[n]["search"]["seconds"]
        line = [f"{n:,}", f"{ours:.1f}", f"{ours / pairs:.2f}"]
        if "old_search" in rows[n]:
            old = rows[n]["old_search"]["seconds"]
            line += [f"{old:.1f}", f"{old / pairs:.2f}", f"{old / ours:.1f}x",
                     f"{rows[n]['same']:.0%}"]  # fmt: skip
        line += [f"{rows[n]['recall100']:.3f}",
                 f"{1000 * rows[n]['ann_search']['seconds'] / args.candidate_queries:.1f}"]  # fmt: skip
        per.append(line)
    headers = ["documents", "exact s", "exact s per 1M (query, doc) pairs"]
    if not args.no_peer:
        headers += ["peer s", "peer s per 1M pairs", "peer / ours", "same top 100 as peer"]
    headers += ["candidate recall@100 vs exact", "candidate ms per query"]
    print(markdown_table(headers, per))
    lists = ", ".join(f"{rows[n]['ann_build']['meta']['nlist']:,}" for n in sizes)
    print(f"\nCandidate stage: IVF-Flat with {lists} lists (about 4 sqrt(tokens)), trained on "
          f"{build_settings['train_vectors']:,} vectors; nprobe {ann_settings['nprobe']}, "
          f"{ann_settings['k_tokens']} nearest tokens per query token; recall over the first "
          f"{args.queries} queries. Times exclude process start and model loading.")  # fmt: skip


if __name__ == "__main__":
    main()
