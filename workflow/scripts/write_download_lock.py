"""Gather the download records into results/downloads/lock.json (adapter for rule download)."""

from optical_clir.data.artifacts import write_lock
from optical_clir.workflow_logging import script_logging

with script_logging(snakemake.log[0]) as log:
    lock = write_lock(list(snakemake.input), snakemake.output[0])
    for record in lock["artifacts"]:
        log.info("%s %s: %s", record["kind"], record["key"], record.get("revision", "-"))
