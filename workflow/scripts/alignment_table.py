"""Gather the alignment accuracies into one table (adapter for rule alignment_table)."""

from optical_clir.evaluation.ot_alignment import write_alignment_table
from optical_clir.evaluation.tables import provenance_lines
from optical_clir.workflow_logging import script_logging

with script_logging(snakemake.log[0], snakemake.output):
    write_alignment_table(
        list(snakemake.input),
        snakemake.output.md,
        snakemake.output.csv,
        notes=provenance_lines(**snakemake.params.provenance),
    )
