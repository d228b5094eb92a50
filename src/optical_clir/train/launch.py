"""Run a training task in-process on CPU or one GPU, or under ``torchrun`` on several GPUs.

The Snakemake rules call :func:`run_training`; the work folder (checkpoints, metrics) is kept
apart from the rule's declared output, so that Snakemake never deletes the checkpoints of a
killed or preempted job and the rerun resumes from them. The final model is moved into the
declared output once training has finished (a model already there is replaced only then, so
a failed retrain leaves it as it was), and the checkpoints are deleted unless the training
section sets ``keep_checkpoints_after_training: true``.

Command line (what torchrun starts on each GPU)::

    python -m optical_clir.train.launch --task teacher|distill|nmt --config launch.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from optical_clir.io import atomic_write_text, remove_stale_temporaries
from optical_clir.train.loop import CHECKPOINT_DIR
from optical_clir.train.teacher import MODEL_SUBDIR

logger = logging.getLogger(__name__)

TASKS = ("teacher", "distill", "nmt")
PROVENANCE_FILES = ("metrics.jsonl", "train_config.json")
# A key of every training section read here, not by the task: keep the work folder's
# checkpoints once the model is published (default: delete them, they are the model's size
# several times over).
KEEP_KEY = "keep_checkpoints_after_training"


def train_in_process(task: str, config: Mapping[str, Any], work_dir: str | Path) -> Path:
    """Run ``task`` with ``config`` in this process, writing into ``work_dir``; return the model dir."""
    if task == "teacher":
        from optical_clir.train.teacher import train_teacher

        return train_teacher(config["triples"], work_dir, config["model"], config["train"])
    if task == "distill":
        from optical_clir.train.distill import distill_student

        return distill_student(
            config["train_bitext"],
            config.get("dev_bitext"),
            config["teacher"],
            work_dir,
            config["method"],
            config["loss"],
            config["train"],
            language=config.get("language", ""),
        )
    if task == "nmt":
        from optical_clir.translate.small_nmt import train_small_nmt

        return train_small_nmt(
            config["train_bitext"],
            config.get("dev_bitext"),
            work_dir,
            config["train"],
            language=config.get("language", ""),
            config_key=config.get("config_key", "nmt.train"),
        )
    raise ValueError(f"unknown training task {task!r}; expected one of {TASKS}")


def run_training(
    task: str,
    config: Mapping[str, Any],
    work_dir: str | Path,
    model_out: str | Path,
    gpus: int = 0,
    log_path: str | Path | None = None,
) -> Path:
    """Train (resuming from ``work_dir``'s checkpoints), then move the model to ``model_out``.

    With ``gpus > 1`` the task runs as ``torchrun --standalone --nproc-per-node=<gpus>``
    (see :func:`run_torchrun`); a failed run's exit code is passed on, 143 after SIGTERM (a
    checkpoint was written, rerun to resume).
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(work_dir)  # left by a job killed mid-write
    train = dict(config.get("train") or {})
    keep = bool(train.pop(KEEP_KEY, False))
    if "train" in config:
        config = {**config, "train": train}
    if gpus > 1:
        launch_cfg = work_dir / "launch.json"
        atomic_write_text(launch_cfg, json.dumps({"task": task, "config": config}, indent=2) + "\n")
        cmd = [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={gpus}", "-m", "optical_clir.train.launch",
            "--task", task, "--config", str(launch_cfg),
        ]  # fmt: skip
        logger.info("launching %s", " ".join(cmd))
        with open(log_path or os.devnull, "a", encoding="utf-8") as log:
            code = run_torchrun(cmd, log)
        if code != 0:
            raise SystemExit(code)
        model_dir = work_dir / MODEL_SUBDIR
    else:
        model_dir = train_in_process(task, config, work_dir)
    publish_model(model_dir, work_dir, model_out)
    checkpoints = work_dir / CHECKPOINT_DIR
    if not keep and checkpoints.is_dir():
        shutil.rmtree(checkpoints)
        logger.info("deleted %s (set train.%s: true to keep them)", checkpoints, KEEP_KEY)
    return Path(model_out)


def run_torchrun(cmd: list[str], log: Any) -> int:
    """Run the torchrun command ``cmd`` (output to ``log``) and return the exit code to pass on.

    A SIGTERM or SIGINT sent to the job's processes (SLURM signals them all; a terminal its
    foreground process group) also reaches torchrun, which passes it to its workers: they
    finish the step, write a checkpoint and exit 143, and torchrun itself then exits 1. This
    process records the signal instead of dying at once, waits for torchrun, and returns
    ``128 + signal`` for such a run, as a single-process run would exit.
    """
    received: list[int] = []
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, lambda s, _frame: received.append(s))
    try:
        code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if code != 0 and received:
        logger.warning("torchrun stopped by signal %d (exit code %d)", received[0], code)
        return 128 + int(received[0])
    return code


def publish_model(model_dir: Path, work_dir: Path, model_out: str | Path) -> None:
    """Move the trained model into the rule's output, with its metrics and effective config.

    The provenance files are copied into the model folder first and a model already at
    ``model_out`` is moved aside only for the final rename, so that at no point does the
    output hold a half-published model, and a failure before the rename keeps the old one.
    """
    model_dir, model_out = Path(model_dir), Path(model_out)
    for name in PROVENANCE_FILES:
        if (work_dir / name).exists():
            shutil.copy2(work_dir / name, model_dir / name)
    model_out.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if model_out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{model_out.name}.", dir=model_out.parent))
        os.replace(model_out, old / model_out.name)
    try:
        os.replace(model_dir, model_out)
    except BaseException:
        if old is not None:
            os.replace(old / model_out.name, model_out)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    logger.info("model published to %s", model_out)


def main(argv: list[str] | None = None) -> int:
    """Entry point for torchrun workers: ``--task`` and ``--config`` (written by run_training)."""
    parser = argparse.ArgumentParser(description="Run one OPTICAL training task.")
    parser.add_argument("--task", choices=TASKS, required=True)
    parser.add_argument("--config", required=True, help="JSON written by run_training")
    ns = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    launch = json.loads(Path(ns.config).read_text())
    train_in_process(ns.task, launch["config"], Path(ns.config).parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
