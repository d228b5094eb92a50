"""ContrastiveLoss (InfoNCE over in-batch and hard negatives) on hand-computed scores."""

from __future__ import annotations

import math

import pytest
import torch

from optical_clir.losses.contrastive import ContrastiveLoss


def _ce(row: list[float], target: int) -> float:
    return -row[target] + math.log(sum(math.exp(x) for x in row))


def test_in_batch_and_hard_negatives() -> None:
    # 2 queries; columns: pos0, pos1, neg0, neg1
    scores = torch.tensor([[3.0, 1.0, 2.0, 0.0], [0.5, 2.0, 1.0, 1.5]])
    expected = (_ce([3, 1, 2, 0], 0) + _ce([0.5, 2, 1, 1.5], 1)) / 2
    assert ContrastiveLoss()(scores).item() == pytest.approx(expected, rel=1e-6)
    t = 0.5
    expected_t = (_ce([6, 2, 4, 0], 0) + _ce([1, 4, 2, 3], 1)) / 2
    assert ContrastiveLoss(temperature=t)(scores).item() == pytest.approx(expected_t, rel=1e-6)


def test_pairwise_only() -> None:
    scores = torch.tensor([[3.0, 1.0, 2.0, 0.0], [0.5, 2.0, 1.0, 1.5]])
    loss = ContrastiveLoss(in_batch_negatives=False)(scores)
    expected = (_ce([3, 2], 0) + _ce([2, 1.5], 0)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_explicit_labels_and_gradient() -> None:
    scores = torch.tensor([[0.0, 1.0, 0.0]], requires_grad=True)
    loss = ContrastiveLoss()(scores, torch.tensor([1]))
    loss.backward()
    p = torch.softmax(scores.detach(), dim=1)
    assert torch.allclose(scores.grad, p - torch.tensor([[0.0, 1.0, 0.0]]))


def test_bad_input() -> None:
    with pytest.raises(ValueError):
        ContrastiveLoss(temperature=0)
    with pytest.raises(ValueError):
        ContrastiveLoss()(torch.zeros(3))
