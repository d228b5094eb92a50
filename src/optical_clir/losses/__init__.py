"""Losses: OPTICAL's optimal-transport token alignment and the teacher's contrastive loss."""

from optical_clir.losses.optimal_transport import (
    OTAlignmentLoss,
    OTResult,
    cost_spread,
    epsilon_at,
    ot_alignment_loss,
    pairwise_cost,
    plan_diagnostics,
    sinkhorn_plan,
    uniform_marginals,
    weighted_marginals,
)

__all__ = [
    "OTAlignmentLoss",
    "OTResult",
    "cost_spread",
    "epsilon_at",
    "ot_alignment_loss",
    "pairwise_cost",
    "plan_diagnostics",
    "sinkhorn_plan",
    "uniform_marginals",
    "weighted_marginals",
]
