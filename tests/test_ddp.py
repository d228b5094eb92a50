"""Training under torchrun on CPU (two processes, gloo): the DDP path of the shared Trainer.

A tiny teacher trains through ``python -m torch.distributed.run --standalone
--nproc-per-node=2`` (what ``run_training`` starts when a rule asks for more than one GPU):
both ranks end with the same weights, only rank 0 writes checkpoints, metrics and the model,
and a SIGTERM to the job's process group stops every rank at the same step with a
checkpoint and exit code 143, after which a rerun resumes to the same weights as an
uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed

from optical_clir.models.encoder import TokenEncoder
from optical_clir.models.tiny import save_tiny_backbone, write_toy_triples
from optical_clir.train.launch import run_training
from optical_clir.train.loop import STATE_FILE, list_checkpoints

pytestmark = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="torch built without the gloo backend",
)

WORKER = Path(__file__).with_name("ddp_worker.py")
# Long enough that a SIGTERM sent once the step-3 checkpoint exists lands mid-run.
MAX_STEPS = 60
TRAIN = {
    "max_steps": MAX_STEPS,
    "batch_size": 4,
    "checkpoint_every": 3,
    "keep_checkpoints": 2,
    "log_every": 1,
    "progress_bar": False,
    "learning_rate": 1e-3,
}
# run_training in a fresh process, as a workflow job calls it (gpus=2: under torchrun).
RUN_TRAINING = """
import json, sys
from optical_clir.train.launch import run_training
run_training("teacher", json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], gpus=2,
             log_path=sys.argv[4])
"""


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("ddp")
    backbone = save_tiny_backbone(root / "bb")
    return {
        "triples": str(write_toy_triples(root / "t.tsv", 200)),
        "model": {"backbone": str(backbone), "dim": 8, "query_max_length": 8, "doc_max_length": 10},
        "train": TRAIN,
    }


@pytest.fixture(scope="module")
def straight(config: dict, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An uninterrupted two-rank run through the worker entry point: (work dir, dumps)."""
    root = tmp_path_factory.mktemp("ddp_straight")
    work, dumps = root / "work", root / "dumps"
    work.mkdir()
    (work / "launch.json").write_text(json.dumps({"task": "teacher", "config": config}))
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
        str(WORKER), str(dumps), "--task", "teacher", "--config", str(work / "launch.json"),
    ]  # fmt: skip
    result = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return work, dumps


def _metrics(work: Path) -> list[dict]:
    return [json.loads(x) for x in (work / "metrics.jsonl").read_text().splitlines()]


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _encoder_part(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The TokenEncoder's weights inside the teacher training module's state."""
    return {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}


def test_both_ranks_end_with_equal_weights_and_rank_0_alone_writes(straight, config) -> None:
    work, dumps = straight
    rank0 = torch.load(dumps / "rank-0.pt")
    rank1 = torch.load(dumps / "rank-1.pt")
    assert _same(rank0, rank1)
    # what rank 0 saved is that state: the final checkpoint and the published model
    steps = [s for s, _ in list_checkpoints(work)]
    assert steps == [MAX_STEPS - 3, MAX_STEPS]
    final = list_checkpoints(work)[-1][1]
    assert _same(torch.load(final / "model.pt"), rank0)
    saved = TokenEncoder.from_pretrained(work / "model", device="cpu").state_dict()
    assert _same(saved, _encoder_part(rank0))
    # the ranks trained (weights moved) on different halves of each batch of the permutation
    initial = TokenEncoder(config["model"]).state_dict()
    moved = _encoder_part(rank0)
    assert not torch.equal(moved["backbone.embeddings.word_embeddings.weight"],
                           initial["backbone.embeddings.word_embeddings.weight"])  # fmt: skip
    state = json.loads((final / STATE_FILE).read_text())
    assert state["world_size"] == 2 and len(state["data"]) == 2
    assert all(d["world_size"] == 2 for d in state["data"])

    # rank 0 wrote every checkpoint, metrics record and the model; rank 1 nothing
    writes = {r: json.loads((dumps / f"rank-{r}.json").read_text()) for r in (0, 1)}
    assert writes[1] == {"checkpoints": 0, "metrics": 0, "models": 0}
    assert writes[0] == {"checkpoints": MAX_STEPS // 3, "metrics": 1 + MAX_STEPS, "models": 1}
    records = _metrics(work)
    assert [r["step"] for r in records if "loss" in r] == list(range(1, MAX_STEPS + 1))


def _start_run_training(config: dict, work: Path, out: Path, log: Path) -> subprocess.Popen:
    args = [json.dumps(config), str(work), str(out), str(log)]
    return subprocess.Popen(
        [sys.executable, "-c", RUN_TRAINING, *args],
        env=_env(),
        start_new_session=True,  # its own process group: torchrun and this job's python
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigterm_under_torchrun_then_resume_to_the_same_weights(
    config: dict, straight: tuple[Path, Path], tmp_path: Path
) -> None:
    work, out, log = tmp_path / "work", tmp_path / "results" / "teacher", tmp_path / "train.log"
    proc = _start_run_training(config, work, out, log)
    deadline = time.monotonic() + 180
    while not any(s >= 3 for s, _ in list_checkpoints(work)):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no checkpoint ({proc.poll()}): {proc.stderr.read()}\n{log.read_text()}")
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGTERM)  # as SLURM signals a job step's processes
    assert proc.wait(timeout=120) == 143, proc.stderr.read() + log.read_text()
    records = _metrics(work)
    assert records[-1]["event"] == "interrupted" and records[-1]["signal"] == signal.SIGTERM
    s1 = records[-1]["step"]
    assert 3 <= s1 < MAX_STEPS
    assert list_checkpoints(work)[-1][0] == s1  # both ranks stopped at that step
    assert "Sending process" in log.read_text()  # torchrun passed SIGTERM on to its workers
    assert not out.exists()

    proc = _start_run_training(config, work, out, log)
    assert proc.wait(timeout=300) == 0, proc.stderr.read() + log.read_text()
    records = _metrics(work)
    assert [r["step"] for r in records if r.get("event") == "resume"] == [s1]
    assert [r["step"] for r in records if "loss" in r] == list(range(1, MAX_STEPS + 1))
    assert f"optimizer steps: {MAX_STEPS}" in (out / "README.md").read_text()
    assert (out / "metrics.jsonl").is_file() and (out / "train_config.json").is_file()
    assert not (work / "model").exists()  # moved into the rule's output

    # bit-identical to the uninterrupted two-rank run
    rank0 = torch.load(straight[1] / "rank-0.pt")
    resumed = TokenEncoder.from_pretrained(out, device="cpu").state_dict()
    assert _same(resumed, _encoder_part(rank0))


def test_a_failed_torchrun_run_passes_its_exit_code_on(config: dict, tmp_path: Path) -> None:
    broken = {**config, "triples": str(tmp_path / "missing.tsv")}
    work, out = tmp_path / "work", tmp_path / "out"
    with pytest.raises(SystemExit) as info:
        run_training("teacher", broken, work, out, gpus=2, log_path=tmp_path / "log")
    assert info.value.code == 1  # torchrun's code when a worker fails
    assert "missing.tsv" in (tmp_path / "log").read_text()  # the workers' error, in the log
    assert json.loads((work / "launch.json").read_text()) == {"task": "teacher", "config": broken}
    assert not out.exists()
