"""Costs, marginals, the OT alignment loss (function and module), gradients and recovery."""

from __future__ import annotations

import math

import ot
import pytest
import torch

from optical_clir.evaluation.alignment import plan_argmax_alignment
from optical_clir.losses import (
    OTAlignmentLoss,
    norm_marginals,
    ot_alignment_loss,
    pairwise_cost,
    sinkhorn_plan,
    uniform_marginals,
    weighted_marginals,
)


def _embeddings(lengths: list[tuple[int, int]], d: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    batch, n, m = len(lengths), max(x for x, _ in lengths), max(y for _, y in lengths)
    s = torch.randn(batch, n, d, generator=g, dtype=torch.float64)
    t = torch.randn(batch, m, d, generator=g, dtype=torch.float64)
    smask = torch.zeros(batch, n, dtype=torch.long)
    tmask = torch.zeros(batch, m, dtype=torch.long)
    for k, (x, y) in enumerate(lengths):
        smask[k, :x] = 1
        tmask[k, :y] = 1
    return s, smask, t, tmask


def test_cost_kinds() -> None:
    s, _, t, _ = _embeddings([(5, 6), (5, 6)])
    cos = pairwise_cost(s, t, "cosine")
    assert cos.shape == (2, 5, 6)
    assert (cos >= 0).all() and (cos <= 2).all()
    ref = 1 - torch.nn.functional.cosine_similarity(s[:, :, None], t[:, None, :], dim=-1)
    assert torch.allclose(cos, ref, atol=1e-12)
    assert torch.allclose(pairwise_cost(s, -s, "cosine"), 2 - pairwise_cost(s, s, "cosine"))
    assert torch.allclose(
        pairwise_cost(s, s, "cosine").diagonal(dim1=-2, dim2=-1),
        torch.zeros(2, 5, dtype=torch.float64),
    )
    sq = pairwise_cost(s, t, "sqeuclidean")
    eu = pairwise_cost(s, t, "euclidean")
    direct = (s[:, :, None] - t[:, None, :]).pow(2).sum(-1)
    assert torch.allclose(sq, direct, atol=1e-10)
    assert torch.allclose(eu, direct.sqrt(), atol=1e-10)
    with pytest.raises(ValueError):
        pairwise_cost(s, t, "manhattan")  # type: ignore[arg-type]


def test_euclidean_gradient_finite_at_zero_distance() -> None:
    s = torch.randn(1, 3, 4, dtype=torch.float64, requires_grad=True)
    pairwise_cost(s, s.detach().clone(), "euclidean").sum().backward()
    assert torch.isfinite(s.grad).all()


def test_marginal_helpers() -> None:
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]])
    u = uniform_marginals(mask)
    assert torch.allclose(u[0], torch.tensor([0.5, 0.5, 0, 0]))
    assert torch.allclose(u[1], torch.full((4,), 0.25))
    assert (u[2] == 0).all()
    w = weighted_marginals(
        torch.tensor([[1.0, 3.0, 9.0, 9.0], [0.0, 0.0, 0.0, 0.0], [1, 1, 1, 1.0]]), mask
    )
    assert torch.allclose(w[0], torch.tensor([0.25, 0.75, 0, 0]))
    assert torch.allclose(w[1], torch.full((4,), 0.25))  # all-zero weights: uniform fallback
    assert (w[2] == 0).all() and not torch.isnan(w).any()
    emb = torch.tensor([[[3.0, 4.0], [0.0, 5.0], [1.0, 0.0]]])
    nm = norm_marginals(emb, torch.tensor([[1, 1, 0]]))
    assert torch.allclose(nm, torch.tensor([[0.5, 0.5, 0.0]]))


def test_loss_equals_pot_transport_cost() -> None:
    s, smask, t, tmask = _embeddings([(4, 5)], seed=3)
    loss, plan = ot_alignment_loss(s, smask, t, tmask, epsilon=0.1, n_iters=2000, return_plan=True)
    c = pairwise_cost(s, t)[0].numpy()
    ref = ot.sinkhorn(
        uniform_marginals(smask, torch.float64)[0].numpy(),
        uniform_marginals(tmask, torch.float64)[0].numpy(),
        c,
        0.1,
        stopThr=1e-13,
    )
    assert abs(loss.item() - (ref * c).sum()) < 1e-8
    assert abs(plan[0].numpy() - ref).max() < 1e-8


