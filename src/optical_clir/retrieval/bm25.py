"""BM25 with pyserini (Lucene): index English documents once, search query sets, write TREC runs."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from optical_clir.data.collection import load_queries_tsv, read_documents
from optical_clir.io import atomic_dir
from optical_clir.retrieval.lucene_env import configure_java
from optical_clir.retrieval.trec import write_run
from optical_clir.translate.psq import read_psq_queries

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


def _weighted_query(terms: list[dict[str, Any]], analyzer: Any) -> Any:
    """A Lucene query from PSQ terms: per L term, a disjunction of its English translations
    (each analysed like the index, boosted by its probability), as pyserini's query builder
    makes them. Translations that analyse to nothing (stopwords) drop out; a term whose
    translations all drop out contributes nothing."""
    from pyserini.search.lucene import querybuilder

    should = querybuilder.JBooleanClauseOccur["should"].value
    outer = querybuilder.get_boolean_query_builder()
    for term in terms:
        weights: dict[str, float] = {}
        for english, weight in term["translations"]:
            for token in analyzer.analyze(english):
                weights[token] = weights.get(token, 0.0) + float(weight)
        for token, weight in sorted(weights.items()):
            clause = querybuilder.JTermQuery(querybuilder.JTerm("contents", token))
            outer.add(querybuilder.get_boost_query(clause, weight), should)
    return outer.build()


def bm25_search_sets(
    index_dir: str | Path,
    sets: Sequence[Mapping[str, str]],
    k: int = 1000,
    k1: float = 0.9,
    b: float = 0.4,
    threads: int = 1,
) -> dict[str, int]:
    """Search several query sets against one index in one JVM; write one TREC run each.

    ``sets``: ``{"qset", "kind", "queries", "run"}`` with kind ``text`` (a ``qid<TAB>text``
    file, searched with Lucene's query parser as in pyserini's batch search) or ``psq``
    (weighted queries, see :func:`_weighted_query`). Returns the number of queries per set.
    """
    configure_java()
    from pyserini.analysis import Analyzer, get_lucene_analyzer
    from pyserini.search.lucene import LuceneSearcher

    searcher = LuceneSearcher(str(index_dir))
    searcher.set_bm25(k1, b)
    analyzer = Analyzer(get_lucene_analyzer())
    counts = {}
    for spec in sets:
        tag = f"bm25.{spec['qset']}"
        if spec["kind"] == "psq":
            weighted = read_psq_queries(spec["queries"])
            qids = list(weighted)
            ranking = {
                qid: [(h.docid, float(h.score)) for h in searcher.search(
                    _weighted_query(weighted[qid], analyzer), k=k)]
                for qid in qids
            }  # fmt: skip
        else:
            queries = load_queries_tsv(spec["queries"])
            qids = list(queries)
            hits = searcher.batch_search([queries[q] for q in qids], qids, k=k, threads=threads)
            ranking = {q: [(h.docid, float(h.score)) for h in hits.get(q, [])] for q in qids}
        empty = [q for q in qids if not ranking[q]]
        if empty:
            log.warning(
                "%s: %d queries retrieved nothing (e.g. %s)",
                spec["qset"], len(empty), ", ".join(empty[:5]),
            )  # fmt: skip
        write_run(ranking, spec["run"], tag=tag)
        log.info("searched %d queries of %s -> %s", len(qids), spec["queries"], spec["run"])
        counts[spec["qset"]] = len(qids)
    return counts


def bm25_search(
    index_dir: str | Path,
    queries_tsv: str | Path,
    run_path: str | Path,
    k: int = 1000,
    k1: float = 0.9,
    b: float = 0.4,
    threads: int = 1,
    tag: str = "bm25",
) -> int:
    """Search one ``qid<TAB>text`` query file with BM25 (k1, b); write the top ``k`` as a run."""
    sets = [{"qset": tag.removeprefix("bm25."), "kind": "text", "queries": str(queries_tsv),
             "run": str(run_path)}]  # fmt: skip
    return next(iter(bm25_search_sets(index_dir, sets, k, k1, b, threads).values()))


def index_stats(index_dir: str | Path) -> dict:
    """Read basic statistics of a Lucene index (documents, terms), for logs and sanity tests."""
    configure_java()
    from pyserini.index.lucene import LuceneIndexReader

    stats = LuceneIndexReader(str(index_dir)).stats()
    return json.loads(json.dumps(stats, default=str))
