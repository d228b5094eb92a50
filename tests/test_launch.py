"""Training launcher (train/launch.py): in-process runs and publishing (the torchrun path, run for
real with two CPU processes: tests/test_ddp.py)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from optical_clir.models.encoder import TokenEncoder
from optical_clir.models.tiny import save_tiny_encoder
from optical_clir.train import launch
from optical_clir.train.launch import publish_model, run_training, train_in_process
from optical_clir.train.loop import Trainer

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _fake_model(work_dir: Path, tag: str = "new") -> Path:
    """What a finished training leaves in its work folder: model/, metrics, config."""
    model = work_dir / "model"
    (model / "backbone").mkdir(parents=True)
    (model / "optical_encoder.json").write_text(json.dumps({"tag": tag}))
    (model / "backbone" / "weights.bin").write_bytes(b"\x00\x01")
    (work_dir / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
    (work_dir / "train_config.json").write_text('{"method": "optical"}\n')
    (work_dir / "checkpoints" / "step-00000001").mkdir(parents=True)
    return model


# ----------------------------------------------------------------------------- publish_model


def test_publish_model_moves_model_and_copies_provenance(tmp_path: Path) -> None:
    work = tmp_path / "work"
    model = _fake_model(work)
    out = tmp_path / "results" / "models" / "student"  # parent folders do not exist yet
    publish_model(model, work, out)
    assert not model.exists()  # moved, not copied
    assert json.loads((out / "optical_encoder.json").read_text()) == {"tag": "new"}
    assert (out / "backbone" / "weights.bin").read_bytes() == b"\x00\x01"
    # provenance copied (the work folder keeps its own for the next resume)
    for name in ("metrics.jsonl", "train_config.json"):
        assert (out / name).read_text() == (work / name).read_text()
    assert (work / "checkpoints" / "step-00000001").is_dir()
    assert not (out / "checkpoints").exists()


def test_publish_model_replaces_an_existing_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "stale_dir").mkdir(parents=True)
    (out / "stale.txt").write_text("old")
    (out / "optical_encoder.json").write_text(json.dumps({"tag": "old"}))
    work = tmp_path / "work"
    model = _fake_model(work)
    (work / "train_config.json").unlink()  # a missing provenance file is simply skipped
    publish_model(model, work, out)
    assert json.loads((out / "optical_encoder.json").read_text()) == {"tag": "new"}
    assert not (out / "stale.txt").exists() and not (out / "stale_dir").exists()
    assert (out / "metrics.jsonl").is_file() and not (out / "train_config.json").exists()


# ----------------------------------------------------------------------------- errors


def test_unknown_task_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown training task 'student'"):
        train_in_process("student", {}, tmp_path / "w")
    with pytest.raises(ValueError, match="unknown training task"):
        run_training("student", {}, tmp_path / "w2", tmp_path / "out", gpus=1)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------- run_training, in process (CPU)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("launch_teacher")
    return save_tiny_encoder(root, seed=2, dim=8, query_max_length=12, doc_max_length=12)


def _distill_config(tmp_path: Path, teacher_dir: Path) -> dict:
    bitext = tmp_path / "train.tsv"
    bitext.write_text(
        "".join(f"tiger {w} lake\tthe cat {w} in the river\n" for w in ["runs", "sits"] * 6)
    )
    return {
        "train_bitext": str(bitext),
        "teacher": str(teacher_dir),
        "method": "optical",
        "language": "pseudo",
        "loss": {"epsilon": 0.1, "n_iters": 20},
        "train": {
            "max_steps": 3,
            "batch_size": 4,
            "checkpoint_every": 2,
            "log_every": 1,
            "progress_bar": False,
            "device": "cpu",
        },
    }


def test_run_training_in_process_trains_and_publishes(
    teacher_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_subprocess(*args: object, **kwargs: object) -> None:
        raise AssertionError("gpus <= 1 must not start a subprocess")

    monkeypatch.setattr(launch.subprocess, "run", no_subprocess)
    config = _distill_config(tmp_path, teacher_dir)
    work, out = tmp_path / "work", tmp_path / "results" / "student"
    assert run_training("distill", config, work, out, gpus=1) == out

    assert (out / "optical_encoder.json").is_file() and (out / "README.md").is_file()
    assert "'pseudo'" in (out / "README.md").read_text()
    assert json.loads((out / "train_config.json").read_text())["method"] == "optical"
    steps = [json.loads(x).get("step") for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2, 3]
    assert not (work / "model").exists() and not (work / "launch.json").exists()
    assert not (work / "checkpoints").exists()  # deleted once the model is published
    assert (work / "metrics.jsonl").is_file()
    TokenEncoder.from_pretrained(out, device="cpu")  # a loadable encoder

    # the worker entry point runs the same task from launch.json in its folder
    work2 = tmp_path / "work2"
    work2.mkdir()
    (work2 / "launch.json").write_text(json.dumps({"task": "distill", "config": config}))
    assert launch.main(["--task", "distill", "--config", str(work2 / "launch.json")]) == 0
    assert (work2 / "model" / "optical_encoder.json").is_file()
    a = TokenEncoder.from_pretrained(out, device="cpu").state_dict()
    b = TokenEncoder.from_pretrained(work2 / "model", device="cpu").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # same config, same seed: same weights


def test_checkpoints_kept_after_training_when_asked(teacher_dir: Path, tmp_path: Path) -> None:
    config = _distill_config(tmp_path, teacher_dir)
    config["train"]["keep_checkpoints_after_training"] = True
    work, out = tmp_path / "work", tmp_path / "out"
    run_training("distill", config, work, out)
    # keep_checkpoints defaults to 1: only the last step's checkpoint while training
    assert sorted(p.name for p in (work / "checkpoints").iterdir()) == ["step-00000003"]
    saved = json.loads((out / "train_config.json").read_text())["train"]
    assert "keep_checkpoints_after_training" not in saved  # read by the launcher only


def test_failed_retrain_keeps_the_published_model(
    teacher_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Training runs in the work folder; the output is replaced only by a finished model."""
    config = _distill_config(tmp_path, teacher_dir)
    work, out = tmp_path / "work", tmp_path / "out"
    run_training("distill", config, work, out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def node_died(*args: object, **kwargs: object) -> None:
        raise RuntimeError("node died")

    monkeypatch.setattr(Trainer, "_checkpoint", node_died)  # fails at step 2 of 3
    with pytest.raises(RuntimeError, match="node died"):
        run_training("distill", config, work, out)
    assert (work / "metrics.jsonl").read_text().count('"step": 2') == 1  # it did train
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before


def test_publish_model_restores_the_old_model_when_the_move_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "optical_encoder.json").write_text(json.dumps({"tag": "old"}))
    work = tmp_path / "work"
    model = _fake_model(work)
    real_replace = os.replace

    def failing_replace(src: object, dst: object) -> None:
        if Path(src) == model:
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(launch.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        publish_model(model, work, out)
    assert json.loads((out / "optical_encoder.json").read_text()) == {"tag": "old"}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_run_training_removes_temporaries_left_in_its_work_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    stale = work / ".launch.json.k2j4h7q9.tmp"
    stale.write_text("half")
    (work / "notes.txt").write_text("mine")
    # a torchrun that fails at once: the cleanup happened before it started
    monkeypatch.setattr(
        launch.subprocess, "run", lambda cmd, **_: subprocess.CompletedProcess(cmd, 1)
    )
    with pytest.raises(SystemExit):
        run_training("teacher", {"train": {}}, work, tmp_path / "out", gpus=2)
    assert not stale.exists() and (work / "notes.txt").read_text() == "mine"
