# OPTICAL and the KD-MSE baseline: per language, distil the teacher's query encoder into a
# student on bitext only (GPU). Checkpoints live in results/work/student/ so that a killed
# or preempted job resumes when rerun.


rule distill_student:
    input:
        bitext="results/data/bitext/{lang}",
        teacher="results/models/teacher",
    output:
        directory("results/models/student/{method}/{lang}"),
    log:
        "results/logs/distill_student/{method}/{lang}.log",
    benchmark:
        "results/benchmarks/distill_student/{method}/{lang}.tsv"
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
        work_dir="results/work/student/{method}/{lang}",
    script:
        "../scripts/distill_student.py"


rule alignment_accuracy:
    input:
        bitext="results/data/bitext/{lang}",
        teacher="results/models/teacher",
        student=student_or_teacher_model,
    output:
        "results/eval/alignment/{encoder}/{lang}.json",
    log:
        "results/logs/alignment_accuracy/{encoder}/{lang}.log",
    benchmark:
        "results/benchmarks/alignment_accuracy/{encoder}/{lang}.tsv"
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
