"""The whole DAG on tiny models through Snakemake: shape, determinism, resume after a kill."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, mini_config, run_snakemake

pytestmark = pytest.mark.slow

SYSTEMS = [
    "bm25_en",
    "bm25_raw",
    "bm25_nmt",
    "bm25_psq",
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
    for model in (
        "teacher",
        "student/optical/sw/pairs-all/seed-13",
        "student/kd_mse/pseudo/pairs-all/seed-14",
        "student/optical/pseudo/pairs-16/seed-13",
    ):
        folder = mini_run / "results/models" / model
        assert (folder / "optical_encoder.json").is_file() and (folder / "README.md").is_file()
    # the work folder keeps the run's record; its checkpoints go once the model is published
    assert (mini_run / "results/work/teacher/fingerprint.json").is_file()
    assert not (mini_run / "results/work/teacher/checkpoints").exists()


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_students_are_reported_as_mean_and_spread_over_seeds(mini_run):
    main = {(r["language"], r["system"]): r for r in read_csv(mini_run / "results/tables/main.csv")}
    per_seed = read_csv(mini_run / "results/tables/measures.csv")
    for lang, language in (("sw", "Swahili"), ("pseudo", "Pseudo-language")):
        for system in ("kd_mse", "optical"):
            seeds = {
                r["seed"]: float(r["AP"])
                for r in per_seed
                if (r["language"], r["system"]) == (lang, system)
            }
            assert sorted(seeds) == ["13", "14"]
            row = main[(language, system)]
            assert int(row["n_seeds"]) == 2
            assert float(row["value"]) == pytest.approx(sum(seeds.values()) / 2, abs=2e-6)
            spread = abs(seeds["13"] - seeds["14"]) / 2**0.5  # sd of two values
            assert float(row["value_sd"]) == pytest.approx(spread, abs=2e-6)
        assert int(main[(language, "bm25_en")]["n_seeds"]) == 0  # trained once: no seed
    seed_rows = read_csv(mini_run / "results/tables/seeds.csv")
    assert sorted({(r["system"], r["seed"]) for r in seed_rows}) == [
        (s, seed) for s in ("kd_mse", "optical") for seed in ("13", "14")
    ]
    assert all(0.0 <= float(r["p_vs_teacher_raw"]) <= 1.0 for r in seed_rows)
    alignment = read_csv(mini_run / "results/tables/alignment.csv")
    assert sorted((r["encoder"], r["seeds"]) for r in alignment) == [
        ("kd_mse", "2"), ("optical", "2"), ("teacher", "1")
    ]  # fmt: skip


def test_learning_curve_uses_the_subsets_it_names(mini_run):
    rows = read_csv(mini_run / "results/tables/learning_curve.csv")
    points = sorted((r["language"], r["method"], int(r["pairs"]), int(r["n_seeds"])) for r in rows)
    assert points == [
        (lang, "optical", pairs, 2) for lang in ("pseudo", "sw") for pairs in (16, 48)
    ]
    config = json.loads(
        (
            mini_run / "results/models/student/optical/sw/pairs-16/seed-14/train_config.json"
        ).read_text()
    )
    assert config["n_train_pairs"] == 16 and config["train"]["seed"] == 14
    assert "git commit" in (mini_run / "results/tables/learning_curve.md").read_text()


PNG = b"\x89PNG\r\n\x1a\n"


def test_figures_and_report(mini_run):
    figures = [
        "results/figures/map_ci.png",
        "results/figures/learning_curve.png",
        "results/figures/ot_heatmap/sw.png",
        "results/figures/ot_heatmap/pseudo.png",
    ]
    for figure in figures:
        data = (mini_run / figure).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000, figure
    ci = read_csv(mini_run / "results/tables/map_ci.csv")
    assert len(ci) == 18
    assert all(float(r["low"]) <= float(r["mean"]) <= float(r["high"]) for r in ci)
    plans = json.loads((mini_run / "results/figures/ot_heatmap/sw.json").read_text())
    examples = plans["examples"]
    assert len(examples) == 2  # evaluation.heatmap_examples in the mini config
    for example in examples:
        plan = example["plan"]
        assert len(plan) == len(example["student_tokens"])
        assert all(len(row) == len(example["teacher_tokens"]) for row in plan)

    report = mini_run / "results/report.html"
    run_snakemake(mini_run, "--report", str(report), "--configfile", str(mini_run / "mini.yaml"))
    html = report.read_text(errors="replace")
    for name in [*figures, "results/tables/main.md", "results/tables/learning_curve.md"]:
        assert Path(name).name in html, name


def test_same_seed_gives_identical_runs(mini_run, tmp_path):
    # The teacher and one student again, from scratch in a new directory: same per-query AP.
    targets = ["results/eval/sw/teacher_raw.tsv", "results/eval/sw/optical/pairs-all/seed-13.tsv"]
    run_snakemake(tmp_path, *targets, "--configfile", str(mini_config(tmp_path)))
    for target in targets:
        assert (tmp_path / target).read_text() == (mini_run / target).read_text(), target


def _checkpoint_steps(workdir):
    folder = workdir / "results/work/teacher/checkpoints"
    if not folder.is_dir():
        return []
    return sorted(int(p.name.split("-")[1]) for p in folder.glob("step-*") if p.is_dir())


def _teacher_cmd(workdir: Path, config: Path) -> list[str]:
    return [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir), "--cores", "2", "results/models/teacher",
        "--configfile", str(config),  # last: --configfile takes every argument after it
    ]  # fmt: skip


def _signal_at_checkpoint(workdir: Path, cmd: list[str], sig: int, step: int) -> int:
    """Start ``cmd`` in its own process group; once the teacher has a checkpoint at ``step``
    or later, send ``sig`` to the whole group (Snakemake and its job, as a terminal's Ctrl-C
    or a ``kill -9 -<group>`` would); return Snakemake's exit status."""
    log_path = workdir / f"run-{len(list(workdir.glob('run-*.log')))}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 600
        try:
            while max(_checkpoint_steps(workdir), default=0) < step:
                if proc.poll() is not None:
                    pytest.fail(
                        f"snakemake ended before the signal:\n{log_path.read_text()[-3000:]}"
                    )
                assert time.monotonic() < deadline, f"no checkpoint at step {step} in time"
                time.sleep(0.2)
            os.killpg(proc.pid, sig)
            return proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_ctrl_c_checkpoints_and_a_plain_rerun_resumes(tmp_path):
    config = mini_config(tmp_path, max_steps=40, checkpoint_every=5, log_every=1)
    cmd = _teacher_cmd(tmp_path, config)
    assert _signal_at_checkpoint(tmp_path, cmd, signal.SIGINT, 10) != 0
    locks = tmp_path / ".snakemake/locks"
    assert not locks.is_dir() or not any(locks.iterdir())  # the lock is released
    work_metrics = tmp_path / "results/work/teacher/metrics.jsonl"
    last = json.loads(work_metrics.read_text().splitlines()[-1])
    assert last["event"] == "interrupted" and last["signal"] == signal.SIGINT
    assert last["step"] in _checkpoint_steps(tmp_path)  # the step it finished, checkpointed
    assert not (tmp_path / "results/models/teacher").exists()
    # Snakemake records the interrupted job as failed, not incomplete: a plain rerun (no
    # --unlock, no --rerun-incomplete) runs it again, from that checkpoint.
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    records = [
        json.loads(line) for line in (tmp_path / "results/models/teacher/metrics.jsonl").open()
    ]
    resumes = [r for r in records if r.get("event") == "resume"]
    assert [r["step"] for r in resumes] == [last["step"]]
    assert [r["step"] for r in records if "loss" in r] == list(range(1, 41))


