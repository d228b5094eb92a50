"""Translate one language's queries into English (adapter for rule translate_queries)."""

from optical_clir.data.artifacts import check_artifacts
from optical_clir.gpu import check_gpu_job, requested_gpus
from optical_clir.translate.queries import translate_queries_from_config
from optical_clir.workflow_logging import script_logging

with script_logging(snakemake.log[0], snakemake.output):
    check_gpu_job(
        requested_gpus(snakemake.resources),
        snakemake.params.translate.get("device", "auto"),
        f"nmt.systems.{snakemake.wildcards.nmt}.translate.device",
        snakemake.rule,
    )
    check_artifacts(list(snakemake.input.get("artifacts", [])))
    translate_queries_from_config(
        snakemake.params.translate,
        snakemake.input.queries,
        snakemake.output.translations,
        src_lang=snakemake.wildcards.lang,
        english_tsv=snakemake.output.english,
    )
