"""Contrastive (InfoNCE) loss over in-batch negatives and explicit hard negatives."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ContrastiveLoss(nn.Module):
    """InfoNCE with temperature (van den Oord et al., 2018; as in DPR / ColBERT training).

    Optimises, for each query i, ``-log softmax(s_i / tau)[pos_i]``: the cross-entropy of
    picking its positive among all candidate documents in the batch. With the layout used by
    :meth:`forward` (documents = the B positives followed by the B hard negatives of the
    triples) the candidates of query i are its own positive, its own hard negative from the
    triple, and every other query's positive and negative (in-batch negatives).
    With ``in_batch_negatives=False`` only the query's own (positive, negative) pair is used,
    which is ColBERT's original pairwise softmax cross-entropy.
    """

    def __init__(self, temperature: float = 1.0, in_batch_negatives: bool = True) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.in_batch_negatives = bool(in_batch_negatives)

    def forward(self, scores: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """``scores``: ``[B, N]`` query-by-candidate scores (N >= B; usually N = 2B, positives
        then hard negatives). ``labels``: the positive's column per query (default ``i``).
        Returns the mean loss (a scalar).
        """
        if scores.dim() != 2:
            raise ValueError(f"scores must be [B, N], got shape {tuple(scores.shape)}")
        b, n = scores.shape
        scores = scores.float() / self.temperature
        if labels is None:
            if n < b:
                raise ValueError("with default labels, need at least as many columns as rows")
            labels = torch.arange(b, device=scores.device)
        if not self.in_batch_negatives:
            if n != 2 * b or not torch.equal(labels, torch.arange(b, device=scores.device)):
                raise ValueError("in_batch_negatives=False needs the [positives; negatives] layout")
            idx = torch.arange(b, device=scores.device)
            pair = torch.stack([scores[idx, idx], scores[idx, idx + b]], dim=1)
            return F.cross_entropy(pair, torch.zeros(b, dtype=torch.long, device=scores.device))
        return F.cross_entropy(scores, labels)
