"""Train a small NMT model on one language's bitext (adapter for rule train_nmt)."""

from pathlib import Path

from optical_clir.translate.train_small_nmt import train_small_nmt
from optical_clir.workflow_logging import script_logging

with script_logging(snakemake.log[0]):
    train_small_nmt(
        Path(snakemake.input.bitext) / "train.tsv", snakemake.output[0], snakemake.params.train
    )
