# OPTICAL and the KD-MSE baseline: per language, distil the teacher's query encoder into a
# student on bitext only (GPU), once per seed, on the full training bitext (pairs-all) and on
# the learning curve's subsets (pairs-N). Checkpoints live in results/work/student/ so that a
# killed or preempted job resumes when rerun.


rule distill_student:
    input:
        bitext="results/data/bitext/{lang}",
        teacher="results/models/teacher",
    output:
        directory("results/models/student/{method}/{lang}/pairs-{pairs}/seed-{seed}"),
    log:
        "results/logs/distill_student/{method}/{lang}/pairs-{pairs}/seed-{seed}.log",
    benchmark:
        "results/benchmarks/distill_student/{method}/{lang}/pairs-{pairs}/seed-{seed}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        gpu=config["resources"]["train_gpus"],
        cpus_per_gpu=4,
        mem_mb=32000,
        runtime=config["resources"]["train_runtime"],
    params:
        loss=config["distill"]["loss"],
        train=distill_train_params,
        work_dir="results/work/student/{method}/{lang}/pairs-{pairs}/seed-{seed}",
    script:
        "../scripts/distill_student.py"


rule alignment_accuracy:
    input:
        bitext="results/data/bitext/{lang}",
        teacher="results/models/teacher",
        student=student_or_teacher_model,
    output:
        "results/eval/alignment/{encoder}/{lang}/seed-{seed}.json",
    log:
        "results/logs/alignment_accuracy/{encoder}/{lang}/seed-{seed}.log",
    benchmark:
        "results/benchmarks/alignment_accuracy/{encoder}/{lang}/seed-{seed}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        loss=config["distill"]["loss"],
    script:
        "../scripts/alignment_accuracy.py"
