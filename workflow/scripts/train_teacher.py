"""Train the teacher (adapter for rule train_teacher); several GPUs run it under torchrun."""

from optical_clir.train.launch import run_training
from optical_clir.workflow_logging import script_logging

with script_logging(snakemake.log[0], snakemake.output):
    run_training(
        task="teacher",
        config={
            "triples": snakemake.input.triples,
            "model": snakemake.params.model,
            "train": snakemake.params.train,
        },
        work_dir=snakemake.params.work_dir,
        model_out=snakemake.output[0],
        gpus=int(snakemake.resources.get("gpu", 0) or 0),
        log_path=snakemake.log[0],
    )
