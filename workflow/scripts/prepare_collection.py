"""Validate and normalise one evaluation collection (adapter for rule prepare_collection)."""

from pathlib import Path

from optical_clir.data.artifacts import check_artifacts
from optical_clir.data.collection import prepare_collection
from optical_clir.workflow_logging import script_logging

with script_logging(snakemake.log[0], snakemake.output):
    check_artifacts(list(snakemake.input.artifacts))
    prepare_collection(snakemake.params.spec, Path(snakemake.output.docs).parent)
