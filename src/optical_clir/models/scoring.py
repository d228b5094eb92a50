"""Relevance scores between encoded queries and documents (pure tensor functions).

``maxsim``: ColBERT late interaction (Khattab & Zaharia, 2020): for each real query token the
largest similarity to any real document token, summed over the query tokens.
``dot``: inner product of pooled vectors (cosine when the vectors are L2-normalised).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from optical_clir.errors import ConfigError

SCORINGS = ("maxsim", "dot")


def _token_max(sim: torch.Tensor, d_mask: torch.Tensor) -> torch.Tensor:
    """Max over the last axis (document tokens) ignoring padding; 0 for an empty document."""
    neg = torch.finfo(sim.dtype).min
    best = sim.masked_fill(~d_mask, neg).amax(dim=-1)
    has_tokens = d_mask.any(dim=-1)
    return torch.where(has_tokens, best, torch.zeros_like(best))


def maxsim_scores(
    q_emb: torch.Tensor, q_mask: torch.Tensor, d_emb: torch.Tensor, d_mask: torch.Tensor
) -> torch.Tensor:
    """All pairs: ``[Bq, Tq, D] x [Bd, Td, D] -> [Bq, Bd]`` MaxSim scores.

    Uses ``Bq*Bd*Tq*Td`` memory; callers chunk documents for large collections.
    """
    q_mask = q_mask.bool()
    d_mask = d_mask.bool()
    sim = torch.einsum("qtd,bsd->qbts", q_emb, d_emb)  # [Bq, Bd, Tq, Td]
    best = _token_max(sim, d_mask[None, :, None, :])  # [Bq, Bd, Tq]
    return (best * q_mask[:, None, :].to(best.dtype)).sum(dim=-1)


def maxsim_scores_paired(
    q_emb: torch.Tensor, q_mask: torch.Tensor, d_emb: torch.Tensor, d_mask: torch.Tensor
) -> torch.Tensor:
    """Paired: query i against document i, ``[B, Tq, D] x [B, Td, D] -> [B]``."""
    q_mask = q_mask.bool()
    d_mask = d_mask.bool()
    sim = torch.einsum("btd,bsd->bts", q_emb, d_emb)  # [B, Tq, Td]
    best = _token_max(sim, d_mask[:, None, :])  # [B, Tq]
    return (best * q_mask.to(best.dtype)).sum(dim=-1)


def dot_scores(q_vec: torch.Tensor, d_vec: torch.Tensor) -> torch.Tensor:
    """All pairs: ``[Bq, D] x [Bd, D] -> [Bq, Bd]`` inner products."""
    return q_vec @ d_vec.T


def dot_scores_paired(q_vec: torch.Tensor, d_vec: torch.Tensor) -> torch.Tensor:
    """Paired: ``[B, D] x [B, D] -> [B]``."""
    return (q_vec * d_vec).sum(dim=-1)


def score_all_pairs(
    scoring: str,
    q: torch.Tensor,
    q_mask: torch.Tensor | None,
    d: torch.Tensor,
    d_mask: torch.Tensor | None,
) -> torch.Tensor:
    """Dispatch on ``scoring`` (``maxsim`` needs the masks, ``dot`` ignores them)."""
    if scoring == "maxsim":
        if q_mask is None or d_mask is None:
            raise ValueError("maxsim scoring needs token masks")
        return maxsim_scores(q, q_mask, d, d_mask)
    if scoring == "dot":
        return dot_scores(q, d)
    raise ConfigError("model.scoring", f"must be one of {SCORINGS}, got {scoring!r}")


def get_scorer(scoring: str, paired: bool = False) -> Callable[..., torch.Tensor]:
    """The scoring function named in config (``scoring: maxsim|dot``).

    maxsim functions take ``(q_emb, q_mask, d_emb, d_mask)``; dot functions ``(q_vec, d_vec)``.
    """
    table = {
        ("maxsim", False): maxsim_scores,
        ("maxsim", True): maxsim_scores_paired,
        ("dot", False): dot_scores,
        ("dot", True): dot_scores_paired,
    }
    try:
        return table[(scoring, paired)]
    except KeyError:
        raise ConfigError("model.scoring", f"must be one of {SCORINGS}, got {scoring!r}") from None
