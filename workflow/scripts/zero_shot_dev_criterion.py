"""The zero-shot teacher's dev bitext retrieval (rule zero_shot_dev_criterion)."""

import json
from pathlib import Path

from optical_clir.evaluation.bitext_retrieval import bitext_retrieval
from optical_clir.io import atomic_write_text
from optical_clir.models.encoder import TokenEncoder
from optical_clir.train.distill import read_bitext
from optical_clir.workflow_logging import script_logging

with script_logging(snakemake.log[0], snakemake.output) as log:
    teacher = TokenEncoder.from_pretrained(snakemake.input.teacher)
    pairs = read_bitext(Path(snakemake.input.bitext) / "dev.tsv")
    result = bitext_retrieval(teacher, teacher, pairs)
    atomic_write_text(snakemake.output[0], json.dumps(result, indent=2) + "\n")
    log.info("zero-shot dev criterion of %s: %s", snakemake.wildcards.lang, result)
