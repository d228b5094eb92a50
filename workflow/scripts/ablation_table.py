"""The ablation table and figure (rule ablation_table)."""

from optical_clir.evaluation.ablation import write_ablation
from optical_clir.evaluation.tables import provenance_lines
from optical_clir.workflow_logging import script_logging

with script_logging(snakemake.log[0], snakemake.output):
    write_ablation(
        snakemake.params.entries,
        [
            {"language": lang, "path": path}
            for lang, path in zip(
                snakemake.params.language_names, snakemake.input.zero_shot, strict=True
            )
        ],
        {
            "measure": snakemake.params.measure,
            "correction": snakemake.params.correction,
            "alpha": snakemake.params.alpha,
            "language_names": snakemake.params.language_names,
        },
        dict(snakemake.output),
        notes=provenance_lines(**snakemake.params.provenance),
    )
