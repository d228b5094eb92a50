"""Encode a collection's documents with the teacher into a sharded index (rule encode_documents)."""

from optical_clir.gpu import check_gpu_job, requested_gpus
from optical_clir.retrieval.dense import encode_documents
from optical_clir.workflow_logging import script_logging

with script_logging(snakemake.log[0], snakemake.output):
    cfg = snakemake.params.dense
    check_gpu_job(
        requested_gpus(snakemake.resources), cfg["device"], "dense.device", snakemake.rule
    )
    encode_documents(
        snakemake.input.model,
        snakemake.input.docs,
        snakemake.output[0],
        batch_size=cfg["batch_size"],
        shard_size=cfg["shard_size"],
        dtype=cfg["dtype"],
        device=cfg["device"],
        precision=cfg["precision"],
        loader_workers=cfg["loader_workers"],
    )
