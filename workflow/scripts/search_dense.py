"""Search a dense index with a query encoder, write a TREC run (rules search_dense_*)."""

from optical_clir.gpu import check_gpu_job, requested_gpus
from optical_clir.retrieval.dense import SearchSettings, search
from optical_clir.workflow_logging import script_logging

with script_logging(snakemake.log[0], snakemake.output):
    cfg = snakemake.params.dense
    check_gpu_job(
        requested_gpus(snakemake.resources), cfg["device"], "dense.device", snakemake.rule
    )
    search(
        snakemake.input.model,
        snakemake.input.index,
        snakemake.input.queries,
        snakemake.output[0],
        k=cfg["depth"],
        backend=cfg["backend"],
        run_tag=snakemake.params.tag,
        device=cfg["device"],
        ann_dir=snakemake.input.get("ann"),
        ann=cfg.get("ann"),
        settings=SearchSettings(
            sim_elements=cfg["sim_elements"],
            block_docs=cfg["block_docs"],
            precision=cfg["precision"],
        ),
    )
