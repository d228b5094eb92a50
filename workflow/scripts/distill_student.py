"""Distil a student query encoder (adapter for rule distill_student); torchrun on several GPUs."""

import json
from pathlib import Path

from optical_clir.gpu import check_gpu_job, requested_gpus
from optical_clir.train.launch import run_training
from optical_clir.variants import resolve_student
from optical_clir.workflow_logging import script_logging

with script_logging(snakemake.log[0], snakemake.output):
    params = snakemake.params.student
    selection = None
    if hasattr(snakemake.input, "selection"):
        selection = json.loads(Path(snakemake.input.selection).read_text())
    method, loss, train = resolve_student(params, selection)
    gpus = requested_gpus(snakemake.resources)
    check_gpu_job(gpus, train.get("device", "auto"), "distill.train.device", snakemake.rule)
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
        gpus=gpus,
        log_path=snakemake.log[0],
    )
