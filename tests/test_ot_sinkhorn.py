"""Log-domain Sinkhorn against POT, masking/padding, batching and gradients."""

from __future__ import annotations

import numpy as np
import ot
import pytest
import torch

from optical_clir.losses.optimal_transport import (
    sinkhorn,
    sinkhorn_plan,
    uniform_marginals,
    weighted_marginals,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _random_problem(n: int, m: int, seed: int, uniform: bool = False):
    g = torch.Generator().manual_seed(seed)
    cost = 2.0 * torch.rand(n, m, generator=g, dtype=torch.float64)
    if uniform:
        a = torch.full((n,), 1.0 / n, dtype=torch.float64)
        b = torch.full((m,), 1.0 / m, dtype=torch.float64)
    else:
        a = torch.rand(n, generator=g, dtype=torch.float64) + 0.1
        b = torch.rand(m, generator=g, dtype=torch.float64) + 0.1
        a, b = a / a.sum(), b / b.sum()
    return cost, a, b


@pytest.mark.parametrize(("n", "m"), [(1, 1), (3, 4), (7, 5), (12, 12)])
@pytest.mark.parametrize("epsilon", [0.05, 0.1, 0.5])
def test_matches_pot_sinkhorn(n: int, m: int, epsilon: float) -> None:
    cost, a, b = _random_problem(n, m, seed=n * 100 + m)
    res = sinkhorn(cost, a, b, epsilon=epsilon, n_iters=5000, tol=1e-12)
    ref = ot.sinkhorn(a.numpy(), b.numpy(), cost.numpy(), epsilon, numItermax=20000, stopThr=1e-13)
    plan = res.plan.numpy()
    assert np.abs(plan - ref).max() < 1e-4
    assert abs((plan * cost.numpy()).sum() - (ref * cost.numpy()).sum()) < 1e-4
    assert res.marginal_error < 1e-10


@pytest.mark.parametrize(("n", "m", "uniform"), [(4, 4, True), (5, 3, False), (8, 6, False)])
def test_small_epsilon_matches_pot_emd(n: int, m: int, uniform: bool) -> None:
    cost, a, b = _random_problem(n, m, seed=7 * n + m, uniform=uniform)
    # Near-degenerate LPs (uniform square = permutation) converge slowly (~1/t), hence the
    # iteration budget; the log domain keeps epsilon = 1e-3 free of under/overflow.
    res = sinkhorn(cost, a, b, epsilon=1e-3, n_iters=5000, tol=1e-10)
    ref = ot.emd(a.numpy(), b.numpy(), cost.numpy())
    plan = res.plan.numpy()
    assert np.isfinite(plan).all()
    assert abs((plan * cost.numpy()).sum() - (ref * cost.numpy()).sum()) < 1e-4
    # Random continuous costs: the LP optimum is unique, so the plans agree too.
    assert np.abs(plan - ref).max() < 1e-3


def test_float32_agrees_with_float64() -> None:
    cost, a, b = _random_problem(6, 9, seed=3)
    p64 = sinkhorn_plan(cost, a, b, epsilon=0.1, n_iters=200)
    p32 = sinkhorn_plan(cost.float(), a.float(), b.float(), epsilon=0.1, n_iters=200)
    assert p32.dtype == torch.float32
    assert (p32.double() - p64).abs().max() < 1e-5


def _padded_batch(lengths: list[tuple[int, int]], seed: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    n = max(x for x, _ in lengths)
    m = max(y for _, y in lengths)
    batch = len(lengths)
    cost = 100.0 * torch.randn(batch, n, m, generator=g, dtype=dtype)  # garbage at padding
    smask = torch.zeros(batch, n, dtype=torch.bool)
    tmask = torch.zeros(batch, m, dtype=torch.bool)
    for k, (x, y) in enumerate(lengths):
        cost[k, :x, :y] = 2.0 * torch.rand(x, y, generator=g, dtype=dtype)
        smask[k, :x] = True
        tmask[k, :y] = True
    return cost, smask, tmask


@pytest.mark.parametrize("device", DEVICES)
def test_batched_padding_equals_unpadded(device: str) -> None:
    lengths = [(5, 7), (2, 3), (6, 1), (1, 4), (6, 7)]
    cost, smask, tmask = _padded_batch(lengths, seed=11)
    a, b = uniform_marginals(smask, torch.float64), uniform_marginals(tmask, torch.float64)
    plan = sinkhorn_plan(cost.to(device), a.to(device), b.to(device), epsilon=0.1, n_iters=300)
    assert plan.device.type == device
    plan = plan.cpu()
    for k, (x, y) in enumerate(lengths):
        single = sinkhorn_plan(cost[k, :x, :y], a[k, :x], b[k, :y], epsilon=0.1, n_iters=300)
        assert torch.allclose(plan[k, :x, :y], single, atol=1e-12)
        assert (plan[k, x:, :] == 0).all()
        assert (plan[k, :, y:] == 0).all()
        ref = ot.sinkhorn(
            a[k, :x].numpy(), b[k, :y].numpy(), cost[k, :x, :y].numpy(), 0.1, stopThr=1e-13
        )
        assert np.abs(plan[k, :x, :y].numpy() - ref).max() < 1e-4


def test_marginals_hold_and_padding_gets_no_mass() -> None:
    cost, smask, tmask = _padded_batch([(4, 6), (3, 2), (1, 1)], seed=5)
    a = weighted_marginals(torch.rand(3, 4, dtype=torch.float64) + 0.1, smask)
    b = uniform_marginals(tmask, torch.float64)
    res = sinkhorn(cost, a, b, epsilon=0.05, n_iters=1000, tol=1e-12)
    assert torch.allclose(res.plan.sum(-1), a, atol=1e-10)
    assert torch.allclose(res.plan.sum(-2), b, atol=1e-12)
    pair = smask.unsqueeze(-1) & tmask.unsqueeze(-2)
    assert (res.plan[~pair] == 0).all()
    assert (res.plan >= 0).all()


def test_fully_padded_examples_give_zero_plan_without_nan() -> None:
    cost, smask, tmask = _padded_batch([(3, 4), (3, 4), (3, 4), (3, 4)], seed=2)
    smask[1] = False  # no student tokens
    tmask[2] = False  # no teacher tokens
    smask[3] = False
    tmask[3] = False
    cost[1:, :, :] = float("nan")  # padding cost is ignored, even NaN
    a, b = uniform_marginals(smask, torch.float64), uniform_marginals(tmask, torch.float64)
    cost.requires_grad_(True)
    plan = sinkhorn_plan(cost, a, b, epsilon=0.1, n_iters=20)
    assert torch.isfinite(plan).all()
    assert (plan[1:] == 0).all()
    assert torch.allclose(plan[0].sum(), torch.tensor(1.0, dtype=torch.float64))
    (plan * torch.nan_to_num(cost.detach())).sum().backward()
    assert torch.isfinite(cost.grad).all()
    assert (cost.grad[1:] == 0).all()


def test_tolerance_stops_early_and_reports_iterations() -> None:
    cost, a, b = _random_problem(5, 5, seed=1)
    res = sinkhorn(cost, a, b, epsilon=0.5, n_iters=1000, tol=1e-8, check_every=5)
    assert res.n_iters < 1000 and res.n_iters % 5 == 0
    assert res.marginal_error < 1e-8
    full = sinkhorn(cost, a, b, epsilon=0.5, n_iters=3)
    assert full.n_iters == 3 and full.marginal_error > 0


def test_potentials_reconstruct_plan() -> None:
    cost, a, b = _random_problem(4, 3, seed=9)
    res = sinkhorn(cost, a, b, epsilon=0.2, n_iters=500)
    rebuilt = torch.exp((res.f[:, None] + res.g[None, :] - cost) / 0.2)
    assert torch.allclose(rebuilt, res.plan, atol=1e-14)


def test_differentiable_plan_gradcheck() -> None:
    g = torch.Generator().manual_seed(0)
    cost = torch.rand(2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    smask = torch.tensor([[True, True, True], [True, True, False]])
    tmask = torch.tensor([[True, True, True, True], [True, False, True, False]])
    a, b = uniform_marginals(smask, torch.float64), uniform_marginals(tmask, torch.float64)

    def transport_cost(c: torch.Tensor) -> torch.Tensor:
        return (sinkhorn_plan(c, a, b, epsilon=0.3, n_iters=30) * c).sum()

    assert torch.autograd.gradcheck(transport_cost, (cost,), eps=1e-6, atol=1e-6)


def test_bad_arguments_raise() -> None:
    cost, a, b = _random_problem(3, 4, seed=0)
    with pytest.raises(ValueError):
        sinkhorn_plan(cost, a, b, epsilon=0.0)
    with pytest.raises(ValueError):
        sinkhorn_plan(cost, b, a)
    with pytest.raises(ValueError):
        weighted_marginals(torch.tensor([[1.0, -1.0]]))
