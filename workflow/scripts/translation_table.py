"""Score every translation with sacrebleu into one table (adapter for rule translation_table)."""

from optical_clir.evaluation.tables import provenance_lines
from optical_clir.translate.quality import translation_quality_tables
from optical_clir.workflow_logging import script_logging

with script_logging(snakemake.log[0], snakemake.output):
    translation_quality_tables(
        snakemake.params.entries,
        snakemake.output.csv,
        snakemake.output.md,
        notes=provenance_lines(**snakemake.params.provenance),
    )
