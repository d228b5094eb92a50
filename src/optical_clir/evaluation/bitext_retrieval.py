"""The label-free dev criterion of a query encoder: retrieve each sentence's translation.

Each dev L sentence, encoded by the query encoder under test, searches all dev English
sentences encoded by the teacher's document side, scored with the teacher's own scoring
(MaxSim or dot); a hit is the sentence's own translation. P@1 and MRR over the dev pairs
say how well the student's queries land where the teacher's English queries would, without
looking at any evaluation query (our choice of criterion, used to choose settings).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from optical_clir.models.encoder import TokenEncoder
from optical_clir.models.scoring import score_all_pairs

__all__ = ["bitext_retrieval", "retrieval_ranks"]


def retrieval_ranks(scores: torch.Tensor) -> torch.Tensor:
    """1-based rank of the diagonal entry in each row of a square ``[n, n]`` score matrix.

    Ties count against the hit (a row of equal scores ranks its own entry last), so a
    constant encoder cannot score well.
    """
    if scores.dim() != 2 or scores.shape[0] != scores.shape[1]:
        raise ValueError(f"scores must be a square matrix, got {tuple(scores.shape)}")
    own = scores.diagonal().unsqueeze(1)
    return (scores >= own).sum(dim=1)


@torch.inference_mode()
def bitext_retrieval(
    query_encoder: TokenEncoder,
    teacher: TokenEncoder,
    pairs: Sequence[tuple[str, str]],
    batch_size: int = 32,
) -> dict[str, float]:
    """P@1 and MRR of L -> English translation retrieval over ``pairs`` (L, English).

    The English sentences are distinct candidates; duplicates among them would make the
    task ambiguous, so a pair whose English side repeats an earlier one is left out.
    """
    seen: set[str] = set()
    kept = []
    for src, en in pairs:
        if en not in seen:
            seen.add(en)
            kept.append((src, en))
    if len(kept) < 2:
        raise ValueError("bitext retrieval needs at least two distinct English sentences")
    scoring = teacher.config.scoring
    was = (query_encoder.training, teacher.training)
    query_encoder.eval()
    teacher.eval()
    try:
        docs = [teacher.encode_documents([en for _, en in kept[i : i + batch_size]])
                for i in range(0, len(kept), batch_size)]  # fmt: skip
        rows = []
        for i in range(0, len(kept), batch_size):
            q, q_mask = query_encoder.encode_queries([src for src, _ in kept[i : i + batch_size]])
            rows.append(
                torch.cat([score_all_pairs(scoring, q, q_mask, d, dm) for d, dm in docs], 1)
            )
        ranks = retrieval_ranks(torch.cat(rows).float().cpu())
    finally:
        query_encoder.train(was[0])
        teacher.train(was[1])
    return {
        "p_at_1": float((ranks == 1).float().mean()),
        "mrr": float((1.0 / ranks.float()).mean()),
        "pairs": len(kept),
    }
