"""Choosing a student on the dev criterion, and the table that says which was chosen.

The criterion is the dev bitext retrieval of each trained student (``dev_criterion.json``
in its folder, written at the end of distillation); evaluation queries play no part.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from optical_clir.errors import InputError
from optical_clir.io import atomic_path, atomic_write_text, link_tree
from optical_clir.variants import choose_student

logger = logging.getLogger(__name__)

__all__ = ["publish_selected", "read_dev_criterion", "select_candidate", "write_selection_table"]


def read_dev_criterion(model_dir: str | Path) -> dict[str, float]:
    """A student's dev bitext retrieval (``p_at_1``, ``mrr``, ``pairs``)."""
    path = Path(model_dir) / "dev_criterion.json"
    if not path.is_file():
        raise InputError(path, "missing: the student was trained without a dev bitext")
    record = json.loads(path.read_text())
    if not record.get("bitext_retrieval"):
        raise InputError(path, "has no bitext_retrieval (no dev pairs)")
    return record["bitext_retrieval"]


def select_candidate(
    method: str,
    language: str,
    candidates: Sequence[str],
    model_dirs: Sequence[str | Path],
    out_json: str | Path,
) -> dict[str, Any]:
    """Choose among ``candidates`` (``model_dirs``: each candidate's folders, one per seed,
    candidate-major) by :func:`optical_clir.variants.choose_student`; write the record."""
    if not candidates or len(model_dirs) % len(candidates):
        raise ValueError(f"{len(model_dirs)} model folders for {len(candidates)} candidates")
    per = len(model_dirs) // len(candidates)
    scores = {
        name: [read_dev_criterion(d) for d in model_dirs[i * per : (i + 1) * per]]
        for i, name in enumerate(candidates)
    }
    chosen = choose_student(scores)
    record = {
        "method": method,
        "language": language,
        "chosen": chosen,
        "criterion": "dev bitext retrieval P@1 (then MRR), mean over seeds",
        "candidates": [
            {
                "student": name,
                "seeds": len(runs),
                "p_at_1": sum(r["p_at_1"] for r in runs) / len(runs),
                "mrr": sum(r["mrr"] for r in runs) / len(runs),
            }
            for name, runs in scores.items()
        ],
    }
    atomic_write_text(out_json, json.dumps(record, indent=2) + "\n")
    logger.info("%s/%s: chose %s among %d candidates", method, language, chosen, len(scores))
    return record


def publish_selected(
    selection_json: str | Path, candidate_dirs: Sequence[str | Path], out_dir: str | Path
) -> Path:
    """Hard-link (copy across file systems) the chosen candidate's folder of the same seed
    as ``out_dir``; ``candidate_dirs`` are every candidate's folders (named by student)."""
    record = json.loads(Path(selection_json).read_text())
    seed_part = Path(out_dir).name
    matches = [Path(d) for d in candidate_dirs
               if Path(d).parts[-4] == record["chosen"] and Path(d).name == seed_part]  # fmt: skip
    if len(matches) != 1:
        raise InputError(
            selection_json, f"chosen {record['chosen']!r} has no folder for {seed_part}"
        )
    link_tree(matches[0], out_dir)
    logger.info("published %s as %s", matches[0], out_dir)
    return Path(out_dir)


def write_selection_table(
    selection_jsons: Sequence[str | Path],
    md_path: str | Path,
    csv_path: str | Path,
    language_names: Mapping[str, str] | None = None,
    notes: Sequence[str] = (),
) -> pd.DataFrame:
    """One row per (method, language, candidate): the dev criterion and whether it was chosen."""
    rows = []
    for path in selection_jsons:
        record = json.loads(Path(path).read_text())
        for cand in record["candidates"]:
            rows.append({"method": record["method"], "language": record["language"],
                         **cand, "chosen": cand["student"] == record["chosen"]})  # fmt: skip
    table = pd.DataFrame(
        rows, columns=["method", "language", "student", "seeds", "p_at_1", "mrr", "chosen"]
    )
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    names = language_names or {}
    lines = [
        "# Student selection on the dev criterion",
        "",
        "| method | language | candidate | seeds | dev P@1 | dev MRR | chosen |",
        "|---|---|---|---:|---:|---:|---|",
        *[
            f"| {r.method} | {names.get(r.language, r.language)} | {r.student} | {r.seeds} | "
            f"{r.p_at_1:.3f} | {r.mrr:.3f} | {'**yes**' if r.chosen else ''} |"
            for r in table.itertuples()
        ],
        "",
        "Dev criterion: each dev L sentence, encoded by the student, retrieves its English "
        "translation among all dev English sentences encoded by the teacher (P@1, then MRR, "
        "mean over seeds). The evaluation queries play no part in the choice.",
        "",
        *[f"{note}  " for note in notes],
    ]
    atomic_write_text(md_path, "\n".join(lines) + "\n")
    logger.info(
        "selection table: %d candidates, %d chosen, written to %s and %s",
        len(table), int(table["chosen"].sum()), md_path, csv_path,
    )  # fmt: skip
    return table
