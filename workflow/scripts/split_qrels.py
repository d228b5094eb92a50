"""Write one language's qrels of a collection with per-language qrels (adapter for rule split_qrels)."""

from optical_clir.data.collection import split_qrels
from optical_clir.workflow_logging import script_logging

with script_logging(snakemake.log[0], snakemake.output) as log:
    n = split_qrels(snakemake.input[0], snakemake.wildcards.lang, snakemake.output[0])
    log.info("%d judgments for %s", n, snakemake.wildcards.lang)
