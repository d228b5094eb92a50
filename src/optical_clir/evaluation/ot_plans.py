"""The OT plans that training optimises, for any list of sentence pairs.

One function, :func:`training_plans`, gives the plan of each (L sentence, English) pair
exactly as distillation computes it: one batch through
:meth:`optical_clir.train.distill.DistillationModule.plan_result` (student on the L side,
teacher on the English side, the student's ``query_max_length``, the loss config's OT
options and token masses), models in eval mode. The alignment-accuracy table and the
heatmaps both read their plans from it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from optical_clir.models.encoder import TokenEncoder
from optical_clir.train.distill import DistillationModule, Pair, collate_pairs

__all__ = ["PairPlan", "token_words", "trained_loss_config", "training_plans"]


@dataclass(frozen=True)
class PairPlan:
    """The plan of one pair over its real tokens, with what each token is.

    ``plan``: ``[n, m]`` float64; ``*_tokens``: token strings; ``*_offsets``: character
    spans in the text ((0, 0) for added special tokens); ``*_mass``: whether the token
    carries OT mass; ``*_special``: whether the tokenizer added it ([CLS], [SEP], ...).
    """

    source: str
    english: str
    plan: np.ndarray
    student_tokens: list[str]
    teacher_tokens: list[str]
    student_offsets: list[tuple[int, int]]
    teacher_offsets: list[tuple[int, int]]
    student_mass: list[bool]
    teacher_mass: list[bool]
    student_special: list[bool]
    teacher_special: list[bool]


@contextlib.contextmanager
def _eval_mode(*modules: torch.nn.Module) -> Iterator[None]:
    modes = [m.training for m in modules]
    try:
        for m in modules:
            m.eval()
        yield
    finally:
        for m, mode in zip(modules, modes, strict=True):
            m.train(mode)


def _token_info(
    encoder: TokenEncoder, texts: list[str], max_length: int
) -> list[tuple[list[str], list[tuple[int, int]], list[bool], list[int]]]:
    """Tokens, offsets, added-special flags and ids of each text's real tokens, from the
    tokenizer call that :meth:`TokenEncoder.tokenize` makes (plus offsets)."""
    batch = encoder.tokenizer(
        list(texts),
        padding=True,
        truncation=True,
        max_length=int(max_length),
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
    )
    out = []
    for i in range(len(texts)):
        keep = [j for j, m in enumerate(batch["attention_mask"][i]) if m]
        ids = [batch["input_ids"][i][j] for j in keep]
        out.append(
            (
                encoder.tokenizer.convert_ids_to_tokens(ids),
                [tuple(batch["offset_mapping"][i][j]) for j in keep],
                [bool(batch["special_tokens_mask"][i][j]) for j in keep],
                ids,
            )
        )
    return out


@torch.inference_mode()
def training_plans(
    student: TokenEncoder,
    teacher: TokenEncoder,
    pairs: Sequence[Pair],
    loss_config: Mapping[str, Any],
    batch_size: int = 32,
) -> list[PairPlan]:
    """The training plan of every pair (see the module docstring), in input order."""
    train = [(src, en) for src, en in pairs]
    module = DistillationModule(
        student,
        teacher,
        "optical",
        loss_config,
        idf_sentences=([s for s, _ in train], [e for _, e in train]),
    )
    length = module.max_length
    plans: list[PairPlan] = []
    with _eval_mode(student, teacher):
        for start in range(0, len(train), batch_size):
            chunk = train[start : start + batch_size]
            result = module.plan_result(collate_pairs(chunk))
            plan = result.plan.detach().to("cpu", torch.float64)
            s_info = _token_info(student, [s for s, _ in chunk], length)
            t_info = _token_info(teacher, [e for _, e in chunk], length)
            s_mass = module.token_mass(student, [s for s, _ in chunk])
            t_mass = module.token_mass(teacher, [e for _, e in chunk])
            for k, (src, en) in enumerate(chunk):
                n, m = len(s_info[k][0]), len(t_info[k][0])
                if plan[k, n:].abs().sum() or plan[k, :, m:].abs().sum():
                    raise RuntimeError("plan mass outside the real tokens: tokenisations differ")
                plans.append(
                    PairPlan(
                        source=src,
                        english=en,
                        plan=plan[k, :n, :m].numpy(),
                        student_tokens=s_info[k][0],
                        teacher_tokens=t_info[k][0],
                        student_offsets=s_info[k][1],
                        teacher_offsets=t_info[k][1],
                        student_mass=s_mass[k][:n],
                        teacher_mass=t_mass[k][:m],
                        student_special=s_info[k][2],
                        teacher_special=t_info[k][2],
                    )
                )
    return plans


def token_words(text: str, offsets: Sequence[tuple[int, int]]) -> list[int | None]:
    """Index of the whitespace-separated word of ``text`` that holds each token (None for an
    added token). The gold alignments count words this way, whatever the tokenizer does
    with punctuation or clitics inside a word."""
    starts, position = [], 0
    for word in text.split():
        position = text.index(word, position)
        starts.append(position)
        position += len(word)
    words: list[int | None] = []
    for begin, end in offsets:
        if end <= begin:
            words.append(None)
            continue
        index = int(np.searchsorted(starts, begin, side="right")) - 1
        words.append(index if index >= 0 else None)
    return words


def trained_loss_config(model_dir: str | Path, default: Mapping[str, Any]) -> dict[str, Any]:
    """The OT settings an OPTICAL student was trained with (its ``train_config.json``);
    ``default`` for any other folder (the zero-shot teacher, a KD-MSE student)."""
    path = Path(model_dir) / "train_config.json"
    if path.is_file():
        record = json.loads(path.read_text())
        if record.get("method") == "optical":
            return dict(record["loss"])
    return dict(default)
