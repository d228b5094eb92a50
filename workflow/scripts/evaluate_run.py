"""Per-query measures of one run with ir_measures (adapter for rule evaluate_run)."""

from optical_clir.evaluation.measures import (
    evaluation_query_ids,
    per_query_measures,
    write_per_query,
)
from optical_clir.workflow_logging import script_logging

with script_logging(snakemake.log[0], snakemake.output) as log:
    qids = evaluation_query_ids(snakemake.input.queries, snakemake.input.qrels)
    table = per_query_measures(
        snakemake.input.run, snakemake.input.qrels, qids, tuple(snakemake.params.measures)
    )
    write_per_query(table, snakemake.output[0])
    log.info("%d queries; means: %s", len(table), table.mean().round(4).to_dict())
