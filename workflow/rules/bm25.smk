# BM25 with pyserini (Lucene) on the English documents: one index per collection, and one
# search job per collection that runs every query set (English originals, raw L queries,
# translated queries, PSQ queries) in one JVM.


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
    threads: config["bm25"]["threads"]
    resources:
        mem_mb=8000,
        runtime=240,
    script:
        "../scripts/index_bm25.py"


# One rule per collection: the query sets (and so the runs) differ between collections.
for bm25_collection in COLLECTIONS:

    rule:
        name:
            f"search_bm25_{bm25_collection}"
        input:
            **bm25_search_inputs(bm25_collection),
        output:
            bm25_runs(bm25_collection),
        log:
            f"results/logs/search_bm25/{bm25_collection}.log",
        benchmark:
            f"results/benchmarks/search_bm25/{bm25_collection}.tsv"
        conda:
            "../../envs/pyserini.yaml"
        threads: config["bm25"]["threads"]
        resources:
            mem_mb=8000,
            runtime=120,
        params:
            bm25=config["bm25"],
            sets=bm25_search_sets(bm25_collection),
        script:
            "../scripts/search_bm25.py"
