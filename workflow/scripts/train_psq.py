"""IBM Model 1 translation table and PSQ queries of one language (adapter for rule train_psq)."""

from pathlib import Path

from optical_clir.translate.psq import train_psq
from optical_clir.workflow_logging import script_logging

with script_logging(snakemake.log[0], snakemake.output) as log:
    counts = train_psq(
        Path(snakemake.input.bitext) / "train.tsv",
        snakemake.input.queries,
        snakemake.output.table,
        snakemake.output.queries,
        **snakemake.params.psq,
    )
    log.info("PSQ for %s: %s", snakemake.wildcards.lang, counts)