def test_batched_loss_equals_per_example_mean() -> None:
    lengths = [(4, 5), (2, 7), (6, 3)]
    s, smask, t, tmask = _embeddings(lengths, seed=4)
    s[smask == 0] = 1e3  # garbage in the padding must not matter
    t[tmask == 0] = -1e3
    batched, plan = ot_alignment_loss(s, smask, t, tmask, n_iters=100, return_plan=True)
    singles = []
    for k, (x, y) in enumerate(lengths):
        one, p1 = ot_alignment_loss(
            s[k : k + 1, :x],
            smask[k : k + 1, :x],
            t[k : k + 1, :y],
            tmask[k : k + 1, :y],
            n_iters=100,
            return_plan=True,
        )
        singles.append(one)
        assert torch.allclose(plan[k, :x, :y], p1[0], atol=1e-12)
    assert torch.allclose(batched, torch.stack(singles).mean(), atol=1e-12)
    per = ot_alignment_loss(s, smask, t, tmask, n_iters=100, reduction="none")
    assert torch.allclose(per, torch.stack(singles), atol=1e-12)
    total = ot_alignment_loss(s, smask, t, tmask, n_iters=100, reduction="sum")
    assert torch.allclose(total, per.sum())


def test_empty_examples_excluded_from_mean_and_no_nan() -> None:
    s, smask, t, tmask = _embeddings([(3, 4), (3, 4), (3, 4)], seed=6)
    smask[1] = 0
    tmask[2] = 0
    s.requires_grad_(True)
    loss = ot_alignment_loss(s, smask, t, tmask)
    alone = ot_alignment_loss(s[:1], smask[:1], t[:1], tmask[:1])
    assert torch.allclose(loss, alone)
    loss.backward()
    assert torch.isfinite(s.grad).all() and (s.grad[1:] == 0).all()
    smask[0] = 0
    nothing = ot_alignment_loss(s, smask, t, tmask)
    assert nothing.item() == 0.0


def test_detached_plan_gradient_is_plan() -> None:
    s, smask, t, tmask = _embeddings([(3, 4), (2, 4)], seed=8)
    s.requires_grad_(True)
    loss, plan = ot_alignment_loss(s, smask, t, tmask, detach_plan=True, return_plan=True)
    assert not plan.requires_grad
    (grad_s,) = torch.autograd.grad(loss, s)
    # d loss / d C = P / B, so the gradient equals that of <P_fixed, C(s)> / B.
    s2 = s.detach().clone().requires_grad_(True)
    cost = pairwise_cost(s2, t)
    cost.retain_grad()
    ((plan * cost).sum() / 2).backward()
    assert torch.allclose(grad_s, s2.grad, atol=1e-12)
    assert torch.allclose(cost.grad, plan / 2, atol=1e-15)


def test_differentiable_plan_path() -> None:
    s, smask, t, tmask = _embeddings([(3, 2), (2, 3)], d=3, seed=10)
    smask[1, 1] = 0
    s.requires_grad_(True)
    loss, plan = ot_alignment_loss(
        s, smask, t, tmask, detach_plan=False, epsilon=0.2, n_iters=20, return_plan=True
    )
    assert plan.requires_grad
    (g_full,) = torch.autograd.grad(loss, s)
    g_det = torch.autograd.grad(ot_alignment_loss(s, smask, t, tmask, epsilon=0.2, n_iters=20), s)[
        0
    ]
    assert not torch.allclose(g_full, g_det)  # the plan's own gradient contributes

    def f(x: torch.Tensor) -> torch.Tensor:
        return ot_alignment_loss(x, smask, t, tmask, detach_plan=False, epsilon=0.2, n_iters=20)

    assert torch.autograd.gradcheck(f, (s,), eps=1e-6, atol=1e-6)


