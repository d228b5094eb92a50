# Translation baselines: neural machine translation of each language's queries into English
# (a public model, or a small transformer the workflow trains on the language's bitext),
# scored with sacrebleu; and probabilistic structured queries (PSQ) from word translation
# probabilities learned on the same bitext. BM25 and the teacher search with them.


rule train_nmt:
    input:
        bitext="results/data/bitext/{lang}",
    output:
        directory("results/models/nmt/{nmt}/{lang}"),
    log:
        "results/logs/train_nmt/{nmt}/{lang}.log",
    benchmark:
        "results/benchmarks/train_nmt/{nmt}/{lang}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        **gpu_request(1),
        cpus_per_gpu=4,
        mem_mb=mem_mb(16000),
        runtime=runtime(config["resources"]["train_runtime"]),
    params:
        nmt=nmt_train_params,
        work_dir="results/work/nmt/{nmt}/{lang}",
    script:
        "../scripts/train_nmt.py"


rule translate_queries:
    input:
        unpack(translate_inputs),
    output:
        translations="results/translations/{nmt}/{lang}.tsv",
        english="results/translations/{nmt}/{lang}.en.tsv",
    log:
        "results/logs/translate_queries/{nmt}/{lang}.log",
    benchmark:
        "results/benchmarks/translate_queries/{nmt}/{lang}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        **gpu_request(1),
        cpus_per_gpu=4,
        mem_mb=mem_mb(16000),
        runtime=runtime(120),
    params:
        translate=translate_params,
    script:
        "../scripts/translate_queries.py"


rule translation_table:
    input:
        unpack(translation_table_inputs),
    output:
        md=report(
            "results/tables/translation.md",
            caption="../report/translation_table.rst",
            category="Tables",
        ),
        csv="results/tables/translation.csv",
    log:
        "results/logs/translation_table/translation.log",
    benchmark:
        "results/benchmarks/translation_table/translation.tsv"
    conda:
        "../../envs/evaluation.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        entries=translation_table_entries,
        provenance=PROVENANCE,
    script:
        "../scripts/translation_table.py"


rule train_psq:
    input:
        unpack(psq_inputs),
    output:
        table="results/models/psq/{lang}/translation_table.tsv",
        queries="results/translations/psq/{lang}.jsonl",
    log:
        "results/logs/train_psq/{lang}.log",
    benchmark:
        "results/benchmarks/train_psq/{lang}.tsv"
    conda:
        "../../envs/torch.yaml"
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        psq=config["bm25"]["psq"],
    script:
        "../scripts/train_psq.py"
