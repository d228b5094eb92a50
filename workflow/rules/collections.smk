# Evaluation collections: documents, queries per language and qrels, validated and
# normalised to one on-disk format (see docs/CONVENTIONS.md).


rule prepare_collection:
    input:
        unpack(collection_sources),
        artifacts=collection_artifacts,
    output:
        docs="results/data/collections/{collection}/docs.jsonl",
        qrels="results/data/collections/{collection}/qrels.txt",
        queries="results/data/collections/{collection}/queries.tsv",
        stats="results/data/collections/{collection}/stats.json",
    log:
        "results/logs/prepare_collection/{collection}.log",
    benchmark:
        "results/benchmarks/prepare_collection/{collection}.tsv"
    conda:
        "../../envs/evaluation.yaml"
    resources:
        mem_mb=mem_mb(4000),
        runtime=runtime(60),
    params:
        spec=collection_spec,
    script:
        "../scripts/prepare_collection.py"


rule split_queries:
    input:
        "results/data/collections/{collection}/queries.tsv",
    output:
        "results/data/collections/{collection}/queries/{qset}.tsv",
    log:
        "results/logs/split_queries/{collection}/{qset}.log",
    benchmark:
        "results/benchmarks/split_queries/{collection}/{qset}.tsv"
    wildcard_constraints:
        qset=r"[A-Za-z0-9_]+",
    conda:
        "../../envs/evaluation.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/split_queries.py"


# A collection with per-language qrels (collections.<name>.qrels: per_language) writes them
# into one qrels.txt with ids <lang>:<qid>; each language is judged on its own part.
rule split_qrels:
    input:
        "results/data/collections/{collection}/qrels.txt",
    output:
        "results/data/collections/{collection}/qrels/{lang}.txt",
    log:
        "results/logs/split_qrels/{collection}/{lang}.log",
    benchmark:
        "results/benchmarks/split_qrels/{collection}/{lang}.tsv"
    conda:
        "../../envs/evaluation.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/split_qrels.py"