def test_killed_teacher_rule_resumes_from_its_checkpoint(tmp_path):
    config = mini_config(tmp_path, max_steps=40, checkpoint_every=5, log_every=1)
    cmd = _teacher_cmd(tmp_path, config)
    _signal_at_checkpoint(tmp_path, cmd, signal.SIGKILL, 10)
    killed_at = max(_checkpoint_steps(tmp_path))
    assert killed_at < 40
    assert not (tmp_path / "results/models/teacher").exists()

    # kill -9 leaves the lock. The job's output (the model) did not exist yet, so there is
    # no incomplete output: once unlocked, a plain rerun resumes from the checkpoint.
    target = "results/models/teacher"  # before --configfile, which takes what follows it
    locked = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert locked.returncode != 0 and "cannot be locked" in locked.stdout + locked.stderr
    run_snakemake(tmp_path, "--unlock", target, "--configfile", str(config))
    run_snakemake(tmp_path, target, "--configfile", str(config))

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

    assert _checkpoint_steps(tmp_path) == []  # deleted once the model was published
    # A changed setting retrains the teacher: the job's start deletes the finished model, so
    # a retrain killed half-way leaves no model of the old settings behind.
    changed = mini_config(
        tmp_path, max_steps=40, checkpoint_every=5, log_every=1, learning_rate=5.0e-4
    )
    _signal_at_checkpoint(tmp_path, _teacher_cmd(tmp_path, changed), signal.SIGKILL, 5)
    assert not (tmp_path / "results/models/teacher").exists()


def test_a_trained_student_loads_in_sentence_transformers(mini_run: Path) -> None:
    """The workflow's published student encodes a query to this package's pooled vector
    when loaded with ``SentenceTransformer(folder)``."""
    st = pytest.importorskip("sentence_transformers")
    import torch

    from optical_clir.models.encoder import TokenEncoder

    folder = mini_run / "results/models/student/optical/sw/pairs-all/seed-13"
    queries = [line.split("\t")[1] for line in (REPO / "tests/data/mini/queries/sw.tsv").open()]
    ours = TokenEncoder.from_pretrained(folder, device="cpu").eval()
    with torch.no_grad():
        expected = ours.encode_pooled(queries[:4])
    model = st.SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    got = model.encode(queries[:4], convert_to_tensor=True)
    assert torch.allclose(got, expected, atol=1e-5)
