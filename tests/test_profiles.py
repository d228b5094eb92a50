"""The SLURM profiles: they know every rule that asks for a GPU (they map those to GPU
partitions), and a dry run through profiles/slurm with a site's OPTICAL_SLURM_* settings
plans the sbatch arguments the site asked for (no cluster needed)."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[1]


def gpu_rules() -> set[str]:
    rules = set()
    for smk in (REPO / "workflow/rules").glob("*.smk"):
        for block in re.split(r"\n(?=rule )", smk.read_text()):
            name = re.match(r"rule (\w+):", block)
            if name and re.search(r"^\s+(gpu=|\*\*gpu_request\()", block, re.M):
                rules.add(name.group(1))
    return rules


def test_workflow_has_gpu_rules():
    assert {"train_teacher", "distill_student", "encode_documents"} <= gpu_rules()


@pytest.mark.parametrize("profile", ["slurm", "slurm-ci"])
def test_profile_lists_every_gpu_rule(profile):
    text = (REPO / "profiles" / profile / "config.yaml").read_text()
    listed = set(re.findall(r'"(\w+)"', text.split("gpu_rules = [", 1)[1].split("]", 1)[0]))
    assert listed == gpu_rules()


def test_bare_profile_name_resolves_from_the_repository_root():
    link = REPO / "slurm"
    assert link.is_symlink() and (link / "config.yaml").is_file()


# ------------------------------------------------------------ profiles/slurm, dry run

# A site's settings, as profiles/README.md documents them.
SITE = {
    "OPTICAL_SLURM_PARTITION": "cpuq",
    "OPTICAL_SLURM_ACCOUNT": "proj1",
    "OPTICAL_SLURM_GPU_PARTITION": "gpuq",
    "OPTICAL_SLURM_GPU_MODEL": "a100",
    "OPTICAL_SLURM_CPUS_PER_GPU": "8",
    "OPTICAL_SLURM_QOS": "high",
    "OPTICAL_SLURM_JOBS": "7",
    "OPTICAL_SLURM_RUNTIME": "90",
    "OPTICAL_SLURM_MEM_MB": "5000",
    "OPTICAL_SLURM_STATUS_COMMAND": "squeue",
    "OPTICAL_SLURM_GPU_RULES": "heavy",
}


class _Resources(dict):
    """A job's resources as the executor reads them (``job.resources.x`` and ``.get``)."""

    __getattr__ = dict.__getitem__


