"""Costs, marginals, the POT-solved plan, the epsilon that fits the cost, diagnostics, the loss."""

from __future__ import annotations

import math

import ot
import pytest
import torch

from optical_clir.evaluation.alignment import plan_argmax_alignment
from optical_clir.losses import (
    OTAlignmentLoss,
    cost_spread,
    epsilon_at,
    ot_alignment_loss,
    pairwise_cost,
    plan_diagnostics,
    sinkhorn_plan,
    uniform_marginals,
    weighted_marginals,
)


def _embeddings(lengths: list[tuple[int, int]], d: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    batch, n, m = len(lengths), max(x for x, _ in lengths), max(y for _, y in lengths)
    s = torch.randn(batch, n, d, generator=g, dtype=torch.float64)
    t = torch.randn(batch, m, d, generator=g, dtype=torch.float64)
    smask = torch.zeros(batch, n, dtype=torch.bool)
    tmask = torch.zeros(batch, m, dtype=torch.bool)
    for k, (x, y) in enumerate(lengths):
        smask[k, :x] = True
        tmask[k, :y] = True
    return s, smask, t, tmask


def test_cost_kinds() -> None:
    s, _, t, _ = _embeddings([(5, 6), (5, 6)])
    cos = pairwise_cost(s, t, "cosine")
    assert cos.shape == (2, 5, 6)
    ref = 1 - torch.nn.functional.cosine_similarity(s[:, :, None], t[:, None, :], dim=-1)
    assert torch.allclose(cos, ref, atol=1e-12)
    direct = (s[:, :, None] - t[:, None, :]).pow(2).sum(-1)
    assert torch.allclose(pairwise_cost(s, t, "sqeuclidean"), direct, atol=1e-10)
    assert torch.allclose(pairwise_cost(s, t, "euclidean"), direct.sqrt(), atol=1e-10)
    with pytest.raises(ValueError):
        pairwise_cost(s, t, "manhattan")  # type: ignore[arg-type]


def test_marginal_helpers() -> None:
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]]).bool()
    u = uniform_marginals(mask)
    assert torch.allclose(u[0], torch.tensor([0.5, 0.5, 0, 0]))
    assert (u[2] == 0).all()
    w = weighted_marginals(
        torch.tensor([[1.0, 3.0, 9.0, 9.0], [0.0, 0.0, 0.0, 0.0], [1, 1, 1, 1.0]]), mask
    )
    assert torch.allclose(w[0], torch.tensor([0.25, 0.75, 0, 0]))
    assert torch.allclose(w[1], torch.full((4,), 0.25))  # all-zero weights: uniform fallback
    assert (w[2] == 0).all() and not torch.isnan(w).any()
    with pytest.raises(ValueError):
        weighted_marginals(torch.tensor([[-1.0, 1.0]]), torch.ones(1, 2, dtype=torch.bool))


@pytest.mark.parametrize("epsilon", [0.5, 0.05, 0.01])
def test_plan_equals_pot_single_problem_solver(epsilon: float) -> None:
    """The batched plan (scaling iterations after a row shift) is POT's ``ot.sinkhorn``
    plan of each example, padding included, down to small epsilon."""
    lengths = [(4, 5), (2, 7), (6, 3)]
    s, smask, t, tmask = _embeddings(lengths, seed=4)
    cost = pairwise_cost(s, t)
    cost[~(smask[:, :, None] & tmask[:, None, :])] = 1e3  # garbage in the padding
    a, b = uniform_marginals(smask, torch.float64), uniform_marginals(tmask, torch.float64)
    plan, _ = sinkhorn_plan(cost, a, b, epsilon, max_iter=20000, tol=1e-12)
    for k, (x, y) in enumerate(lengths):
        ref = ot.sinkhorn(
            a[k, :x].numpy(), b[k, :y].numpy(), cost[k, :x, :y].numpy(), epsilon,
            method="sinkhorn_log", numItermax=100000, stopThr=1e-13,
        )  # fmt: skip
        assert abs(plan[k, :x, :y].numpy() - ref).max() < 1e-7
        assert plan[k, x:].abs().sum() == 0 and plan[k, :, y:].abs().sum() == 0


