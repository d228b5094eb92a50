"""Read, clean, sample and split one language's bitext (adapter for rule prepare_bitext)."""

from optical_clir.data.artifacts import check_artifacts
from optical_clir.data.bitext import prepare_bitext, read_query_texts
from optical_clir.workflow_logging import script_logging

with script_logging(snakemake.log[0], snakemake.output):
    check_artifacts(list(snakemake.input.artifacts))
    params = snakemake.params.bitext
    prepare_bitext(
        params["source"],
        params["clean"],
        params["sample"],
        snakemake.output[0],
        eval_queries=read_query_texts(list(snakemake.input.queries)),
    )
