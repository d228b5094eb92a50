"""Paired tests and the main table in CSV, Markdown and LaTeX (adapter for rule main_table)."""

from optical_clir.evaluation.tables import write_main_tables
from optical_clir.workflow_logging import script_logging

with script_logging(snakemake.log[0], snakemake.output):
    write_main_tables(
        list(snakemake.input.evals),
        snakemake.params.table,
        {key: snakemake.output[key] for key in ("md", "csv", "tex", "measures", "seeds")},
        selection_paths=list(snakemake.input.selections),
    )
