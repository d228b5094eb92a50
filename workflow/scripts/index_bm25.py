"""Build the Lucene BM25 index of a collection (adapter for rule index_bm25)."""

from optical_clir.retrieval.bm25 import build_bm25_index
from optical_clir.workflow_logging import script_logging

with script_logging(snakemake.log[0], snakemake.output):
    build_bm25_index(snakemake.input.docs, snakemake.output[0], threads=snakemake.threads)
