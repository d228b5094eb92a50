# The teacher retrieval model: a transformer encoder trained for passage ranking on the
# triples (GPU). Checkpoints live in results/work/teacher so that a killed or preempted
# job resumes when rerun; the declared output is only the final model.


rule train_teacher:
    input:
        triples="results/data/mmarco/triples.tsv",
        artifacts=teacher_artifacts,
    output:
        directory("results/models/teacher"),
    log:
        "results/logs/train_teacher/teacher.log",
    benchmark:
        "results/benchmarks/train_teacher/teacher.tsv"
    # First on the critical path: every dense run and every student waits for the teacher.
    priority: 10
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        **gpu_request(config["resources"]["train_gpus"]),
        cpus_per_gpu=4,
        mem_mb=mem_mb(32000),
        runtime=runtime(config["resources"]["train_runtime"]),
    params:
        model=config["teacher"]["model"],
        train=teacher_train_params,
        work_dir="results/work/teacher",
    script:
        "../scripts/train_teacher.py"
