"""Search one query set with BM25 and write a TREC run (adapter for rule search_bm25)."""

from optical_clir.retrieval.bm25 import bm25_search
from optical_clir.workflow_logging import script_logging

with script_logging(snakemake.log[0]):
    cfg = snakemake.params.bm25
    bm25_search(
        snakemake.input.index,
        snakemake.input.queries,
        snakemake.output[0],
        k=cfg["depth"],
        k1=cfg["k1"],
        b=cfg["b"],
        threads=snakemake.threads,
        tag=f"bm25.{snakemake.wildcards.qset}",
    )
