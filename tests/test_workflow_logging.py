"""Job start-up of the workflow scripts: the log file, and what a killed run left behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from optical_clir.workflow_logging import script_logging

KILLED_WRITER = """
import os, sys
from optical_clir.io import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_text("half of the documents")
    os._exit(9)  # killed mid-write: no cleanup runs
"""


def test_job_start_removes_temporaries_a_killed_run_left_beside_its_outputs(
    tmp_path: Path,
) -> None:
    out = tmp_path / "results" / "docs.jsonl"
    result = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(out)], check=False)
    assert result.returncode == 9
    (left,) = out.parent.glob(".docs.jsonl.*.tmp")
    assert not out.exists()
    half_dir = out.parent / ".model.ab12cd34"  # what atomic_dir leaves for a folder output
    half_dir.mkdir()
    others = [
        out.parent / ".queries.tsv.ab12cd34.tmp",  # another output's: its job may be running
        out.parent / ".docs.jsonl.gz.ab12cd34.tmp",
        out.parent / "docs.jsonl.notes",
    ]
    for path in others:
        path.write_text("x")

    log = tmp_path / "logs" / "job.log"
    with script_logging(log, [out, out.parent / "model"]) as logger:
        logger.info("started")
    assert not left.exists() and not half_dir.exists()
    assert all(path.exists() for path in others)
    text = log.read_text()
    assert f"removed {left}" in text and "started" in text
