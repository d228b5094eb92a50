"""Run a training task in-process on CPU or one GPU, or under ``torchrun`` on several GPUs.

The Snakemake rules call :func:`run_training`; the work folder (checkpoints, metrics) is kept
apart from the rule's declared output, so that Snakemake never deletes the checkpoints of a
killed or preempted job and the rerun resumes from them. The final model is moved into the
declared output once training has finished.

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
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from optical_clir.io import atomic_write_text
from optical_clir.train.teacher import MODEL_SUBDIR

logger = logging.getLogger(__name__)

TASKS = ("teacher", "distill", "nmt")
PROVENANCE_FILES = ("metrics.jsonl", "train_config.json")


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
    """Move the trained model into the rule's output, with its metrics and effective config."""
    model_out = Path(model_out)
    if model_out.exists():
        shutil.rmtree(model_out)
    model_out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(model_dir, model_out)
    for name in PROVENANCE_FILES:
        if (work_dir / name).exists():
            shutil.copy2(work_dir / name, model_out / name)
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
