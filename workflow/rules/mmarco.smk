# Teacher training data: (query, positive, negative) triples from mMARCO / MS MARCO
# (ir_datasets, Hugging Face, a URL or a local file), streamed, capped and cached.


rule prepare_triples:
    input:
        unpack(triples_source_files),
        artifacts=triples_artifacts,
    output:
        "results/data/mmarco/triples.tsv",
    log:
        "results/logs/prepare_triples/triples.log",
    benchmark:
        "results/benchmarks/prepare_triples/triples.tsv"
    conda:
        "../../envs/torch.yaml"
    resources:
        mem_mb=mem_mb(4000),
        runtime=runtime(240),
    params:
        source=triples_source,
    script:
        "../scripts/prepare_triples.py"
