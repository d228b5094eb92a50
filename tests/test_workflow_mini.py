"""The whole DAG on tiny models through Snakemake: shape, determinism, resume after a kill."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO, mini_config, run_snakemake

pytestmark = pytest.mark.slow

SYSTEMS = [
    "bm25_en",
    "bm25_raw",
    "bm25_nmt",
    "teacher_en",
    "teacher_raw",
    "teacher_nmt",
    "kd_mse",
    "optical",
]


def main_values(workdir):
    with open(workdir / "results/tables/main.csv", newline="") as handle:
        return {(r["language"], r["system"]): r["value"] for r in csv.DictReader(handle)}


def test_every_system_and_table_is_produced(mini_run):
    values = main_values(mini_run)
    assert sorted(values) == sorted(
        (lang, s) for lang in ("Swahili", "Pseudo-language") for s in SYSTEMS
    )
    assert all(0.0 <= float(v) <= 1.0 for v in values.values())
    translation = (mini_run / "results/tables/translation.csv").read_text().splitlines()
    assert translation[0].startswith("language,system,n_queries,BLEU,chrF,chrF++")
    assert len(translation) == 3  # header + sw + pseudo
    alignment = (mini_run / "results/tables/alignment.csv").read_text().splitlines()
    assert [line.split(",")[1] for line in alignment[1:]] == ["teacher", "optical", "kd_mse"]
    for model in ("teacher", "student/optical/sw", "student/kd_mse/pseudo"):
        folder = mini_run / "results/models" / model
        assert (folder / "optical_encoder.json").is_file() and (folder / "README.md").is_file()
    assert (mini_run / "results/work/teacher/checkpoints").is_dir()


def test_same_seed_gives_identical_map(mini_run, tmp_path):
    run_snakemake(tmp_path, "--configfile", str(mini_config(tmp_path)))
    assert main_values(tmp_path) == main_values(mini_run)


def _checkpoint_steps(workdir):
    folder = workdir / "results/work/teacher/checkpoints"
    if not folder.is_dir():
        return []
    return sorted(int(p.name.split("-")[1]) for p in folder.glob("step-*") if p.is_dir())


def test_killed_teacher_rule_resumes_from_its_checkpoint(tmp_path):
    config = mini_config(tmp_path, max_steps=40, checkpoint_every=5, log_every=1)
    cmd = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(tmp_path), "--cores", "2", "results/models/teacher",
        "--configfile", str(config),  # last: --configfile takes every argument after it
    ]  # fmt: skip
    log = (tmp_path / "first-run.log").open("w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 600
    try:
        while max(_checkpoint_steps(tmp_path), default=0) < 10:
            if proc.poll() is not None:
                pytest.fail(
                    "snakemake ended before the kill:\n"
                    + (tmp_path / "first-run.log").read_text()[-3000:]
                )
            assert time.monotonic() < deadline, "no checkpoint at step 10 in time"
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # snakemake and the training job, at once
        proc.wait()
        log.close()
    killed_at = max(_checkpoint_steps(tmp_path))
    assert killed_at < 40
    assert not (tmp_path / "results/models/teacher").exists()

    target = "results/models/teacher"  # before --configfile, which takes what follows it
    run_snakemake(tmp_path, "--unlock", target, "--configfile", str(config))
    run_snakemake(tmp_path, "--rerun-incomplete", target, "--configfile", str(config))

    records = [
        json.loads(line) for line in (tmp_path / "results/models/teacher/metrics.jsonl").open()
    ]
    resumes = [i for i, r in enumerate(records) if r.get("event") == "resume"]
    assert len(resumes) == 1
    resumed_from = records[resumes[0]]["step"]
    assert resumed_from >= 10 and resumed_from % 5 == 0
    first_after = next(r["step"] for r in records[resumes[0] + 1 :] if "loss" in r)
    assert first_after == resumed_from + 1
    steps = [r["step"] for r in records if "loss" in r]
    assert steps == list(range(1, 41))  # each step logged once: nothing redone from zero
