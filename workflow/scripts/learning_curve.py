"""MAP against the number of bitext pairs: figure and tables (rule learning_curve)."""

from optical_clir.evaluation.report_outputs import write_learning_curve
from optical_clir.workflow_logging import script_logging

with script_logging(snakemake.log[0], snakemake.output):
    write_learning_curve(
        snakemake.params.entries,
        snakemake.params.references,
        {
            "measure": snakemake.params.measure,
            "language_names": snakemake.params.language_names,
            "labels": snakemake.params.labels,
            **snakemake.params.provenance,
        },
        dict(snakemake.output),
    )
