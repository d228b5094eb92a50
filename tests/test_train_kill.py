"""Real preemption of a training process (the teacher's and the small NMT model's, through
`python -m optical_clir.train.launch`): SIGTERM, SIGKILL, resume, every step logged once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from optical_clir.models.tiny import save_tiny_backbone, write_toy_triples
from optical_clir.train.loop import list_checkpoints

MAX_STEPS = 24


def _start(task: str, config: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "optical_clir.train.launch",
            "--task",
            task,
            "--config",
            str(config),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_checkpoint(proc: subprocess.Popen, out: Path, min_step: int) -> int:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        steps = [s for s, _ in list_checkpoints(out)]
        if steps and steps[-1] >= min_step:
            return steps[-1]
        if proc.poll() is not None:
            pytest.fail(f"training exited early ({proc.returncode}): {proc.stderr.read()}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail("no checkpoint within 120 s")


def _metrics(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def _first_step_after_resume(records: list[dict], resume_index: int) -> int:
    return next(r["step"] for r in records[resume_index + 1 :] if "loss" in r)


TRAIN = {
    "max_steps": MAX_STEPS,
    "batch_size": 4,
    "checkpoint_every": 3,
    "keep_checkpoints": 3,
    "log_every": 1,
    "progress_bar": False,
    "learning_rate": 1e-3,
}


def _teacher_config(tmp_path: Path) -> dict:
    backbone = save_tiny_backbone(tmp_path / "bb")
    return {
        "triples": str(write_toy_triples(tmp_path / "t.tsv", 200)),
        "model": {"backbone": str(backbone), "dim": 8, "query_max_length": 8, "doc_max_length": 10},
        "train": TRAIN,
    }


def _nmt_config(tmp_path: Path) -> dict:
    words = [
        ("paka", "cat"),
        ("mbwa", "dog"),
        ("maji", "water"),
        ("leo", "today"),
        ("kubwa", "big"),
    ]
    lines = [" ".join(words[(i + j) % 5][0] for j in range(3)) + "\t"
             + " ".join(words[(i + j) % 5][1] for j in range(3)) for i in range(40)]  # fmt: skip
    (tmp_path / "bitext.tsv").write_text("\n".join(lines) + "\n")
    model = {"vocab_size": 40, "max_length": 8, "d_model": 16, "encoder_layers": 1,
             "decoder_layers": 1, "attention_heads": 2, "ffn_dim": 32}  # fmt: skip
    return {"train_bitext": str(tmp_path / "bitext.tsv"), "train": {**TRAIN, **model}}


@pytest.mark.parametrize("task", ["teacher", "nmt"])
def test_sigterm_then_sigkill_then_resume_to_the_end(tmp_path: Path, task: str) -> None:
    out = tmp_path / "run"
    out.mkdir()
    config = out / "launch.json"
    settings = _teacher_config(tmp_path) if task == "teacher" else _nmt_config(tmp_path)
    config.write_text(json.dumps({"task": task, "config": settings}))

    # (c) SIGTERM: the step in progress is finished, a checkpoint written, exit code 143
    proc = _start(task, config)
    _wait_for_checkpoint(proc, out, 3)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143, proc.stderr.read()
    term_records = _metrics(out)
    assert term_records[-1]["event"] == "interrupted"
    s1 = term_records[-1]["step"]
    assert s1 >= 3 and list_checkpoints(out)[-1][0] == s1  # checkpoint of the last step
    assert not (out / "model").exists()

    # (b) a real kill: resume from s1, SIGKILL once a later checkpoint exists
    proc = _start(task, config)
    k = _wait_for_checkpoint(proc, out, s1 + 3)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    k = list_checkpoints(out)[-1][0]  # the newest complete checkpoint after the kill
    assert s1 < k < MAX_STEPS

    # rerun: resumes from k (first logged step k + 1, not 1) and finishes
    proc = _start(task, config)
    assert proc.wait(timeout=180) == 0, proc.stderr.read()
    records = _metrics(out)
    resumes = [i for i, r in enumerate(records) if r.get("event") == "resume"]
    assert [records[i]["step"] for i in resumes] == [s1, k]
    assert _first_step_after_resume(records, resumes[0]) == s1 + 1
    assert _first_step_after_resume(records, resumes[1]) == k + 1
    # every step logged exactly once despite the kill (steps after k were dropped and redone)
    assert [r["step"] for r in records if "loss" in r] == list(range(1, MAX_STEPS + 1))
    assert list_checkpoints(out)[-1][0] == MAX_STEPS
    assert (
        out / "model" / ("optical_encoder.json" if task == "teacher" else "config.json")
    ).is_file()
    assert f"optimizer steps: {MAX_STEPS}" in (out / "model" / "README.md").read_text()
