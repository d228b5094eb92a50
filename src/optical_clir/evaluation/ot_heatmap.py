"""OT plans between a query encoder's tokens and the teacher's, for the heatmap figure.

The plans are the ones training optimises (:func:`optical_clir.evaluation.ot_plans.training_plans`),
over each pair's real tokens; special tokens ([CLS], [SEP], ...) are flagged
(``student_special`` / ``teacher_special``) and, with ``special_tokens: no_mass``, carry no
mass (their rows and columns are empty).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from optical_clir.evaluation.figures import ot_heatmap_figure
from optical_clir.evaluation.ot_alignment import load_student_teacher
from optical_clir.evaluation.ot_plans import training_plans
from optical_clir.io import atomic_write_text
from optical_clir.models.encoder import TokenEncoder
from optical_clir.train.distill import read_bitext

logger = logging.getLogger(__name__)

__all__ = ["ot_plan_examples", "write_ot_heatmap"]


def _short(text: str, width: int = 48) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def ot_plan_examples(
    student: TokenEncoder,
    teacher: TokenEncoder,
    pairs: Sequence[tuple[str, str]],
    loss_config: Mapping[str, Any],
    n_examples: int,
    title_prefix: str = "",
) -> list[dict[str, Any]]:
    """The training plans of the first ``n_examples`` (L sentence, English) ``pairs``, as
    dicts for :func:`optical_clir.evaluation.figures.ot_heatmap_figure`: ``plan`` (``[n, m]``
    float64 array over real tokens), ``student_tokens``, ``teacher_tokens``,
    ``student_special``, ``teacher_special``, ``student_text``, ``teacher_text``, ``title``.
    """
    if n_examples < 1:
        raise ValueError(f"n_examples must be >= 1, got {n_examples}")
    chosen = list(pairs[:n_examples])
    if not chosen:
        raise ValueError("no sentence pairs")
    return [
        {
            "plan": p.plan,
            "student_tokens": p.student_tokens,
            "teacher_tokens": p.teacher_tokens,
            "student_special": p.student_special,
            "teacher_special": p.teacher_special,
            "student_text": p.source,
            "teacher_text": p.english,
            "title": f"{title_prefix}pair {k + 1}: {_short(p.source)}",
        }
        for k, p in enumerate(training_plans(student, teacher, chosen, loss_config))
    ]


def write_ot_heatmap(
    student_dir: str | Path,
    teacher_dir: str | Path,
    bitext_dir: str | Path,
    loss_config: Mapping[str, Any],
    path: str | Path,
    n_examples: int = 3,
    title: str | None = None,
    device: str | None = "auto",
) -> Path:
    """Heatmaps of the OT plans of the first ``n_examples`` pairs of ``bitext_dir/dev.tsv``.

    Writes the PNG at ``path`` and, beside it (same stem, ``.json``), the plans, tokens and
    settings. ``student_dir == teacher_dir`` shows the zero-shot teacher. Returns the PNG path.
    """
    path = Path(path)
    dev = Path(bitext_dir) / "dev.tsv"
    pairs = read_bitext(dev, max_pairs=n_examples)
    student, teacher = load_student_teacher(student_dir, teacher_dir, device=device)
    examples = ot_plan_examples(student, teacher, pairs, loss_config, n_examples)
    ot_heatmap_figure(
        examples,
        path,
        title=title
        or f"OT plans between query-encoder and teacher tokens ({len(examples)} dev pairs)",
    )
    record = {
        "student": str(student_dir),
        "teacher": str(teacher_dir),
        "bitext": str(dev),
        "max_length": student.config.query_max_length,
        "loss": dict(loss_config),
        "examples": [{**ex, "plan": ex["plan"].tolist()} for ex in examples],
    }
    atomic_write_text(path.with_suffix(".json"), json.dumps(record, indent=1) + "\n")
    logger.info("OT heatmap of %d pairs: %s", len(examples), path)
    return path