def test_log_domain_fallback_when_the_kernel_underflows() -> None:
    """A cost range of thousands of epsilon underflows the scaling kernel of a column; the
    batch is then solved by POT's log-domain Sinkhorn, still matching ``ot.sinkhorn``."""
    cost = torch.tensor([[[0.0, 30.0], [30.0, 0.0], [2.0, 30.0]]], dtype=torch.float64)
    a = torch.full((1, 3), 1 / 3, dtype=torch.float64)
    b = torch.full((1, 2), 0.5, dtype=torch.float64)
    plan, _ = sinkhorn_plan(cost, a, b, 0.01, max_iter=5000, tol=1e-10)
    assert torch.isfinite(plan).all()
    ref = ot.sinkhorn(a[0].numpy(), b[0].numpy(), cost[0].numpy(), 0.01, method="sinkhorn_log",
                      numItermax=100000, stopThr=1e-12)  # fmt: skip
    assert abs(plan[0].numpy() - ref).max() < 1e-6


def test_relative_epsilon_on_a_scaled_cost_equals_absolute_on_the_unscaled() -> None:
    s, smask, t, tmask = _embeddings([(5, 6), (4, 3)], seed=13)
    kw = {"cost": "sqeuclidean", "max_iter": 5000, "tol": 1e-10}
    spread = cost_spread(pairwise_cost(s, t, "sqeuclidean"), smask[:, :, None] & tmask[:, None, :])
    for k in range(2):
        one = (s[k : k + 1], smask[k : k + 1], t[k : k + 1], tmask[k : k + 1])
        absolute = ot_alignment_loss(
            *one, epsilon=0.2 * float(spread[k]), epsilon_mode="absolute", **kw
        )
        scaled = (3 * s[k : k + 1], smask[k : k + 1], 3 * t[k : k + 1], tmask[k : k + 1])
        relative = ot_alignment_loss(*scaled, epsilon=0.2, epsilon_mode="relative", **kw)
        assert torch.allclose(relative.plan, absolute.plan, atol=1e-8)
        assert math.isclose(float(relative.loss), 9 * float(absolute.loss), rel_tol=1e-8)


def test_diagnostics_of_known_plans() -> None:
    """A constant cost gives the independent coupling (entropy 1, row max 1x uniform); an
    identity-like cost at small epsilon gives a permutation plan (entropy 0, row max n x)."""
    n = 6
    mask = torch.ones(1, n, dtype=torch.bool)
    pairs = mask[:, :, None] & mask[:, None, :]
    a = uniform_marginals(mask, torch.float64)
    flat = torch.full((1, n, n), 0.7, dtype=torch.float64)
    plan, _ = sinkhorn_plan(flat, a, a, 0.1)
    d = plan_diagnostics(plan, a, a, flat, pairs)
    assert float(d["normalized_entropy"]) == pytest.approx(1.0, abs=1e-9)
    assert float(d["row_max_ratio"]) == pytest.approx(1.0, abs=1e-9)
    assert float(d["cost_sd"]) == pytest.approx(0.0, abs=1e-12)
    assert float(cost_spread(flat, pairs)[0]) == 1.0  # no spread: the safe fallback
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    cost = torch.ones(1, n, n, dtype=torch.float64)
    cost[0, torch.arange(n), perm] = 0.0
    plan, iterations = sinkhorn_plan(cost, a, a, 0.01)
    d = plan_diagnostics(plan, a, a, cost, pairs)
    assert float(d["normalized_entropy"]) == pytest.approx(0.0, abs=1e-6)
    assert float(d["row_max_ratio"]) == pytest.approx(n, rel=1e-6)
    assert float(d["marginal_error"]) < 1e-6 and iterations >= 1
    assert torch.equal(plan[0].argmax(-1), perm)


def test_epsilon_schedule() -> None:
    assert epsilon_at(0.1, None, 0.0) == 0.1
    assert epsilon_at(0.1, 1.0, 0.0) == pytest.approx(1.0)
    assert epsilon_at(0.1, 1.0, 0.25, 0.5) == pytest.approx(math.sqrt(0.1))
    assert epsilon_at(0.1, 1.0, 0.5, 0.5) == 0.1 and epsilon_at(0.1, 1.0, 0.9, 0.5) == 0.1
    loss = OTAlignmentLoss(epsilon=0.1, epsilon_start=1.0, anneal_fraction=0.5)
    assert loss.current_epsilon() == 0.1  # outside training: the final value
    loss.set_progress(0.0)
    assert loss.current_epsilon() == pytest.approx(1.0)


