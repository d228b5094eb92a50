# BM25 with pyserini (Lucene) on the English documents: one index per collection, one
# run per query set (English originals, raw L queries, translated queries).


rule index_bm25:
    input:
        docs="results/data/collections/{collection}/docs.jsonl",
    output:
        directory("results/indexes/bm25/{collection}"),
    log:
        "results/logs/index_bm25/{collection}.log",
    benchmark:
        "results/benchmarks/index_bm25/{collection}.tsv"
    conda:
        "../../envs/pyserini.yaml"
    threads: config["bm25"].get("threads", 1)
    resources:
        mem_mb=8000,
        runtime=240,
    script:
        "../scripts/index_bm25.py"


rule search_bm25:
    input:
        unpack(bm25_search_inputs),
    output:
        "results/runs/{collection}/bm25/{qset}.trec",
    log:
        "results/logs/search_bm25/{collection}/{qset}.log",
    benchmark:
        "results/benchmarks/search_bm25/{collection}/{qset}.tsv"
    conda:
        "../../envs/pyserini.yaml"
    threads: config["bm25"].get("threads", 1)
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        bm25=config["bm25"],
    script:
        "../scripts/search_bm25.py"
