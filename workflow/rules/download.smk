# Remote inputs (Hugging Face models, ir_datasets data, OPUS zips, triples URLs), fetched
# by local rules into the configured caches before any job needs them: `snakemake
# download` fetches them all and writes results/downloads/lock.json (resolved revisions,
# checksums). Cluster jobs then run offline (cache.offline_jobs).


localrules:
    download,
    download_artifact,


rule download_artifact:
    output:
        "results/downloads/artifacts/{kind}/{key}.json",
    log:
        "results/logs/download_artifact/{kind}/{key}.log",
    wildcard_constraints:
        kind="huggingface|ir_datasets|opus|url",
        key=r"[A-Za-z0-9._-]+",
    conda:
        "../../envs/torch.yaml"
    params:
        artifact=artifact_params,
    script:
        "../scripts/download_artifact.py"


rule download:
    input:
        [artifact.marker for artifact in ARTIFACTS.values()],
    output:
        LOCK_FILE,
    log:
        "results/logs/download/lock.log",
    conda:
        "../../envs/evaluation.yaml"
    script:
        "../scripts/write_download_lock.py"
