"""Search every query set of one collection with BM25 in one JVM (adapter for search_bm25_*)."""

from optical_clir.retrieval.bm25 import bm25_search_sets
from optical_clir.workflow_logging import script_logging

with script_logging(snakemake.log[0], snakemake.output):
    cfg = snakemake.params.bm25
    bm25_search_sets(
        snakemake.input.index,
        snakemake.params.sets,
        k=cfg["depth"],
        k1=cfg["k1"],
        b=cfg["b"],
        threads=snakemake.threads,
    )
