"""How well the OT plan between a query encoder and the teacher recovers a gold word alignment.

For each dev pair of a language with a gold alignment (the demo pseudo-language), the plan
that training optimises (:func:`optical_clir.evaluation.ot_plans.training_plans`: the L
sentence by the query encoder under test, the English side by the teacher) has its subword
mass summed into the whitespace-separated words the gold alignment counts, and each L
word's argmax English word is compared with the gold alignment. Reported next to the
accuracy of a uniform random guess.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from optical_clir.errors import InputError
from optical_clir.evaluation.alignment import (
    alignment_counts,
    chance_alignment_counts,
    word_alignment_from_token_plan,
)
from optical_clir.evaluation.ot_plans import token_words, training_plans
from optical_clir.io import atomic_path, atomic_write_text, open_text
from optical_clir.models.encoder import TokenEncoder
from optical_clir.train.distill import read_bitext

logger = logging.getLogger(__name__)


def read_pharaoh(path: str | Path) -> list[list[tuple[int, int]]]:
    """Read one alignment per line, ``i-j`` pairs separated by spaces (empty line: none)."""
    alignments = []
    with open_text(path) as handle:
        for lineno, line in enumerate(handle, start=1):
            links = []
            for item in line.split():
                i, sep, j = item.partition("-")
                if not sep or not i.isdigit() or not j.isdigit():
                    raise InputError(
                        path, f"bad alignment link '{item}', expected i-j", line=lineno
                    )
                links.append((int(i), int(j)))
            alignments.append(links)
    return alignments


def load_student_teacher(
    student_dir: str | Path, teacher_dir: str | Path, device: str | torch.device | None = "auto"
) -> tuple[TokenEncoder, TokenEncoder]:
    """Load a query encoder and the teacher (in eval mode); one object when the folders are equal
    (the zero-shot 'teacher' encoder)."""
    teacher = TokenEncoder.from_pretrained(teacher_dir, device=device)
    if Path(student_dir) == Path(teacher_dir):
        return teacher, teacher
    return TokenEncoder.from_pretrained(student_dir, device=device), teacher


def evaluate_alignment(
    student_dir: str | Path,
    teacher_dir: str | Path,
    pairs_tsv: str | Path,
    gold_align: str | Path,
    loss_cfg: Mapping[str, Any],
    out_json: str | Path,
    encoder_name: str = "",
    language: str = "",
    batch_size: int = 32,
    seed: int | None = None,
) -> dict[str, Any]:
    """Micro-averaged word alignment accuracy of the training plan over all dev pairs; writes JSON.

    Scored on the gold-aligned L words whose tokens, and at least one of whose gold English
    words' tokens, fall inside the training truncation length: the plan says nothing about
    words it never sees. ``truncated_words`` counts the gold-aligned L words left out so.
    """
    pairs = read_bitext(pairs_tsv)
    gold = read_pharaoh(gold_align)
    if len(gold) != len(pairs):
        raise InputError(
            gold_align, f"has {len(gold)} lines but {pairs_tsv} has {len(pairs)} pairs"
        )
    student, teacher = load_student_teacher(student_dir, teacher_dir)
    correct = total = truncated = 0
    chance = 0.0
    plans = training_plans(student, teacher, pairs, loss_cfg, batch_size)
    for pair_plan, links in zip(plans, gold, strict=True):
        s_words = token_words(pair_plan.source, pair_plan.student_offsets)
        t_words = token_words(pair_plan.english, pair_plan.teacher_offsets)
        seen_src = {w for w in s_words if w is not None}
        seen_tgt = {w for w in t_words if w is not None}
        inside = [(i, j) for i, j in links if i in seen_src and j in seen_tgt]
        truncated += len({i for i, _ in links} - {i for i, _ in inside})
        predicted = word_alignment_from_token_plan(
            torch.from_numpy(pair_plan.plan), s_words, t_words
        )
        c, t = alignment_counts(predicted, inside)
        e, _ = chance_alignment_counts(inside, max(len(seen_tgt), 1))
        correct += c
        total += t
        chance += e
    result = {
        "encoder": encoder_name,
        "language": language,
        "seed": seed,
        "pairs": len(pairs),
        "aligned_words": total,
        "correct": correct,
        "accuracy": correct / total if total else float("nan"),
        "chance_accuracy": chance / total if total else float("nan"),
        "truncated_words": truncated,
        "loss": dict(loss_cfg),
    }
    atomic_write_text(out_json, json.dumps(result, indent=2) + "\n")
    logger.info(
        "%s/%s: alignment accuracy %.3f (chance %.3f) over %d words",
        encoder_name, language, result["accuracy"], result["chance_accuracy"], total,
    )  # fmt: skip
    return result


def write_alignment_table(
    json_paths: Sequence[str | Path],
    md_path: str | Path,
    csv_path: str | Path,
    notes: Sequence[str] = (),
) -> pd.DataFrame:
    """One row per (language, encoder): accuracy (mean and sd over seeds), chance, words."""
    rows = pd.DataFrame([json.loads(Path(p).read_text()) for p in json_paths])
    if "seed" not in rows:
        rows["seed"] = None
    table = (
        rows.groupby(["language", "encoder"], sort=False)
        .agg(
            pairs=("pairs", "first"),
            aligned_words=("aligned_words", "first"),
            accuracy=("accuracy", "mean"),
            accuracy_sd=("accuracy", lambda a: a.std(ddof=1) if len(a) > 1 else float("nan")),
            seeds=("accuracy", "size"),
            chance_accuracy=("chance_accuracy", "first"),
        )
        .reset_index()
    )
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")

    def accuracy(r: Any) -> str:
        if r.seeds > 1:
            return f"{r.accuracy:.3f} ± {r.accuracy_sd:.3f} ({r.seeds} seeds)"
        return f"{r.accuracy:.3f}"

    lines = [
        "# OT word-alignment accuracy (dev bitext, gold alignment)",
        "",
        "| language | query encoder | pairs | aligned words | accuracy | chance |",
        "|---|---|---|---|---|---|",
        *[
            f"| {r.language} | {r.encoder} | {r.pairs} | {r.aligned_words} | {accuracy(r)} | {r.chance_accuracy:.3f} |"
            for r in table.itertuples()
        ],
        "",
        "Plan between the encoder's token vectors of the L sentence and the teacher's of the "
        "English side (same OT settings as training), subword mass summed per word, argmax per "
        "L word; 'teacher' is the zero-shot starting point of both students; students: mean "
        "and standard deviation over seeds.",
        "",
        *[f"{note}  " for note in notes],
    ]
    atomic_write_text(md_path, "\n".join(lines) + "\n")
    logger.info("alignment table: %d rows written to %s and %s", len(table), md_path, csv_path)
    return table
