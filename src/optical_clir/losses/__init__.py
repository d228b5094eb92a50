"""losses"""

from optical_clir.losses.optimal_transport import (
    OTAlignmentLoss,
    SinkhornResult,
    norm_marginals,
    ot_alignment_loss,
    pairwise_cost,
    sinkhorn,
    sinkhorn_plan,
    uniform_marginals,
    weighted_marginals,
)

__all__ = [
    "OTAlignmentLoss",
    "SinkhornResult",
    "norm_marginals",
    "ot_alignment_loss",
    "pairwise_cost",
    "sinkhorn",
    "sinkhorn_plan",
    "uniform_marginals",
    "weighted_marginals",
]