def test_weighted_marginals_in_loss() -> None:
    s, smask, t, tmask = _embeddings([(3, 4)], seed=12)
    sw = torch.tensor([[1.0, 2.0, 5.0]])
    tw = torch.tensor([[1.0, 1.0, 1.0, 3.0]])
    _, plan = ot_alignment_loss(
        s,
        smask,
        t,
        tmask,
        marginals="weighted",
        student_weights=sw,
        teacher_weights=tw,
        n_iters=1000,
        tol=1e-12,
        return_plan=True,
    )
    assert torch.allclose(plan.sum(-1), (sw / sw.sum()).double(), atol=1e-10)
    assert torch.allclose(plan.sum(-2), (tw / tw.sum()).double(), atol=1e-10)
    _, nplan = ot_alignment_loss(
        s, smask, t, tmask, marginals="norm", n_iters=1000, return_plan=True
    )
    assert torch.allclose(nplan.sum(-2), norm_marginals(t, tmask), atol=1e-10)
    with pytest.raises(ValueError):
        ot_alignment_loss(s, smask, t, tmask, marginals="weighted")
    with pytest.raises(ValueError):
        ot_alignment_loss(s, smask, t, tmask, student_weights=sw, teacher_weights=tw)


def test_cost_scale_and_euclidean_loss() -> None:
    s, smask, t, tmask = _embeddings([(3, 4)], seed=13)
    raw = ot_alignment_loss(s, smask, t, tmask, cost="euclidean", epsilon=1.0, n_iters=200)
    scaled = ot_alignment_loss(
        3 * s, smask, 3 * t, tmask, cost="euclidean", epsilon=3.0, n_iters=200
    )
    assert torch.allclose(3 * raw, scaled)  # epsilon is in the units of the cost
    rel = ot_alignment_loss(s, smask, t, tmask, cost="sqeuclidean", cost_scale="max")
    rel3 = ot_alignment_loss(3 * s, smask, 3 * t, tmask, cost="sqeuclidean", cost_scale="max")
    assert torch.allclose(rel, rel3) and 0 < rel.item() <= 1


def test_module_matches_function_and_float32() -> None:
    s, smask, t, tmask = _embeddings([(5, 6), (3, 2)], seed=14)
    module = OTAlignmentLoss(epsilon=0.05, n_iters=80)
    assert module.get_config_dict()["cost"] == "cosine" and "2301.12566" in module.citation
    assert "epsilon=0.05" in repr(module)
    out = module(s.float(), smask, t.float(), tmask)
    assert out.dtype == torch.float32 and out.dim() == 0
    ref = ot_alignment_loss(s, smask, t, tmask, epsilon=0.05, n_iters=80)
    assert math.isclose(out.item(), ref.item(), abs_tol=1e-5)
    with pytest.raises(ValueError):
        OTAlignmentLoss(cost="l1")  # type: ignore[arg-type]


def test_plan_recovers_permutation() -> None:
    g = torch.Generator().manual_seed(21)
    lengths = [9, 5, 12]
    n, d = max(lengths), 16
    s = torch.randn(3, n, d, generator=g)
    t = torch.zeros(3, n, d)
    smask = torch.zeros(3, n, dtype=torch.bool)
    perms = []
    for k, x in enumerate(lengths):
        perm = torch.randperm(x, generator=g)
        t[k, :x] = s[k, perm] + 0.05 * torch.randn(x, d, generator=g)
        smask[k, :x] = True
        perms.append(perm)
    loss, plan = OTAlignmentLoss()(s, smask, t, smask, return_plan=True)
    assert loss.item() < 0.05
    pred = plan_argmax_alignment(plan, smask, smask)
    for k, x in enumerate(lengths):
        # teacher token j is student token perm[j], so student i maps to j = perm^-1[i]
        assert torch.equal(pred[k, :x], torch.argsort(perms[k]))
        assert (pred[k, x:] == -1).all()


def test_sinkhorn_plan_exported_from_package() -> None:
    c = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    p = sinkhorn_plan(c, torch.tensor([0.5, 0.5]), torch.tensor([0.5, 0.5]), epsilon=0.01)
    assert torch.allclose(p, torch.tensor([[0.5, 0.0], [0.0, 0.5]]), atol=1e-6)
