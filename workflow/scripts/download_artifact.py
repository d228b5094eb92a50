"""Fetch one remote input into its cache and write its record (adapter for rule download_artifact)."""

import os

# This local rule is the one place that reaches the network: the workflow sets offline mode
# for every job (cache.offline_jobs), and huggingface_hub reads it when imported.
for variable in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.pop(variable, None)

from optical_clir.data.artifacts import Artifact, write_marker  # noqa: E402
from optical_clir.data.fetch import fetch  # noqa: E402
from optical_clir.workflow_logging import script_logging  # noqa: E402

with script_logging(snakemake.log[0]) as log:
    params = snakemake.params.artifact
    artifact = Artifact(params["kind"], params["key"], params["spec"], params["where"])
    record = fetch(artifact)
    write_marker(record, snakemake.output[0])
    log.info("%s: %d file(s) in %s", artifact.name, len(record["files"]), snakemake.output[0])
