"""Shared fixtures: the demo workflow, run once per test session through Snakemake itself."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def run_snakemake(workdir: Path, *args: str, timeout: int = 3000) -> subprocess.CompletedProcess:
    """Run the repository's Snakefile in ``workdir`` with extra arguments; fail with its output."""
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--cores",
        "2",
        *args,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        pytest.fail(
            f"snakemake failed ({' '.join(args)}):\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}"
        )
    return result


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """The whole demo workflow (default config) run end to end in a fresh working directory."""
    workdir = tmp_path_factory.mktemp("demo")
    start = time.perf_counter()
    run_snakemake(workdir)
    (workdir / "wall_seconds.txt").write_text(f"{time.perf_counter() - start:.1f}\n")
    return workdir
