"""A toy workflow run through a real SLURM cluster with the CI profile (profiles/slurm-ci).

Needs the one-node cluster from .ci/slurm/start.sh; skipped when SLURM is absent or down,
except in CI (``CI=true``, set by .ci/run), where that is a failure.
Checks that every job went through sbatch (a SLURM job id in its output, in the plugin's
per-job log folder and, with accounting, in sacct) and that a failing job is retried.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import pytest

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[1]
TOY = REPO / "tests/data/slurm_toy/Snakefile"
PROFILE = REPO / "profiles/slurm-ci"
# Successful jobs per rule (the rule `all` is local); flaky fails once, then succeeds.
EXPECTED = {"make": 1, "heavy": 1, "flaky": 1, "summary": 1}


def _cluster_problem() -> str | None:
    """Why the SLURM test cannot run here, or None when a node is ready."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "SLURM client tools (sinfo, sbatch) not found; run .ci/slurm/start.sh"
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sinfo failed: {exc}"
    if out.returncode != 0:
        return f"SLURM cluster not up (sinfo: {out.stderr.strip()}); run .ci/slurm/start.sh"
    states = out.stdout.split()
    if not any(s.rstrip("*~#!%$@^-") in {"idle", "mix", "alloc"} for s in states):
        return f"no usable SLURM node (states: {states or 'none'}); run .ci/slurm/start.sh"
    return None


def skip_or_fail_in_ci(reason: str) -> NoReturn:
    """Skip, but fail in CI (``CI=true``): there the cluster and its accounting are part of
    the set-up (.ci/slurm/start.sh), and a skipped SLURM test would hide that they are not."""
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


def require_cluster() -> None:
    """Skip when no cluster is up, but fail in CI (see :func:`skip_or_fail_in_ci`)."""
    problem = _cluster_problem()
    if problem is not None:
        skip_or_fail_in_ci(f"no SLURM cluster: {problem}")


def _sacct_works() -> bool:
    """True when job accounting answers (slurmdbd), so sacct can be the status command."""
    try:
        out = subprocess.run(
            ["sacct", "-n", "-X", "--starttime", "now-1minutes"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """Run the toy workflow through SLURM once; return (workdir, completed process, accounting)."""
    require_cluster()
    workdir = tmp_path_factory.mktemp("slurm_toy")
    shutil.copy(TOY, workdir / "Snakefile")
    env = dict(os.environ)
    accounting = _sacct_works()
    if not accounting:
        # Cluster without slurmdbd: poll squeue and submit without an account.
        env.setdefault("OPTICAL_SLURM_STATUS_COMMAND", "squeue")
        env.setdefault("OPTICAL_SLURM_ACCOUNT", "")
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(workdir / "Snakefile"),
        "--directory",
        str(workdir),
        "--profile",
        str(PROFILE),
        "--jobs",
        "4",
    ]
    result = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=900)
    (workdir / "snakemake.out").write_text(result.stdout + result.stderr)
    return workdir, result, accounting


def _job_ids_in_outputs(workdir: Path) -> dict[str, list[str]]:
    """Rule name -> SLURM job ids that the jobs wrote into their outputs.

    Lines look like "a job=12" (rule make, sample a) or "heavy job=14 cpus=2 ...".
    """
    found: dict[str, list[str]] = {}
    for path in sorted((workdir / "results").rglob("*.txt")):
        for first, job in re.findall(r"^(\S+) job=(\S+)", path.read_text(), re.M):
            rule = "make" if first in {"a", "b"} else first
            jobs = found.setdefault(rule, [])
            if job not in jobs:
                jobs.append(job)
    return found


def test_toy_workflow_exits_zero(toy_run):
    _, result, _ = toy_run
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-6000:]
    assert "5 of 5 steps (100%) done" in log


def test_outputs_present(toy_run):
    workdir, result, _ = toy_run
    assert result.returncode == 0
    for name in (
        "raw/a.txt",
        "heavy/a.txt",
        "flaky.txt",
        "summary.txt",
    ):
        assert (workdir / "results" / name).is_file(), name
    summary = (workdir / "results/summary.txt").read_text()
    assert "attempt=2" in summary  # the flaky job succeeded on its retry
    assert "cpus=2" in (workdir / "results/heavy/a.txt").read_text()  # --cpus-per-task=2


def test_every_job_ran_under_slurm(toy_run):
    workdir, result, _ = toy_run
    assert result.returncode == 0
    ids = _job_ids_in_outputs(workdir)
    assert {rule: len(jobs) for rule, jobs in ids.items()} == EXPECTED
    for rule, jobs in ids.items():
        assert all(j.isdigit() for j in jobs), f"{rule} ran outside SLURM: {jobs}"


def test_slurm_log_folder_has_every_job(toy_run):
    """The plugin writes .snakemake/slurm_logs/rule_<rule>/[<wildcards>/]<jobid>.log per job."""
    workdir, result, _ = toy_run
    assert result.returncode == 0
    logdir = workdir / ".snakemake/slurm_logs"
    logged: dict[str, set[str]] = {}
    for log in logdir.rglob("*.log"):
        rule = log.relative_to(logdir).parts[0].removeprefix("rule_")
        logged.setdefault(rule, set()).add(log.stem)
    ids = _job_ids_in_outputs(workdir)
    for rule, jobs in ids.items():
        assert set(jobs) <= logged.get(rule, set()), (rule, jobs, logged)
    # flaky: one failed attempt and one successful retry, two sbatch submissions.
    assert len(logged["flaky"]) == 2
    submitted = re.findall(r"submitted with SLURM jobid (\d+)", result.stdout + result.stderr)
    assert len(submitted) == 5
    assert set(submitted) == set().union(*logged.values())


def test_sacct_records_every_job(toy_run):
    workdir, result, accounting = toy_run
    if not accounting:
        skip_or_fail_in_ci("SLURM accounting (slurmdbd) is off: sacct has no records")
    assert result.returncode == 0
    run_id = re.search(r"SLURM run ID: (\S+)", result.stdout + result.stderr).group(1)
    out = subprocess.run(
        [
            "sacct",
            "-X",
            "-n",
            "-P",
            "--name",
            run_id,
            "--starttime",
            "now-1days",
            "--format",
            "JobIDRaw,State",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    states = dict(line.split("|") for line in out.stdout.split())
    assert sorted(states.values()) == ["COMPLETED"] * 4 + ["FAILED"]
    ids = {j for jobs in _job_ids_in_outputs(workdir).values() for j in jobs}
    assert ids <= set(states)