def _dry_run_jobs(snakefile: Path, workdir: Path, *args: str) -> dict[str, list[SimpleNamespace]]:
    """Rule -> its jobs (threads, resources) as a dry run through profiles/slurm plans them,
    with :data:`SITE` in the environment; no cluster is contacted."""
    cmd = [
        sys.executable, "-m", "snakemake", "--snakefile", str(snakefile), "--directory",
        str(workdir), "--profile", str(REPO / "profiles/slurm"), "--dry-run", *args,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTICAL_SLURM_")}
    out = subprocess.run(
        cmd, env={**env, **SITE}, capture_output=True, text=True, timeout=300, cwd=workdir
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return _planned_jobs(out.stdout)


def _planned_jobs(dry_run_output: str) -> dict[str, list[SimpleNamespace]]:
    """Rule -> its jobs (name, threads, resources, local) from a dry run's printout."""
    jobs: dict[str, list[SimpleNamespace]] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", dry_run_output):
        name = re.match(r"(?:local)?rule (\w+):", block)
        if not name:
            continue
        threads = re.search(r"^\s+threads: (\d+)", block, re.M)
        resources = _Resources()
        line = re.search(r"^\s+resources: (.*)$", block, re.M)
        for item in line.group(1).split(", ") if line else []:
            key, value = item.split("=", 1)
            resources[key] = int(value) if value.isdigit() else value
        job = SimpleNamespace(
            name=name.group(1), threads=int(threads.group(1)) if threads else 1,
            resources=resources, local=block.startswith("localrule"),
        )  # fmt: skip
        jobs.setdefault(job.name, []).append(job)
    return jobs


def _sbatch(job: SimpleNamespace, qos: str | None) -> str:
    """The sbatch command line of snakemake-executor-plugin-slurm 2.8.0 for ``job``: its own
    ``get_submit_command`` and ``set_gres_string``; the -A and -p arguments formatted as its
    executor does once it has checked them with sacctmgr and sinfo."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    res = job.resources
    params = {
        "run_uuid": "run-id",
        "slurm_logfile": f".snakemake/slurm_logs/rule_{job.name}/%j.log",
        "comment_str": f"rule_{job.name}",
        "account": f" -A {shlex.quote(str(res['slurm_account']))}" if "slurm_account" in res else "",
        "partition": f" -p {shlex.quote(res['slurm_partition'])}" if "slurm_partition" in res else "",
        "workdir": "/work",
    }  # fmt: skip
    settings = SimpleNamespace(requeue=False, no_requeue=False, qos=qos, reservation=None)
    return get_submit_command(job, params, settings=settings) + set_gres_string(job)


def test_slurm_profile_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the profile hands Snakemake's command line (read when Snakemake starts)."""
    from snakemake.cli import parse_args

    for key, value in SITE.items():
        monkeypatch.setenv(key, value)
    _, args = parse_args(["--profile", str(REPO / "profiles/slurm"), "--dry-run"])
    assert args.executor == "slurm" and args.jobs == 7 and args.retries == 2
    assert args.slurm_qos == "high" and args.slurm_status_command == "squeue"
    assert args.latency_wait == 60 and args.rerun_incomplete and args.keep_going


def test_slurm_profile_dry_run_of_a_rule_without_resources(tmp_path: Path) -> None:
    """Rules that declare nothing get the site's defaults; OPTICAL_SLURM_GPU_RULES adds a
    rule to the GPU settings."""
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text((REPO / "tests/data/slurm_toy/Snakefile").read_text())
    jobs = _dry_run_jobs(snakefile, tmp_path)
    make = jobs["make"][0].resources
    assert (make["runtime"], make["mem_mb"]) == (90, 5000)
    assert (make["slurm_partition"], make["slurm_account"]) == ("cpuq", "proj1")
    heavy = jobs["heavy"][0]
    assert heavy.resources["slurm_partition"] == "gpuq"
    assert (heavy.resources["gpu_model"], heavy.resources["cpus_per_gpu"]) == ("a100", 8)
    sbatch = " ".join(_sbatch(jobs["make"][0], "high").split())
    for part in ("-A proj1", "-p cpuq", "-t 90", "--qos=high", "--mem 5000", "--ntasks=1",
                 "--cpus-per-task=1"):  # fmt: skip
        assert f" {part} " in f"{sbatch} ", (part, sbatch)
    assert "--gpus" not in sbatch


def test_slurm_profile_dry_run_of_the_workflow(tmp_path: Path) -> None:
    """The mini workflow through profiles/slurm: every job's partition, account and GPU
    request, and the sbatch lines of a GPU and a CPU rule."""
    from conftest import mini_config

    config = mini_config(tmp_path)
    jobs = _dry_run_jobs(REPO / "Snakefile", tmp_path, "--configfile", str(config))
    assert jobs.keys() >= gpu_rules() | {"index_bm25", "main_table"}
    for rule, planned in jobs.items():
        for job in planned:
            res = job.resources
            if job.local:
                continue
            assert res["slurm_account"] == "proj1", rule
            if rule in gpu_rules():
                assert res["slurm_partition"] == "gpuq", rule
                assert (res["gpu_model"], res["cpus_per_gpu"]) == ("a100", 8), rule
            else:
                assert res["slurm_partition"] == "cpuq", rule
                assert "gpu_model" not in res and not res.get("gpu"), rule

    teacher = _sbatch(jobs["train_teacher"][0], "high")
    for part in (" -A proj1", " -p gpuq", " --qos=high", " --mem 32000", " --cpus-per-gpu=8",
                 " --gpus=a100:1"):  # fmt: skip
        assert part in teacher, (part, teacher)
    assert "--cpus-per-task" not in teacher and "--ntasks" not in teacher
    bm25 = jobs["index_bm25"][0]
    line = _sbatch(bm25, "high")
    assert f" --cpus-per-task={bm25.threads}" in line and " -p cpuq" in line
    assert "--gpus" not in line and " --ntasks=1" in line


def test_train_gpus_sets_the_gpus_of_the_training_jobs_only(tmp_path: Path) -> None:
    """README: resources.train_gpus above 1 asks SLURM for that many GPUs per training job:
    the demo DAG through profiles/slurm with train_gpus 2 plans train_teacher and every
    distill_student with 2 GPUs, while train_nmt (gpu_request(1)) and the other GPU rules
    keep 1."""
    import yaml

    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    cfg["resources"]["train_gpus"] = 2
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    jobs = _dry_run_jobs(REPO / "Snakefile", tmp_path, "--configfile", str(config))
    gpus = {rule: {job.resources.get("gpu") for job in planned} for rule, planned in jobs.items()}
    assert gpus["train_teacher"] == gpus["distill_student"] == {2}
    assert len(jobs["distill_student"]) > 1 and gpus["train_nmt"] == {1}
    assert all(gpus[rule] == {1} for rule in gpu_rules() - {"train_teacher", "distill_student"})
    assert " --gpus=a100:2" in _sbatch(jobs["train_teacher"][0], None)
    assert " --gpus=a100:2" in _sbatch(jobs["distill_student"][0], None)
    assert " --gpus=a100:1" in _sbatch(jobs["train_nmt"][0], None)


def _render(monkeypatch, **env: str) -> dict:
    import yte

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return yte.process_yaml((REPO / "profiles/slurm/config.yaml").read_text())


def test_slurm_profile_sends_sigterm_before_the_limit(monkeypatch):
    from snakemake_executor_plugin_slurm.validation import validate_slurm_extra

    monkeypatch.delenv("OPTICAL_SLURM_SIGNAL_S", raising=False)
    extra = _render(monkeypatch)["default-resources"]["slurm_extra"]
    assert eval(extra) == "--signal=TERM@300"  # a string resource, evaluated by Snakemake

    class Job:
        resources = type("R", (), {"slurm_extra": eval(extra)})()

    validate_slurm_extra(Job())  # the plugin accepts it
    assert (
        "slurm_extra" not in _render(monkeypatch, OPTICAL_SLURM_SIGNAL_S="0")["default-resources"]
    )


def test_gres_replaces_the_gpu_model(monkeypatch):
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    cfg = _render(
        monkeypatch,
        OPTICAL_SLURM_GPU_PARTITION="gpu",
        OPTICAL_SLURM_GPU_MODEL="a100",
        OPTICAL_SLURM_GRES="gpu:a100",
    )
    assert all("gpu_model" not in v for v in cfg["set-resources"].values())

    class Resources(dict):
        __getattr__ = dict.get

    class Job:
        resources = Resources(gpu=0, gres="gpu:a100:2")  # what gpu_request(2) asks for

    assert set_gres_string(Job()).strip() == "--gres=gpu:a100:2"


def _dry_run_resources(
    tmp_path, rules: list[str], env: dict, attempt: int = 1, **resources
) -> dict[str, _Resources]:
    """Rule -> the resources of its (first) job in a dry run of the demo DAG without a
    profile, planned for ``attempt`` (Snakemake's ``--attempt``: what a retry of a failed
    job evaluates)."""
    import yaml

    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    cfg["resources"].update(resources)
    tmp_path.mkdir()
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "snakemake", "-n", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(tmp_path), "--cores", "1", "results/indexes/dense/demo",
           "--configfile", str(config), "--attempt", str(attempt)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env})
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = _planned_jobs(done.stdout)
    return {rule: jobs[rule][0].resources for rule in rules}


