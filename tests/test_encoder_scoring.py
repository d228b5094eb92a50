"""MaxSim and dot scoring on hand-computed tensors."""

from __future__ import annotations

import pytest
import torch

from optical_clir.errors import ConfigError
from optical_clir.models.scoring import (
    dot_scores,
    dot_scores_paired,
    get_scorer,
    maxsim_scores,
    maxsim_scores_paired,
    score_all_pairs,
)

# query 0: tokens e1, e2 and a padded token that must be ignored
Q = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]], [[1.0, 1.0], [0.0, 0.0], [0.0, 0.0]]])
QM = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool)
# doc 0: e1, (0.5, 0.5); doc 1: e2, padding (9, 9) that must be ignored
D = torch.tensor([[[1.0, 0.0], [0.5, 0.5]], [[0.0, 1.0], [9.0, 9.0]]])
DM = torch.tensor([[1, 1], [1, 0]], dtype=torch.bool)


def test_maxsim_all_pairs_hand_computed() -> None:
    s = maxsim_scores(Q, QM, D, DM)
    # q0,d0: max(1, .5) + max(0, .5) = 1.5; q0,d1: 0 + 1 = 1
    # q1,d0: max(1, 1) = 1;                 q1,d1: 1
    expected = torch.tensor([[1.5, 1.0], [1.0, 1.0]])
    assert torch.allclose(s, expected)


def test_maxsim_paired_is_diagonal() -> None:
    assert torch.allclose(maxsim_scores_paired(Q, QM, D, DM), torch.tensor([1.5, 1.0]))
    torch.manual_seed(0)
    q, d = torch.randn(3, 4, 5), torch.randn(3, 6, 5)
    qm = torch.rand(3, 4) > 0.3
    dm = torch.rand(3, 6) > 0.3
    dm[:, 0] = True
    assert torch.allclose(maxsim_scores_paired(q, qm, d, dm), maxsim_scores(q, qm, d, dm).diag())


def test_maxsim_negative_similarities_and_empty_doc() -> None:
    q = torch.tensor([[[1.0, 0.0]]])
    qm = torch.ones(1, 1, dtype=torch.bool)
    d = torch.tensor([[[-1.0, 0.0], [-0.5, 0.0]], [[3.0, 0.0], [0.0, 0.0]]])
    dm = torch.tensor([[1, 1], [0, 0]], dtype=torch.bool)
    # best of negatives is -0.5 (not 0 from padding); an empty document scores 0
    assert torch.allclose(maxsim_scores(q, qm, d, dm), torch.tensor([[-0.5, 0.0]]))


def test_dot_scores() -> None:
    q = torch.tensor([[1.0, 2.0], [0.0, 1.0]])
    d = torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, -1.0]])
    assert torch.allclose(dot_scores(q, d), torch.tensor([[11.0, 1.0, -2.0], [4.0, 0.0, -1.0]]))
    assert torch.allclose(dot_scores_paired(q, d[:2]), torch.tensor([11.0, 0.0]))


def test_dispatch() -> None:
    assert get_scorer("maxsim") is maxsim_scores
    assert get_scorer("dot", paired=True) is dot_scores_paired
    assert torch.allclose(score_all_pairs("maxsim", Q, QM, D, DM), maxsim_scores(Q, QM, D, DM))
    assert torch.allclose(score_all_pairs("dot", Q[:, 0], None, D[:, 0], None), Q[:, 0] @ D[:, 0].T)
    with pytest.raises(ConfigError):
        get_scorer("cosine")
    with pytest.raises(ConfigError):
        score_all_pairs("bm25", Q, QM, D, DM)
