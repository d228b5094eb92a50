"""Word alignments read off optimal-transport plans, and their accuracy against gold.

Pure functions: a token plan (e.g. from ``OTAlignmentLoss(..., return_plan=True)``) is
turned into a source->target alignment by argmax, optionally after summing the mass of the
subword tokens of each word, and scored against gold Pharaoh-style pairs ``(i, j)``
(0-based source word i aligned to target word j).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

import torch

__all__ = [
    "aggregate_token_plan",
    "alignment_accuracy",
    "alignment_counts",
    "chance_alignment_accuracy",
    "chance_alignment_counts",
    "plan_argmax_alignment",
    "word_alignment_from_token_plan",
]


def plan_argmax_alignment(
    plan: torch.Tensor,
    src_mask: torch.Tensor | None = None,
    tgt_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Each source token's target token of largest mass: ``[.., n, m] -> [.., n]`` (long).

    Masked target tokens are never chosen; masked source tokens, and source tokens whose row
    carries no mass, get -1.
    """
    p = plan.detach()
    if tgt_mask is not None:
        p = p.masked_fill(~tgt_mask.bool().unsqueeze(-2), -torch.inf)
    idx = p.argmax(dim=-1)
    empty = ~(plan.detach() > 0).any(dim=-1)
    if tgt_mask is not None:
        empty |= ~tgt_mask.bool().any(dim=-1, keepdim=True).expand_as(empty)
    if src_mask is not None:
        empty |= ~src_mask.bool()
    return idx.masked_fill(empty, -1)


def aggregate_token_plan(
    plan: torch.Tensor,
    src_word_ids: Sequence[int | None],
    tgt_word_ids: Sequence[int | None],
    n_src_words: int | None = None,
    n_tgt_words: int | None = None,
) -> torch.Tensor:
    """Sum a subword-token plan ``[n, m]`` into a word plan ``[n_src_words, n_tgt_words]``.

    ``*_word_ids`` give each token's word index (as from a tokenizer's ``word_ids()``);
    tokens with ``None`` (special tokens, padding) are dropped. Word counts default to
    ``max(word id) + 1``.
    """
    if plan.dim() != 2:
        raise ValueError(f"plan must be [n, m] for one sentence pair, got {tuple(plan.shape)}")
    n, m = plan.shape
    if len(src_word_ids) != n or len(tgt_word_ids) != m:
        raise ValueError(
            f"word ids ({len(src_word_ids)}, {len(tgt_word_ids)}) do not match plan {(n, m)}"
        )
    n_src = n_src_words if n_src_words is not None else _n_words(src_word_ids)
    n_tgt = n_tgt_words if n_tgt_words is not None else _n_words(tgt_word_ids)
    src_onehot = _word_onehot(src_word_ids, n_src, plan)  # [n_src, n]
    tgt_onehot = _word_onehot(tgt_word_ids, n_tgt, plan)  # [n_tgt, m]
    return src_onehot @ plan.detach() @ tgt_onehot.T


def word_alignment_from_token_plan(
    plan: torch.Tensor,
    src_word_ids: Sequence[int | None],
    tgt_word_ids: Sequence[int | None],
) -> dict[int, int]:
    """Source word -> target word of largest summed mass (see :func:`aggregate_token_plan`).

    Source words whose tokens carry no mass (or have no target word) are left out.
    """
    words = aggregate_token_plan(plan, src_word_ids, tgt_word_ids)
    if words.numel() == 0:
        return {}
    best = words.argmax(dim=-1)
    has_mass = (words > 0).any(dim=-1)
    return {i: int(best[i]) for i in range(words.shape[0]) if bool(has_mass[i])}


def _gold_targets(gold: Iterable[tuple[int, int]]) -> dict[int, set[int]]:
    targets: dict[int, set[int]] = defaultdict(set)
    for i, j in gold:
        targets[int(i)].add(int(j))
    return targets


def alignment_counts(
    predicted: Mapping[int, int], gold: Iterable[tuple[int, int]]
) -> tuple[int, int]:
    """``(correct, total)``: gold-aligned source words, and those predicted to a gold target.

    For micro-averaging over a corpus; a source word without a prediction counts as wrong.
    """
    targets = _gold_targets(gold)
    correct = sum(1 for i, js in targets.items() if predicted.get(i) in js)
    return correct, len(targets)


def alignment_accuracy(predicted: Mapping[int, int], gold: Iterable[tuple[int, int]]) -> float:
    """Fraction of gold-aligned source words whose predicted target is one of their gold
    targets (NaN when no source word is gold-aligned)."""
    correct, total = alignment_counts(predicted, gold)
    return correct / total if total else float("nan")


def chance_alignment_counts(gold: Iterable[tuple[int, int]], n_tgt_words: int) -> tuple[float, int]:
    """``(expected correct, total)`` for a guess uniform over ``n_tgt_words`` target words."""
    if n_tgt_words < 1:
        raise ValueError(f"n_tgt_words must be >= 1, got {n_tgt_words}")
    targets = _gold_targets(gold)
    for js in targets.values():
        if any(j < 0 or j >= n_tgt_words for j in js):
            raise ValueError(f"gold target index out of range for {n_tgt_words} target words")
    expected = sum(len(js) / n_tgt_words for js in targets.values())
    return expected, len(targets)


def chance_alignment_accuracy(gold: Iterable[tuple[int, int]], n_tgt_words: int) -> float:
    """Expected :func:`alignment_accuracy` of a uniform random target guess per source word:
    the mean over gold-aligned source words of ``|gold targets| / n_tgt_words``."""
    expected, total = chance_alignment_counts(gold, n_tgt_words)
    return expected / total if total else float("nan")


def _n_words(word_ids: Sequence[int | None]) -> int:
    ids = [w for w in word_ids if w is not None]
    return max(ids) + 1 if ids else 0


def _word_onehot(word_ids: Sequence[int | None], n_words: int, like: torch.Tensor) -> torch.Tensor:
    onehot = torch.zeros(n_words, len(word_ids), dtype=like.dtype, device=like.device)
    for t, w in enumerate(word_ids):
        if w is None:
            continue
        if not 0 <= w < n_words:
            raise ValueError(f"word id {w} out of range for {n_words} words")
        onehot[w, t] = 1.0
    return onehot
