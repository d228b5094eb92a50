"""Distil a student query encoder (adapter for rule distill_student); torchrun on several GPUs."""

import json
from pathlib import Path

from optical_clir.train.launch import run_training
from optical_clir.variants import resolve_student
from optical_clir.workflow_logging import script_logging

with script_logging(snakemake.log[0], snakemake.output):
    params = snakemake.params.student
    selection = None
    if hasattr(snakemake.input, "selection"):
        selection = json.loads(Path(snakemake.input.selection).read_text())
    method, loss, train = resolve_student(params, selection)
    bitext = Path(snakemake.input.bitext)
    run_training(
        task="distill",
        config={
            "train_bitext": str(bitext / "train.tsv"),
            "dev_bitext": str(bitext / "dev.tsv"),
            "teacher": snakemake.input.teacher,
            "method": method,
            "language": params["language"],
            "loss": loss,
            "train": train,
        },
        work_dir=snakemake.params.work_dir,
        model_out=snakemake.output[0],
        gpus=int(snakemake.resources.get("gpu", 0) or 0),
        log_path=snakemake.log[0],
    )
