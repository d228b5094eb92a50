"""Losses: OPTICAL's optimal-transport token alignment and the teacher's contrastive loss.

The names below are loaded on first use: importing ``optical_clir.losses.settings`` (what
config validation needs) must not load torch and POT.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

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


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(import_module("optical_clir.losses.optimal_transport"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
