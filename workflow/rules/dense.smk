# Dense retrieval: the teacher encodes the English documents once per collection (sharded
# on disk); every query encoder (teacher, students) searches that index, exactly or, for
# collections on backend faiss_ivf, through a candidate stage built once per collection.


rule encode_documents:
    input:
        model="results/models/teacher",
        docs="results/data/collections/{collection}/docs.jsonl",
    output:
        directory("results/indexes/dense/{collection}"),
    log:
        "results/logs/encode_documents/{collection}.log",
    benchmark:
        "results/benchmarks/encode_documents/{collection}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        **gpu_request(1),
        cpus_per_gpu=4,
        mem_mb=mem_mb(config["dense"]["encode_mem_mb"]),
        runtime=runtime(config["dense"]["encode_runtime"]),
    params:
        dense=dense_encode_params(),
    script:
        "../scripts/encode_documents.py"


# The candidate stage of backend faiss_ivf: a faiss IVF index over every document token.
rule index_dense_ann:
    input:
        "results/indexes/dense/{collection}",
    output:
        directory("results/indexes/dense_ann/{collection}"),
    log:
        "results/logs/index_dense_ann/{collection}.log",
    benchmark:
        "results/benchmarks/index_dense_ann/{collection}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: config["dense"]["ann"]["threads"]
    resources:
        mem_mb=mem_mb(config["dense"]["ann_mem_mb"]),
        runtime=runtime(config["dense"]["ann_runtime"]),
    params:
        ann=ann_build_params,
    script:
        "../scripts/index_dense_ann.py"


rule search_dense_teacher:
    input:
        unpack(teacher_search_inputs),
    output:
        "results/runs/{collection}/teacher/{qset}.trec",
    log:
        "results/logs/search_dense_teacher/{collection}/{qset}.log",
    benchmark:
        "results/benchmarks/search_dense_teacher/{collection}/{qset}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        **gpu_request(1),
        cpus_per_gpu=4,
        mem_mb=mem_mb(config["dense"]["search_mem_mb"]),
        runtime=runtime(config["dense"]["search_runtime"]),
    params:
        dense=teacher_search_params,
        tag="teacher.{qset}",
    script:
        "../scripts/search_dense.py"


rule search_dense_student:
    input:
        unpack(student_search_inputs),
    output:
        "results/runs/student/{student}/{lang}/pairs-{pairs}/seed-{seed}.trec",
    log:
        "results/logs/search_dense_student/{student}/{lang}/pairs-{pairs}/seed-{seed}.log",
    benchmark:
        "results/benchmarks/search_dense_student/{student}/{lang}/pairs-{pairs}/seed-{seed}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        **gpu_request(1),
        cpus_per_gpu=4,
        mem_mb=mem_mb(config["dense"]["search_mem_mb"]),
        runtime=runtime(config["dense"]["search_runtime"]),
    params:
        dense=student_search_params,
        tag="{student}.{lang}.pairs-{pairs}.seed-{seed}",
    script:
        "../scripts/search_dense.py"
