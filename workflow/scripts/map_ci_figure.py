"""MAP per language and system with bootstrap confidence intervals (rule map_ci_figure)."""

from optical_clir.evaluation.report_outputs import write_map_ci
from optical_clir.workflow_logging import script_logging

with script_logging(snakemake.log[0], snakemake.output):
    write_map_ci(
        snakemake.params.table,
        snakemake.params.bootstrap,
        snakemake.output.png,
        snakemake.output.csv,
    )
