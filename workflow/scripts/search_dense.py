"""Search a dense index with a query encoder, write a TREC run (rules search_dense_*)."""

from optical_clir.retrieval.dense import search
from optical_clir.workflow_logging import script_logging

with script_logging(snakemake.log[0], snakemake.output):
    cfg = snakemake.params.dense
    search(
        snakemake.input.model,
        snakemake.input.index,
        snakemake.input.queries,
        snakemake.output[0],
        k=cfg["depth"],
        backend=cfg["backend"],
        run_tag=snakemake.params.tag,
    )
