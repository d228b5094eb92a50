"""Write one language's normalised queries (adapter for rule split_queries)."""

from optical_clir.data.collection import split_queries
from optical_clir.workflow_logging import script_logging

with script_logging(snakemake.log[0], snakemake.output) as log:
    n = split_queries(snakemake.input[0], snakemake.wildcards.qset, snakemake.output[0])
    log.info("%d queries for %s", n, snakemake.wildcards.qset)
