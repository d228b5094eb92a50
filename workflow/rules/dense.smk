# Dense retrieval: the teacher encodes the English documents once per collection (sharded
# on disk); every query encoder (teacher, students) searches that index.


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
        gpu=1,
        cpus_per_gpu=4,
        mem_mb=32000,
        runtime=600,
    params:
        dense=config["dense"],
    script:
        "../scripts/encode_documents.py"


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
        gpu=1,
        cpus_per_gpu=4,
        mem_mb=32000,
        runtime=120,
    params:
        dense=config["dense"],
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
        gpu=1,
        cpus_per_gpu=4,
        mem_mb=32000,
        runtime=120,
    params:
        dense=config["dense"],
        tag="{student}.{lang}.pairs-{pairs}.seed-{seed}",
    script:
        "../scripts/search_dense.py"