def test_rules_ask_for_gres_and_capped_runtimes(tmp_path, monkeypatch):
    monkeypatch.delenv("OPTICAL_SLURM_GRES", raising=False)
    plain = _dry_run_resources(tmp_path / "a", ["encode_documents"], {})["encode_documents"]
    assert plain["gpu"] == 1 and plain["runtime"] == 600
    assert not any("gres" in f"{key}={value}" for key, value in plain.items())
    gres = _dry_run_resources(
        tmp_path / "b", ["encode_documents"], {"OPTICAL_SLURM_GRES": "gpu:a100"}, max_runtime=45
    )["encode_documents"]
    assert gres["gpu"] == 0 and gres["gres"] == "gpu:a100:1" and gres["runtime"] == 45


def test_retried_jobs_ask_for_attempt_times_the_resources_up_to_the_caps(tmp_path, monkeypatch):
    """README: a resubmitted job gets memory and runtime times the attempt, capped by
    resources.max_mem_mb / max_runtime. At attempt 3 with caps of 64000 MB and 1000 min:
    prepare_collection (4000 MB, 60 min at first) stays under both, train_teacher (32000 MB,
    train_runtime 60) hits the memory cap, encode_documents (32000 MB, 600 min) both."""
    monkeypatch.delenv("OPTICAL_SLURM_GRES", raising=False)
    rules = ["prepare_collection", "train_teacher", "encode_documents"]
    caps = {"max_mem_mb": 64000, "max_runtime": 1000}
    planned = _dry_run_resources(tmp_path / "run", rules, {}, attempt=3, **caps)
    got = {rule: (res["mem_mb"], res["runtime"]) for rule, res in planned.items()}
    assert got == {
        "prepare_collection": (3 * 4000, 3 * 60),
        "train_teacher": (64000, 3 * 60),
        "encode_documents": (64000, 1000),
    }


def test_slurm_tests_skip_without_a_cluster_but_fail_under_ci(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A SLURM test with no cluster skips on a laptop and fails in CI, where a cluster that
    did not come up must not pass unnoticed."""
    from test_slurm_toy import require_cluster

    monkeypatch.setenv("PATH", "/nonexistent")  # no sinfo, no sbatch
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="sinfo, sbatch"):
        require_cluster()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true but no SLURM cluster"):
        require_cluster()
