"""The dev-criterion choices of every method and language in one table (rule selection_table)."""

from optical_clir.evaluation.selection import write_selection_table
from optical_clir.evaluation.tables import provenance_lines
from optical_clir.workflow_logging import script_logging

with script_logging(snakemake.log[0], snakemake.output):
    write_selection_table(
        list(snakemake.input),
        snakemake.output.md,
        snakemake.output.csv,
        notes=provenance_lines(**snakemake.params.provenance),
    )
