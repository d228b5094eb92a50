"""Word alignments from OT plans and their accuracy, on hand-made examples."""

from __future__ import annotations

import math

import pytest
import torch

from optical_clir.evaluation.alignment import (
    aggregate_token_plan,
    alignment_accuracy,
    alignment_counts,
    chance_alignment_accuracy,
    chance_alignment_counts,
    plan_argmax_alignment,
    word_alignment_from_token_plan,
)


def test_plan_argmax_alignment_with_masks() -> None:
    plan = torch.tensor([[[0.1, 0.3, 0.6], [0.5, 0.2, 0.0], [0.0, 0.0, 0.0]]])
    assert plan_argmax_alignment(plan).tolist() == [[2, 0, -1]]
    tmask = torch.tensor([[True, True, False]])
    assert plan_argmax_alignment(plan, tgt_mask=tmask).tolist() == [[1, 0, -1]]
    smask = torch.tensor([[False, True, True]])
    assert plan_argmax_alignment(plan, smask, tmask).tolist() == [[-1, 0, -1]]
    assert plan_argmax_alignment(plan[0]).tolist() == [2, 0, -1]


def test_word_plan_sums_subword_mass() -> None:
    # source tokens: [CLS] wa ##ta ##lii [SEP] -> words 0 0 0 ; second word "wa" -> 1
    plan = torch.tensor(
        [
            [0.0, 0.0, 0.0, 0.0],
            [0.1, 0.2, 0.0, 0.0],
            [0.0, 0.15, 0.05, 0.0],
            [0.0, 0.0, 0.0, 0.3],
            [0.0, 0.0, 0.0, 0.0],
        ]
    )
    src_words = [None, 0, 0, 1, None]
    tgt_words = [0, 1, 1, 2]  # target word 1 has two subwords
    words = aggregate_token_plan(plan, src_words, tgt_words)
    expected = torch.tensor([[0.1, 0.4, 0.0], [0.0, 0.0, 0.3]])
    assert torch.allclose(words, expected)
    assert word_alignment_from_token_plan(plan, src_words, tgt_words) == {0: 1, 1: 2}
    # a source word whose tokens carry no mass is left out
    empty_row = torch.tensor([[0.5, 0.0], [0.0, 0.0]])
    assert word_alignment_from_token_plan(empty_row, [0, 1], [0, 1]) == {0: 0}
    with pytest.raises(ValueError):
        aggregate_token_plan(plan, src_words[:-1], tgt_words)


def test_alignment_accuracy_hand_example() -> None:
    gold = [(0, 0), (1, 2), (1, 3), (3, 1)]  # word 2 unaligned, word 1 has two targets
    predicted = {0: 0, 1: 3, 2: 1, 3: 0}
    assert alignment_counts(predicted, gold) == (2, 3)
    assert math.isclose(alignment_accuracy(predicted, gold), 2 / 3)
    assert alignment_accuracy({0: 0}, gold) == pytest.approx(1 / 3)  # missing = wrong
    assert math.isnan(alignment_accuracy(predicted, []))


def test_chance_accuracy_hand_example() -> None:
    gold = [(0, 0), (1, 2), (1, 3), (3, 1)]
    # (1/4 + 2/4 + 1/4) / 3
    assert chance_alignment_accuracy(gold, 4) == pytest.approx(1 / 3)
    assert chance_alignment_counts(gold, 4) == (pytest.approx(1.0), 3)
    assert chance_alignment_accuracy([(0, 0)], 1) == 1.0
    with pytest.raises(ValueError):
        chance_alignment_accuracy(gold, 3)


def test_chance_accuracy_matches_random_guessing() -> None:
    gold = [(0, 0), (1, 2), (1, 3), (2, 1)]
    g = torch.Generator().manual_seed(0)
    guesses = torch.randint(0, 5, (4000, 3), generator=g)
    acc = sum(
        alignment_accuracy({i: int(row[i]) for i in range(3)}, gold) for row in guesses
    ) / len(guesses)
    assert acc == pytest.approx(chance_alignment_accuracy(gold, 5), abs=0.02)
