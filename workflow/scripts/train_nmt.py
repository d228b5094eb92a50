"""Train a small NMT model on one language's bitext (adapter for rule train_nmt)."""

from pathlib import Path

from optical_clir.gpu import check_gpu_job, requested_gpus
from optical_clir.train.launch import run_training
from optical_clir.workflow_logging import script_logging

with script_logging(snakemake.log[0], snakemake.output):
    bitext = Path(snakemake.input.bitext)
    gpus = requested_gpus(snakemake.resources)
    device = snakemake.params.nmt["train"].get("device", "auto")
    key = f"nmt.systems.{snakemake.wildcards.nmt}.train.device"
    check_gpu_job(gpus, device, key, snakemake.rule)
    run_training(
        task="nmt",
        config={
            "train_bitext": str(bitext / "train.tsv"),
            "dev_bitext": str(bitext / "dev.tsv"),
            **snakemake.params.nmt,
        },
        work_dir=snakemake.params.work_dir,
        model_out=snakemake.output[0],
        gpus=gpus,
        log_path=snakemake.log[0],
    )
