"""Choose a method's student for one language on the dev criterion (rule select_student)."""

from optical_clir.evaluation.selection import select_candidate
from optical_clir.workflow_logging import script_logging

with script_logging(snakemake.log[0], snakemake.output):
    select_candidate(
        snakemake.wildcards.method,
        snakemake.wildcards.lang,
        snakemake.params.candidates,
        list(snakemake.input),
        snakemake.output[0],
    )
