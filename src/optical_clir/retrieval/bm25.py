"""BM25 with pyserini (Lucene): index English documents once, search query sets, write TREC runs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from tqdm import tqdm

from optical_clir.data.collection import load_queries_tsv, read_documents
from optical_clir.io import atomic_dir
from optical_clir.retrieval.lucene_env import configure_java
from optical_clir.retrieval.trec import write_run

log = logging.getLogger(__name__)


def build_bm25_index(
    docs_jsonl: str | Path, index_dir: str | Path, threads: int = 1, batch: int = 1000
) -> int:
    """Index the normalised documents (title and text as one field) with Lucene; return the count.

    The index is built in a temporary folder and renamed into place, so a crash never
    leaves a half-written index behind.
    """
    configure_java()
    from pyserini.index.lucene import LuceneIndexer

    n = 0
    with atomic_dir(index_dir) as tmp:
        indexer = LuceneIndexer(str(tmp), threads=threads)
        buffer: list[dict] = []
        for doc in tqdm(read_documents(docs_jsonl), desc="index", unit="doc", mininterval=5):
            contents = f"{doc.title}\n{doc.text}" if doc.title else doc.text
            buffer.append({"id": doc.id, "contents": contents})
            if len(buffer) >= batch:
                indexer.add_batch_dict(buffer)
                n += len(buffer)
                buffer = []
        if buffer:
            indexer.add_batch_dict(buffer)
            n += len(buffer)
        indexer.close()
    log.info("indexed %d documents into %s", n, index_dir)
    return n


def bm25_search(
    index_dir: str | Path,
    queries_tsv: str | Path,
    run_path: str | Path,
    k: int = 1000,
    k1: float = 0.9,
    b: float = 0.4,
    threads: int = 1,
    tag: str = "bm25",
) -> dict[str, list[tuple[str, float]]]:
    """Search every query with BM25 (k1, b) and write the top ``k`` as a TREC run."""
    configure_java()
    from pyserini.search.lucene import LuceneSearcher

    queries = load_queries_tsv(queries_tsv)
    searcher = LuceneSearcher(str(index_dir))
    searcher.set_bm25(k1, b)
    qids = list(queries)
    hits = searcher.batch_search([queries[q] for q in qids], qids, k=k, threads=threads)
    ranking = {qid: [(h.docid, float(h.score)) for h in hits.get(qid, [])] for qid in qids}
    empty = [q for q in qids if not ranking[q]]
    if empty:
        log.warning("%d queries retrieved nothing (e.g. %s)", len(empty), ", ".join(empty[:5]))
    write_run(ranking, run_path, tag=tag)
    log.info("searched %d queries from %s -> %s", len(qids), queries_tsv, run_path)
    return ranking


def index_stats(index_dir: str | Path) -> dict:
    """Read basic statistics of a Lucene index (documents, terms), for logs and sanity tests."""
    configure_java()
    from pyserini.index.lucene import LuceneIndexReader

    stats = LuceneIndexReader(str(index_dir)).stats()
    return json.loads(json.dumps(stats, default=str))
