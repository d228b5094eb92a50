"""OT plans between a query encoder's tokens and the teacher's, for the heatmap figure.

The plan of each bitext pair is the one training optimises: the L sentence encoded by the
student and the English side by the teacher, both with the student's
``query_max_length``, through :class:`optical_clir.train.distill.DistillationModule`
(method ``optical``) with the loss config's OT options. As in training, the special
tokens ([CLS], [SEP], ...) are real tokens that carry mass; they are kept and flagged
(``student_special`` / ``teacher_special``; [UNK] is not flagged: it stands for a word).
Padding is dropped.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from optical_clir.evaluation.figures import ot_heatmap_figure
from optical_clir.evaluation.ot_alignment import load_student_teacher
from optical_clir.io import atomic_write_text
from optical_clir.models.encoder import TokenEncoder
from optical_clir.train.distill import OT_KEYS, DistillationModule, read_bitext

logger = logging.getLogger(__name__)

__all__ = ["ot_plan_examples", "write_ot_heatmap"]


@contextlib.contextmanager
def _eval_mode(*modules: torch.nn.Module) -> Iterator[None]:
    """Switch modules to eval mode (no dropout) and restore their previous mode afterwards."""
    modes = [m.training for m in modules]
    try:
        for m in modules:
            m.eval()
        yield
    finally:
        for m, mode in zip(modules, modes, strict=True):
            m.train(mode)


def _tokens(
    encoder: TokenEncoder, texts: list[str], max_length: int
) -> tuple[list[list[str]], list[list[bool]], torch.Tensor]:
    """Each text's real tokens, their special-token flags, and the ``[B, T]`` mask, from the
    same :meth:`TokenEncoder.tokenize` call that :meth:`TokenEncoder.encode_tokens` makes."""
    batch = encoder.tokenize(texts, max_length)
    mask = batch["attention_mask"].bool().cpu()
    ids = batch["input_ids"].cpu()
    # Flag the markers the tokenizer adds ([CLS], [SEP], <s>, ...), not [UNK], which stands
    # for a word of the text.
    special = set(encoder.tokenizer.all_special_ids) - {encoder.tokenizer.unk_token_id}
    tokens, flags = [], []
    for row, keep in zip(ids, mask, strict=True):
        kept = row[keep].tolist()
        tokens.append(encoder.tokenizer.convert_ids_to_tokens(kept))
        flags.append([i in special for i in kept])
    return tokens, flags, mask


def _short(text: str, width: int = 48) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


@torch.inference_mode()
def ot_plan_examples(
    student: TokenEncoder,
    teacher: TokenEncoder,
    pairs: Sequence[tuple[str, str]],
    loss_config: Mapping[str, Any],
    n_examples: int,
    max_length: int | None = None,
    title_prefix: str = "",
) -> list[dict[str, Any]]:
    """The entropic OT plans of the first ``n_examples`` (L sentence, English) ``pairs``.

    Computed by the training code itself (one batch through ``DistillationModule(student,
    teacher, "optical", loss_config).forward(..., return_plan=True)``, models in eval
    mode) at ``max_length`` (default: the student's ``query_max_length``, as in training).
    Returns dicts for :func:`optical_clir.evaluation.figures.ot_heatmap_figure`: ``plan``
    (``[n, m]`` float64 array over real tokens), ``student_tokens``, ``teacher_tokens``,
    ``student_special``, ``teacher_special``, ``student_text``, ``teacher_text``, ``title``.
    """
    if n_examples < 1:
        raise ValueError(f"n_examples must be >= 1, got {n_examples}")
    chosen = list(pairs[:n_examples])
    if not chosen:
        raise ValueError("no sentence pairs")
    module = DistillationModule(student, teacher, "optical", loss_config)
    length = int(max_length or module.max_length)
    module.max_length = length
    source = [src for src, _ in chosen]
    english = [en for _, en in chosen]
    with _eval_mode(student, teacher):
        _, plan = module({"source": source, "english": english}, return_plan=True)
        s_tokens, s_special, s_mask = _tokens(student, source, length)
        t_tokens, t_special, t_mask = _tokens(teacher, english, length)
    plan = plan.detach().to("cpu", torch.float64)
    if plan.shape != (len(chosen), s_mask.shape[1], t_mask.shape[1]):
        raise RuntimeError(
            f"plan {tuple(plan.shape)} does not match the tokenization "
            f"{(len(chosen), s_mask.shape[1], t_mask.shape[1])}"
        )
    examples = []
    for k, (src, en) in enumerate(chosen):
        p = plan[k][s_mask[k]][:, t_mask[k]].numpy()
        examples.append(
            {
                "plan": p,
                "student_tokens": s_tokens[k],
                "teacher_tokens": t_tokens[k],
                "student_special": s_special[k],
                "teacher_special": t_special[k],
                "student_text": src,
                "teacher_text": en,
                "title": f"{title_prefix}pair {k + 1}: {_short(src)}",
            }
        )
    return examples


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
        "ot": {k: v for k, v in loss_config.items() if k in OT_KEYS},
        "examples": [{**ex, "plan": ex["plan"].tolist()} for ex in examples],
    }
    atomic_write_text(path.with_suffix(".json"), json.dumps(record, indent=1) + "\n")
    logger.info("OT heatmap of %d pairs: %s", len(examples), path)
    return path
