"""Train a small NMT model on one language's bitext (adapter for rule train_nmt)."""

from pathlib import Path

from optical_clir.train.launch import run_training
from optical_clir.workflow_logging import script_logging

with script_logging(snakemake.log[0], snakemake.output):
    bitext = Path(snakemake.input.bitext)
    run_training(
        task="nmt",
        config={
            "train_bitext": str(bitext / "train.tsv"),
            "dev_bitext": str(bitext / "dev.tsv"),
            **snakemake.params.nmt,
        },
        work_dir=snakemake.params.work_dir,
        model_out=snakemake.output[0],
        gpus=int(snakemake.resources.get("gpu", 0) or 0),
        log_path=snakemake.log[0],
    )
