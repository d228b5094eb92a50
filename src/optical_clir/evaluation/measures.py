"""Per-query effectiveness measures with ir_measures, the input of every table and test."""

from __future__ import annotations

from pathlib import Path

import ir_measures
import pandas as pd

from optical_clir.data.collection import load_queries_tsv, read_qrels
from optical_clir.retrieval.trec import read_run

DEFAULT_MEASURES = ("AP", "nDCG@10", "R@100", "RR@10")


def per_query_measures(
    run_path: str | Path,
    qrels_path: str | Path,
    query_ids: list[str],
    measures: tuple[str, ...] = DEFAULT_MEASURES,
) -> pd.DataFrame:
    """Compute ``measures`` for each query in ``query_ids`` (rows: qid, columns: measures).

    A query of the evaluation set that the run does not answer scores 0 on every measure
    (``trec_eval -c``), so that systems are compared on the same queries; for a run that
    answers every query the mean equals ``ir_measures.calc_aggregate``.
    """
    parsed = [ir_measures.parse_measure(m) for m in measures]
    wanted = set(query_ids)
    qrels = [
        ir_measures.Qrel(qid, docid, rel)
        for _, (qid, docid, rel) in read_qrels(qrels_path)
        if qid in wanted
    ]
    run = [
        ir_measures.ScoredDoc(qid, docid, score)
        for qid, scored in read_run(run_path).items()
        if qid in wanted
        for docid, score in scored
    ]
    table = pd.DataFrame(0.0, index=pd.Index(query_ids, name="qid"), columns=list(measures))
    names = {str(m): name for m, name in zip(parsed, measures, strict=True)}
    for metric in ir_measures.iter_calc(parsed, qrels, run):
        table.loc[metric.query_id, names[str(metric.measure)]] = float(metric.value)
    return table


def evaluation_query_ids(queries_tsv: str | Path, qrels_path: str | Path) -> list[str]:
    """The queries a language is evaluated on: those of its query file that have a relevant document."""
    judged = {qid for _, (qid, _, rel) in read_qrels(qrels_path) if rel > 0}
    return [qid for qid in load_queries_tsv(queries_tsv) if qid in judged]


def write_per_query(table: pd.DataFrame, path: str | Path) -> None:
    """Write per-query measures as TSV (qid plus one column per measure)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, sep="\t", float_format="%.6f")


def read_per_query(path: str | Path) -> pd.DataFrame:
    """Read a per-query measures TSV written by :func:`write_per_query`."""
    return pd.read_csv(path, sep="\t", index_col="qid", dtype={"qid": str})
