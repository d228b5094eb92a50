"""Stream, cap and cache the teacher's training triples (adapter for rule prepare_triples)."""

from optical_clir.data.artifacts import check_artifacts
from optical_clir.data.mmarco import prepare_triples
from optical_clir.workflow_logging import script_logging

with script_logging(snakemake.log[0], snakemake.output) as log:
    check_artifacts(list(snakemake.input.artifacts))
    n = prepare_triples(snakemake.params.source, snakemake.output[0])
    log.info("%d triples cached in %s", n, snakemake.output[0])
