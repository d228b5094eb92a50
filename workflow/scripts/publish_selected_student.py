"""Publish the selected student under `<method>+selected` (rule publish_selected_student)."""

from optical_clir.evaluation.selection import publish_selected
from optical_clir.workflow_logging import script_logging

with script_logging(snakemake.log[0], snakemake.output):
    publish_selected(
        snakemake.input.selection, list(snakemake.input.candidates), snakemake.output[0]
    )
