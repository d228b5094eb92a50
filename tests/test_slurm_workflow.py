"""The real workflow (mini configuration) through SLURM with the CI profile (profiles/slurm-ci).

Needs the one-node cluster from .ci/slurm/start.sh; skipped when SLURM is absent or down,
except in CI (``CI=true``), where that is a failure.
1. The jobs behind two Swahili runs of the mini DAG (OPTICAL: distillation, dense search,
   evaluation; BM25 + NMT: NMT training and translation, PSQ, BM25 search, evaluation), on
   the local run's prepared data, teacher and indexes, run through sbatch and give the same
   per-query measures as the local run of the `mini_run` fixture; wall times are printed
   (`pytest -s`).
2. A training job (the teacher, on the local run's training triples) that gets SIGTERM
   (what SLURM sends before preemption) checkpoints and fails; the profile's retry
   resubmits it and the new SLURM job resumes from that checkpoint.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, mini_config
from test_slurm_toy import _sacct_works, require_cluster

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

PROFILE = REPO / "profiles/slurm-ci"


@pytest.fixture(autouse=True)
def _needs_cluster():
    require_cluster()


def _env(accounting: bool) -> dict[str, str]:
    env = dict(os.environ)
    if not accounting:
        # Cluster without slurmdbd: poll squeue and submit without an account.
        env.setdefault("OPTICAL_SLURM_STATUS_COMMAND", "squeue")
        env.setdefault("OPTICAL_SLURM_ACCOUNT", "")
    return env


def _slurm_cmd(workdir: Path, config: Path, *targets: str) -> list[str]:
    return [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir), "--configfile", str(config),
        "--profile", str(PROFILE), *targets,  # not after --configfile (it takes several)
    ]  # fmt: skip


def _dag_jobs(workdir: Path, config: Path, *targets: str) -> dict[str, int]:
    """Rule -> number of jobs Snakemake plans for this config (a local dry run)."""
    cmd = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir), "--cores", "1", *targets,
        # --quiet and --configfile take every argument after them: targets go first.
        "--dry-run", "--quiet", "rules", "--configfile", str(config),
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True)
    jobs: dict[str, int] = {}
    for rule, count in re.findall(r"^(\w+)\s+(\d+)\s*$", out.stdout, re.M):
        if rule != "total":
            jobs[rule] = int(count)
    return jobs


def _slurm_logs(workdir: Path) -> dict[str, set[str]]:
    """Rule -> SLURM job ids, from .snakemake/slurm_logs/rule_<rule>/[<wildcards>/]<id>.log."""
    logdir = workdir / ".snakemake/slurm_logs"
    logged: dict[str, set[str]] = {}
    for log in logdir.rglob("*.log"):
        rule = log.relative_to(logdir).parts[0].removeprefix("rule_")
        logged.setdefault(rule, set()).add(log.stem)
    return logged


def _sacct_states(run_id: str) -> dict[str, str]:
    """SLURM job id -> state of every job of one Snakemake run (the job name is the run id)."""
    cmd = [
        "sacct", "-X", "-n", "-P", "--name", run_id, "--starttime", "now-1days",
        "--format", "JobIDRaw,State",
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True)
    return dict(line.split("|", 1) for line in out.stdout.split())


# Per-query measures of runs that need the GPU rules after the teacher (distillation, dense
# search, NMT training and translation) and BM25, 11 of the mini DAG's jobs. The teacher's
# SLURM job is the preemption test's.
SLURM_TARGETS = [
    "results/eval/sw/optical/pairs-all/seed-13.tsv",
    "results/eval/sw/bm25_nmt.tsv",
]


def _local_wall_seconds(workdir: Path) -> float | None:
    """Wall time of the (single) local Snakemake run in ``workdir``, from its log file:
    the name holds the start time, the modification time is the end."""
    logs = sorted((workdir / ".snakemake/log").glob("*.snakemake.log"))
    if len(logs) != 1:
        return None
    start = dt.datetime.strptime(logs[0].name.split(".snakemake")[0], "%Y-%m-%dT%H%M%S.%f")
    return logs[0].stat().st_mtime - start.timestamp()


# Copied from the local run: the inputs of the jobs under test, not what they compute.
SEEDED = ["results/data", "results/models/teacher", "results/indexes"]


def test_mini_workflow_through_slurm_equals_local(mini_run, tmp_path):
    accounting = _sacct_works()
    config = mini_run / "mini.yaml"  # the same settings (and tiny backbone) as the local run
    for part in SEEDED:
        shutil.copytree(mini_run / part, tmp_path / part, symlinks=True)
    planned = _dag_jobs(tmp_path, config, *SLURM_TARGETS)
    assert {"distill_student", "train_nmt", "translate_queries", "search_dense_student"} <= set(
        planned
    )
    assert "train_teacher" not in planned and "prepare_collection" not in planned
    assert any(rule.startswith("search_bm25_") for rule in planned), planned

    start = time.perf_counter()
    result = subprocess.run(
        _slurm_cmd(tmp_path, config, *SLURM_TARGETS),
        cwd=tmp_path,
        env=_env(accounting),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    slurm_s = time.perf_counter() - start
    log = result.stdout + result.stderr
    (tmp_path / "snakemake.out").write_text(log)
    local_s = _local_wall_seconds(mini_run)
    local = f"{local_s:.0f} s" if local_s is not None else "not measured"
    print(
        f"\nmini workflow: {sum(planned.values())} SLURM jobs (part of the DAG) in "
        f"{slurm_s:.0f} s through SLURM; the whole DAG locally (--cores 2): {local}"
    )
    assert result.returncode == 0, log[-6000:]

    # Every planned job went through sbatch once (no retry needed): one SLURM log per job.
    logged = _slurm_logs(tmp_path)
    assert {rule: len(ids) for rule, ids in logged.items()} == planned
    submitted = re.findall(r"submitted with SLURM jobid (\d+)", log)
    assert len(submitted) == sum(planned.values())
    assert set(submitted) == set().union(*logged.values())
    if accounting:
        run_id = re.search(r"SLURM run ID: (\S+)", log).group(1)
        states = _sacct_states(run_id)
        assert set(states) == set(submitted)
        assert set(states.values()) == {"COMPLETED"}

    # Same per-query numbers as the local run (same seed, CPU training).
    for target in SLURM_TARGETS:
        assert (tmp_path / target).read_text() == (mini_run / target).read_text(), target


def _checkpoint_steps(workdir: Path) -> list[int]:
    folder = workdir / "results/work/teacher/checkpoints"
    if not folder.is_dir():
        return []
    return sorted(int(p.name.split("-")[1]) for p in folder.glob("step-*") if p.is_dir())


def _squeue_state(job_id: str) -> str:
    out = subprocess.run(
        ["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True, timeout=30
    )
    return out.stdout.strip()


def _run_id(output: Path) -> str | None:
    found = re.search(r"SLURM run ID: (\S+)", output.read_text(errors="replace"))
    return found.group(1) if found else None


def test_preempted_training_job_resumes_through_slurm(mini_run, tmp_path):
    accounting = _sacct_works()
    config = mini_config(tmp_path, max_steps=60, checkpoint_every=5, log_every=1)
    # The teacher's training triples from the local run: train_teacher is the only job.
    shutil.copytree(mini_run / "results/data", tmp_path / "results/data", symlinks=True)
    assert _dag_jobs(tmp_path, config, "results/models/teacher") == {"train_teacher": 1}
    output = tmp_path / "snakemake.out"
    with open(output, "w") as sink:
        proc = subprocess.Popen(
            _slurm_cmd(tmp_path, config, "results/models/teacher"),
            cwd=tmp_path,
            env=_env(accounting),
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 600
    job = None
    try:
        # Wait for the running train_teacher job and a checkpoint at step >= 10.
        while True:
            assert proc.poll() is None, (
                "snakemake ended before the SIGTERM:\n" + (output.read_text()[-4000:])
            )
            assert time.monotonic() < deadline, "no train_teacher checkpoint at step 10 in time"
            if job is None:
                for candidate in sorted(_slurm_logs(tmp_path).get("train_teacher", ())):
                    if _squeue_state(candidate) == "RUNNING":
                        job = candidate
            if job is not None and max(_checkpoint_steps(tmp_path), default=0) >= 10:
                break
            time.sleep(0.2)
        subprocess.run(["scancel", "--signal=TERM", job], check=True, timeout=30)
        proc.wait(timeout=600)  # the retry resubmits the job; it resumes and finishes
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        run_id = _run_id(output)
        if run_id:  # never a plain scancel: plugin 2.8.0 then waits forever (profiles/README)
            left = subprocess.run(
                ["squeue", "-h", "--name", run_id, "-o", "%i"],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout.split()
            for leftover in left:
                subprocess.run(["scancel", "--signal=TERM", leftover], timeout=30)
    log = output.read_text()
    assert proc.returncode == 0, log[-6000:]

    records = [
        json.loads(line) for line in (tmp_path / "results/models/teacher/metrics.jsonl").open()
    ]
    interrupted = [r for r in records if r.get("event") == "interrupted"]
    resumes = [i for i, r in enumerate(records) if r.get("event") == "resume"]
    assert len(interrupted) == 1 and len(resumes) == 1, records
    stopped_at = interrupted[0]["step"]
    assert 10 <= stopped_at < 60
    assert interrupted[0]["signal"] == signal.SIGTERM
    # The SIGTERM checkpoint (the step that was running) is the one the retry resumes from.
    assert records[resumes[0]]["step"] == stopped_at
    first_after = next(r["step"] for r in records[resumes[0] + 1 :] if "loss" in r)
    assert first_after == stopped_at + 1
    steps = [r["step"] for r in records if "loss" in r]
    assert steps == list(range(1, 61))  # each step logged once: nothing redone from zero

    # Two SLURM jobs for train_teacher: the signalled one failed, its retry completed.
    teacher_jobs = sorted(_slurm_logs(tmp_path)["train_teacher"], key=int)
    assert len(teacher_jobs) == 2 and teacher_jobs[0] == job
    if accounting:
        states = _sacct_states(_run_id(output))
        assert [states[j] for j in teacher_jobs] == ["FAILED", "COMPLETED"], states
    print(f"\nteacher job {job} got SIGTERM at step {stopped_at}; retry {teacher_jobs[1]} resumed")
