# Bitext per language: download (OPUS, Hugging Face) or read local files, clean, report what
# was dropped and why, sample a configured number of pairs with a seed, split train/dev.


rule prepare_bitext:
    input:
        unpack(bitext_inputs),
    output:
        directory("results/data/bitext/{lang}"),
    log:
        "results/logs/prepare_bitext/{lang}.log",
    benchmark:
        "results/benchmarks/prepare_bitext/{lang}.tsv"
    conda:
        "../../envs/evaluation.yaml"
    resources:
        mem_mb=mem_mb(8000),
        runtime=runtime(240),
    params:
        bitext=bitext_params,
    script:
        "../scripts/prepare_bitext.py"
