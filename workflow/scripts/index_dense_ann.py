"""Build the candidate stage's faiss IVF index of a dense index (adapter for rule index_dense_ann)."""

from optical_clir.retrieval.dense import build_ann_index
from optical_clir.workflow_logging import script_logging

with script_logging(snakemake.log[0]):
    import faiss

    faiss.omp_set_num_threads(snakemake.threads)
    build_ann_index(snakemake.input[0], snakemake.output[0], snakemake.params.ann)
