# Evaluation: per-query measures with ir_measures for every (language, system) run,
# then paired significance tests and the main table.


rule evaluate_run:
    input:
        unpack(evaluation_inputs),
    output:
        "results/eval/{lang}/{system}.tsv",
    log:
        "results/logs/evaluate_run/{lang}/{system}.log",
    benchmark:
        "results/benchmarks/evaluate_run/{lang}/{system}.tsv"
    conda:
        "../../envs/evaluation.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        measures=config["evaluation"]["measures"],
    script:
        "../scripts/evaluate_run.py"


rule evaluate_student_run:
    input:
        unpack(evaluation_inputs),
    output:
        "results/eval/{lang}/{student}/pairs-{pairs}/seed-{seed}.tsv",
    log:
        "results/logs/evaluate_student_run/{lang}/{student}/pairs-{pairs}/seed-{seed}.log",
    benchmark:
        "results/benchmarks/evaluate_student_run/{lang}/{student}/pairs-{pairs}/seed-{seed}.tsv"
    conda:
        "../../envs/evaluation.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        measures=config["evaluation"]["measures"],
    script:
        "../scripts/evaluate_run.py"


rule main_table:
    input:
        unpack(main_table_inputs),
    output:
        md=report(
            "results/tables/main.md",
            caption="../report/main_table.rst",
            category="Tables",
        ),
        csv="results/tables/main.csv",
        tex="results/tables/main.tex",
        measures="results/tables/measures.csv",
        seeds="results/tables/seeds.csv",
    log:
        "results/logs/main_table/main.log",
    benchmark:
        "results/benchmarks/main_table/main.tsv"
    conda:
        "../../envs/evaluation.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        table=main_table_params,
    script:
        "../scripts/main_table.py"


rule alignment_table:
    input:
        alignment_table_inputs,
    output:
        md=report(
            "results/tables/alignment.md",
            caption="../report/alignment_table.rst",
            category="Tables",
        ),
        csv="results/tables/alignment.csv",
    log:
        "results/logs/alignment_table/alignment.log",
    benchmark:
        "results/benchmarks/alignment_table/alignment.tsv"
    conda:
        "../../envs/torch.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        provenance=PROVENANCE,
    script:
        "../scripts/alignment_table.py"
