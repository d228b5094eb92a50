# Neural machine translation baselines: translate each language's queries into English
# (a public model, or a small transformer the workflow trains on the language's bitext),
# score the translations with sacrebleu, and search with them (BM25 + NMT, teacher + NMT).


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
        gpu=1,
        cpus_per_gpu=4,
        mem_mb=16000,
        runtime=config["resources"]["train_runtime"],
    params:
        train=nmt_train_params,
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
    threads: 2
    resources:
        gpu=1,
        cpus_per_gpu=4,
        mem_mb=16000,
        runtime=120,
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
