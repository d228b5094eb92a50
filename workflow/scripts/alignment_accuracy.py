"""OT word-alignment accuracy of a query encoder against the gold alignment (rule alignment_accuracy)."""

from pathlib import Path

from optical_clir.evaluation.ot_alignment import evaluate_alignment
from optical_clir.evaluation.ot_plans import trained_loss_config
from optical_clir.workflow_logging import script_logging

with script_logging(snakemake.log[0], snakemake.output):
    bitext = Path(snakemake.input.bitext)
    evaluate_alignment(
        student_dir=snakemake.input.student,
        teacher_dir=snakemake.input.teacher,
        pairs_tsv=bitext / "dev.tsv",
        gold_align=bitext / "dev.align",
        loss_cfg=trained_loss_config(snakemake.input.student, snakemake.params.loss),
        out_json=snakemake.output[0],
        encoder_name=snakemake.wildcards.encoder,
        language=snakemake.wildcards.lang,
        seed=int(snakemake.wildcards.seed),
    )
