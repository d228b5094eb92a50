# OPTICAL and the KD-MSE baseline: per language, distil the teacher's query encoder into a
# student on bitext only (GPU), once per seed, on the full training bitext (pairs-all) and on
# the learning curve's subsets (pairs-N). A student's name is its method, optionally with a
# variant (`optical+epsilon-0.05`, see optical_clir.variants) or `+selected` (the candidate
# the dev criterion chose, see select_student). Checkpoints live in results/work/student/ so
# that a killed or preempted job resumes when rerun.


rule distill_student:
    input:
        unpack(distill_inputs),
    output:
        directory("results/models/student/{student}/{lang}/pairs-{pairs}/seed-{seed}"),
    log:
        "results/logs/distill_student/{student}/{lang}/pairs-{pairs}/seed-{seed}.log",
    benchmark:
        "results/benchmarks/distill_student/{student}/{lang}/pairs-{pairs}/seed-{seed}.tsv"
    priority: 5
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        **gpu_request(config["resources"]["train_gpus"]),
        cpus_per_gpu=4,
        mem_mb=mem_mb(32000),
        runtime=runtime(config["resources"]["train_runtime"]),
    params:
        student=distill_params,
        work_dir="results/work/student/{student}/{lang}/pairs-{pairs}/seed-{seed}",
    script:
        "../scripts/distill_student.py"


# The candidate of distill.select with the best dev criterion, per method and language.
rule select_student:
    input:
        selection_inputs,
    output:
        "results/selection/{method}/{lang}.json",
    log:
        "results/logs/select_student/{method}/{lang}.log",
    benchmark:
        "results/benchmarks/select_student/{method}/{lang}.tsv"
    conda:
        "../../envs/torch.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        candidates=candidate_names,
        seeds=DISTILL_SEEDS,
    script:
        "../scripts/select_student.py"


# The selected full-bitext student, published under `<method>+selected` (hard links).
rule publish_selected_student:
    input:
        selection="results/selection/{method}/{lang}.json",
        candidates=selection_inputs,
    output:
        directory(
            "results/models/student/{method}+selected/{lang}/pairs-all/seed-{seed}"
        ),
    log:
        "results/logs/publish_selected_student/{method}/{lang}/seed-{seed}.log",
    benchmark:
        "results/benchmarks/publish_selected_student/{method}/{lang}/seed-{seed}.tsv"
    conda:
        "../../envs/torch.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/publish_selected_student.py"


ruleorder: publish_selected_student > distill_student


rule selection_table:
    input:
        selection_files(),
    output:
        md=report(
            "results/tables/selection.md",
            caption="../report/selection_table.rst",
            category="Tables",
        ),
        csv="results/tables/selection.csv",
    log:
        "results/logs/selection_table/selection.log",
    benchmark:
        "results/benchmarks/selection_table/selection.tsv"
    conda:
        "../../envs/torch.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        provenance=PROVENANCE,
    script:
        "../scripts/selection_table.py"


rule alignment_accuracy:
    input:
        bitext="results/data/bitext/{lang}",
        teacher="results/models/teacher",
        student=alignment_model,
    output:
        "results/eval/alignment/{encoder}/{lang}/seed-{seed}.json",
    log:
        "results/logs/alignment_accuracy/{encoder}/{lang}/seed-{seed}.log",
    benchmark:
        "results/benchmarks/alignment_accuracy/{encoder}/{lang}/seed-{seed}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        loss=default_optical_loss(),
    script:
        "../scripts/alignment_accuracy.py"


# The zero-shot teacher's dev criterion: the reference line of the ablation table.
rule zero_shot_dev_criterion:
    input:
        bitext="results/data/bitext/{lang}",
        teacher="results/models/teacher",
    output:
        "results/eval/dev_criterion/teacher/{lang}.json",
    log:
        "results/logs/zero_shot_dev_criterion/{lang}.log",
    benchmark:
        "results/benchmarks/zero_shot_dev_criterion/{lang}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    script:
        "../scripts/zero_shot_dev_criterion.py"


rule ablation_table:
    input:
        unpack(ablation_inputs),
    output:
        md=report(
            "results/tables/ablation.md",
            caption="../report/ablation_table.rst",
            category="Tables",
        ),
        csv="results/tables/ablation.csv",
        png=report(
            "results/figures/ablation.png",
            caption="../report/ablation_figure.rst",
            category="Figures",
        ),
        pdf="results/figures/ablation.pdf",
    log:
        "results/logs/ablation_table/ablation.log",
    benchmark:
        "results/benchmarks/ablation_table/ablation.tsv"
    conda:
        "../../envs/torch.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        entries=ablation_entries(),
        measure=config["evaluation"]["table_measure"],
        correction=config["evaluation"]["correction"],
        alpha=config["evaluation"]["alpha"],
        language_names={l: config["languages"][l]["name"] for l in LANGUAGES},
        provenance=PROVENANCE,
    script:
        "../scripts/ablation_table.py"
