"""The ``distill.loss`` keys of OPTICAL's OT loss, importable without torch or POT.

Config validation and the variant names need them on every Snakemake start (on a cluster,
in every job), where loading torch and POT would cost seconds.
"""

from __future__ import annotations

# The ``distill.loss`` keys that configure the OT loss itself (the constructor's arguments
# of ``OTAlignmentLoss``).
LOSS_KEYS: tuple[str, ...] = (
    "cost",
    "marginals",
    "epsilon",
    "epsilon_mode",
    "epsilon_start",
    "anneal_fraction",
    "max_iter",
    "tol",
    "detach_plan",
)