def test_loss_is_plan_times_cost_and_detached_gradient_is_the_plan() -> None:
    s, smask, t, tmask = _embeddings([(3, 4), (2, 4)], seed=8)
    s.requires_grad_(True)
    result = ot_alignment_loss(s, smask, t, tmask, epsilon=0.2)
    assert not result.plan.requires_grad
    (grad_s,) = torch.autograd.grad(result.loss, s)
    s2 = s.detach().clone().requires_grad_(True)
    cost = pairwise_cost(s2, t)
    ((result.plan * cost).sum() / 2).backward()
    assert torch.allclose(grad_s, s2.grad, atol=1e-12)
    expected = float((result.plan * cost).sum().detach() / 2)
    assert float(result.loss.detach()) == pytest.approx(expected, rel=1e-12)


def test_gradient_through_the_iterations() -> None:
    s, smask, t, tmask = _embeddings([(3, 2), (2, 3)], d=3, seed=10)
    s.requires_grad_(True)
    full = ot_alignment_loss(s, smask, t, tmask, detach_plan=False, epsilon=0.3, tol=1e-9)
    assert full.plan.requires_grad
    (g_full,) = torch.autograd.grad(full.loss, s)
    (g_det,) = torch.autograd.grad(ot_alignment_loss(s, smask, t, tmask, epsilon=0.3).loss, s)
    assert torch.isfinite(g_full).all() and not torch.allclose(g_full, g_det)


def test_empty_examples_excluded_and_no_nan() -> None:
    s, smask, t, tmask = _embeddings([(3, 4), (3, 4), (3, 4)], seed=6)
    smask[1] = False
    tmask[2] = False
    s.requires_grad_(True)
    result = ot_alignment_loss(s, smask, t, tmask)
    alone = ot_alignment_loss(s[:1], smask[:1], t[:1], tmask[:1])
    assert torch.allclose(result.loss, alone.loss)
    assert result.plan[1:].abs().sum() == 0
    result.loss.backward()
    assert torch.isfinite(s.grad).all() and (s.grad[1:] == 0).all()


def test_weighted_marginals_hold_in_the_plan() -> None:
    s, smask, t, tmask = _embeddings([(3, 4)], seed=12)
    sw, tw = torch.tensor([[1.0, 2.0, 5.0]]), torch.tensor([[1.0, 1.0, 1.0, 3.0]])
    result = ot_alignment_loss(s, smask, t, tmask, marginals="idf", student_weights=sw,
                               teacher_weights=tw, tol=1e-12, max_iter=5000)  # fmt: skip
    assert torch.allclose(result.plan.sum(-1), (sw / sw.sum()).double(), atol=1e-10)
    assert torch.allclose(result.plan.sum(-2), (tw / tw.sum()).double(), atol=1e-10)
    with pytest.raises(ValueError, match="needs token weights"):
        ot_alignment_loss(s, smask, t, tmask, marginals="word")


def test_plan_recovers_a_permutation_and_is_sharp() -> None:
    g = torch.Generator().manual_seed(21)
    lengths = [9, 5, 12]
    n, d = max(lengths), 16
    s = torch.randn(3, n, d, generator=g)
    t = torch.zeros(3, n, d)
    mask = torch.zeros(3, n, dtype=torch.bool)
    perms = []
    for k, x in enumerate(lengths):
        perm = torch.randperm(x, generator=g)
        t[k, :x] = s[k, perm] + 0.05 * torch.randn(x, d, generator=g)
        mask[k, :x] = True
        perms.append(perm)
    result = OTAlignmentLoss(epsilon=0.1)(s, mask, t, mask)
    pred = plan_argmax_alignment(result.plan, mask, mask)
    for k, x in enumerate(lengths):
        assert torch.equal(pred[k, :x], torch.argsort(perms[k]))
    assert float(result.diagnostics["row_max_ratio"]) > 5
    assert float(result.diagnostics["marginal_error"]) < 1e-3


def test_module_options_and_errors() -> None:
    module = OTAlignmentLoss(epsilon=0.05, marginals="word")
    assert module.get_config_dict()["epsilon"] == 0.05 and "2301.12566" in module.citation
    assert "epsilon=0.05" in repr(module)
    assert OTAlignmentLoss.from_config({"epsilon": 0.2, "special_tokens": "no_mass"}).epsilon == 0.2
    for bad in ({"cost": "l1"}, {"marginals": "weighted"}, {"epsilon": 0.0},
                {"epsilon_mode": "scaled"}, {"max_iter": 0}):  # fmt: skip
        with pytest.raises(ValueError):
            OTAlignmentLoss(**bad)  # type: ignore[arg-type]
