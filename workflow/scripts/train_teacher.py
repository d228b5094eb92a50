"""Train the teacher (adapter for rule train_teacher); several GPUs run it under torchrun."""

from optical_clir.data.artifacts import check_artifacts
from optical_clir.gpu import check_gpu_job, requested_gpus
from optical_clir.train.launch import run_training
from optical_clir.workflow_logging import script_logging

with script_logging(snakemake.log[0], snakemake.output):
    gpus = requested_gpus(snakemake.resources)
    device = snakemake.params.train.get("device", "auto")
    check_gpu_job(gpus, device, "teacher.train.device", snakemake.rule)
    check_artifacts(list(snakemake.input.artifacts))
    run_training(
        task="teacher",
        config={
            "triples": snakemake.input.triples,
            "model": snakemake.params.model,
            "train": snakemake.params.train,
        },
        work_dir=snakemake.params.work_dir,
        model_out=snakemake.output[0],
        gpus=gpus,
        log_path=snakemake.log[0],
    )
