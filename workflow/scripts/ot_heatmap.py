"""Heatmaps of the OT plan between student and teacher tokens on dev bitext (rule ot_heatmap)."""

from pathlib import Path

from optical_clir.evaluation.ot_heatmap import write_ot_heatmap
from optical_clir.evaluation.ot_plans import trained_loss_config
from optical_clir.workflow_logging import script_logging

with script_logging(snakemake.log[0], snakemake.output):
    write_ot_heatmap(
        student_dir=snakemake.input.student,
        teacher_dir=snakemake.input.teacher,
        bitext_dir=Path(snakemake.input.bitext),
        loss_config=trained_loss_config(snakemake.input.student, snakemake.params.loss),
        path=snakemake.output.png,
        n_examples=snakemake.params.n_examples,
    )
