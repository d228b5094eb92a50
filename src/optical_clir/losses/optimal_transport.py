r"""Optimal-transport token alignment loss of OPTICAL (arXiv 2301.12566).

OPTICAL distils a frozen English teacher into a student encoder for a low-resource
language: the student encodes the low-resource sentence into token embeddings
:math:`S \in \mathbb{R}^{n \times d}`, the teacher encodes its English translation into
:math:`T \in \mathbb{R}^{m \times d}`, and the loss is the cost of the (entropic) optimal
transport plan between the two token sets,

.. math::

    \mathcal{L} = \langle P^\star, C \rangle_F = \sum_{ij} P^\star_{ij} C_{ij},
    \qquad
    P^\star = \arg\min_{P \ge 0,\ P\mathbf{1}=a,\ P^\top\mathbf{1}=b}
        \langle P, C \rangle_F - \varepsilon H(P),
    \qquad H(P) = -\sum_{ij} P_{ij} (\log P_{ij} - 1).

(The ``-1`` in :math:`H` does not change the minimiser because the total mass is fixed;
with it or without it the problem is the one POT's ``ot.sinkhorn(a, b, M, reg)`` solves,
with ``reg`` = :math:`\varepsilon`.)

The paper's full text is not available here, so the following details are **our choices,
not the paper's**, each a switch of :func:`ot_alignment_loss` / :class:`OTAlignmentLoss`:

* cost: ``"cosine"`` (:math:`1 - \cos`, in [0, 2], default), ``"sqeuclidean"`` or
  ``"euclidean"``; optional per-example rescaling of the cost (``cost_scale``);
* marginals: uniform over real (non-padding) tokens (default), or proportional to given
  token weights (e.g. idf) or to the embedding norms (``"norm"``);
* :math:`\varepsilon = 0.1` (default): for the cosine cost, whose entries lie in [0, 2] and
  typically differ by a few tenths between good and bad token pairs, this gives a plan
  that is clearly peaked but still smooth, and Sinkhorn converges in a few dozen
  iterations; 50 iterations by default, or stop when the row-marginal error < ``tol``;
* gradients flow through :math:`C` only (plan detached, default) or also through the
  unrolled Sinkhorn iterations (``detach_plan=False``);
* the per-example losses are averaged over the examples of the batch that have at least
  one real token on each side.

Sinkhorn runs in the log domain on the dual potentials :math:`f, g`, with
:math:`P_{ij} = \exp((f_i + g_j - C_{ij}) / \varepsilon)`, its iterations computed as
log-stabilised scalings (batched matrix-vector products, with a log-sum-exp fallback); see
:func:`sinkhorn`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

__all__ = [
    "COST_KINDS",
    "MARGINAL_KINDS",
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

CostKind = Literal["cosine", "sqeuclidean", "euclidean"]
MarginalKind = Literal["uniform", "weighted", "norm"]
CostScale = Literal["none", "max", "mean"]
Reduction = Literal["mean", "sum", "none"]

COST_KINDS: tuple[str, ...] = ("cosine", "sqeuclidean", "euclidean")
MARGINAL_KINDS: tuple[str, ...] = ("uniform", "weighted", "norm")
COST_SCALES: tuple[str, ...] = ("none", "max", "mean")
REDUCTIONS: tuple[str, ...] = ("mean", "sum", "none")

PAPER = (
    "Huang, Z. et al. (2023). Improving Cross-lingual Information Retrieval on "
    "Low-Resource Languages via Optimal Transport Distillation (OPTICAL). "
    "WSDM 2023, arXiv:2301.12566."
)


# --------------------------------------------------------------------------- costs


def pairwise_cost(
    student: torch.Tensor, teacher: torch.Tensor, kind: CostKind = "cosine"
) -> torch.Tensor:
    r"""Pairwise token cost ``[B, n, d] x [B, m, d] -> [B, n, m]`` (2-D inputs also work).

    ``"cosine"``: :math:`1 - \cos(s_i, t_j) \in [0, 2]` (zero vectors count as orthogonal);
    ``"sqeuclidean"``: :math:`\lVert s_i - t_j \rVert^2`; ``"euclidean"``:
    :math:`\lVert s_i - t_j \rVert`. Which one OPTICAL uses is our choice, not the paper's.
    """
    if student.shape[-1] != teacher.shape[-1]:
        raise ValueError(
            f"student and teacher embedding sizes differ: {student.shape[-1]} vs "
            f"{teacher.shape[-1]}"
        )
    if kind == "cosine":
        s = nn.functional.normalize(student, p=2, dim=-1)
        t = nn.functional.normalize(teacher, p=2, dim=-1)
        return (1.0 - s @ t.transpose(-1, -2)).clamp(0.0, 2.0)
    if kind == "sqeuclidean":
        sq_s = (student * student).sum(-1).unsqueeze(-1)
        sq_t = (teacher * teacher).sum(-1).unsqueeze(-2)
        return (sq_s + sq_t - 2.0 * (student @ teacher.transpose(-1, -2))).clamp_min(0.0)
    if kind == "euclidean":
        # The direct (non-matmul) mode is exact and has a zero (not NaN) gradient at 0.
        return torch.cdist(student, teacher, p=2.0, compute_mode="donot_use_mm_for_euclid_dist")
    raise ValueError(f"unknown cost kind {kind!r}; expected one of {COST_KINDS}")


def _scale_cost(cost: torch.Tensor, pair_mask: torch.Tensor, how: CostScale) -> torch.Tensor:
    """Divide each example's cost by its (detached) max or mean over real token pairs.

    Makes epsilon relative to the cost scale for unbounded costs; our choice, not the paper's.
    """
    if how == "none":
        return cost
    with torch.no_grad():
        masked = torch.where(pair_mask, cost, torch.zeros_like(cost))
        if how == "max":
            scale = masked.amax(dim=(-2, -1))
        elif how == "mean":
            scale = masked.sum(dim=(-2, -1)) / pair_mask.sum(dim=(-2, -1)).clamp_min(1)
        else:
            raise ValueError(f"unknown cost_scale {how!r}; expected one of {COST_SCALES}")
        scale = scale.clamp_min(torch.finfo(cost.dtype).tiny)
    return cost / scale[..., None, None]


# ----------------------------------------------------------------------- marginals


def _as_mask(mask: torch.Tensor) -> torch.Tensor:
    return mask if mask.dtype == torch.bool else mask != 0


def uniform_marginals(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Uniform distribution over the real tokens of each row of a ``[B, n]`` mask.

    Padding tokens get zero mass; each row with at least one real token sums to 1, an
    all-padding row is all zeros (no NaN).
    """
    m = _as_mask(mask).to(dtype)
    return m / m.sum(-1, keepdim=True).clamp_min(1.0)


def weighted_marginals(
    weights: torch.Tensor, mask: torch.Tensor | None = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Token weights (e.g. idf, norms) ``[B, n]`` -> distribution over the real tokens.

    Weights must be non-negative; padding tokens get zero mass; rows sum to 1. A row whose
    real tokens all have zero weight falls back to uniform (our choice); an all-padding row
    is all zeros.
    """
    dtype = dtype or (weights.dtype if weights.is_floating_point() else torch.float32)
    w = weights.to(dtype)
    if not torch.isfinite(w).all() or (w < 0).any():
        raise ValueError("token weights must be finite and non-negative")
    m = torch.ones_like(w, dtype=torch.bool) if mask is None else _as_mask(mask)
    w = torch.where(m, w, torch.zeros_like(w))
    total = w.sum(-1, keepdim=True)
    uniform = uniform_marginals(m, dtype=dtype)
    return torch.where(total > 0, w / total.clamp_min(torch.finfo(dtype).tiny), uniform)


def norm_marginals(embeddings: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Marginals proportional to the (detached) L2 norms of ``[B, n, d]`` token embeddings.

    A common heuristic (norm ~ token salience) for non-uniform marginals; our choice.
    """
    return weighted_marginals(embeddings.detach().norm(dim=-1), mask)


# ------------------------------------------------------------------------ Sinkhorn


@dataclass(frozen=True)
class SinkhornResult:
    """Output of :func:`sinkhorn`: plan ``[B, n, m]``, potentials ``f [B, n]``, ``g [B, m]``
    (zero at padding, where the true potential is -inf), iterations run, and the final
    row-marginal L1 error (max over the batch)."""

    plan: torch.Tensor
    f: torch.Tensor
    g: torch.Tensor
    n_iters: int
    marginal_error: float


def sinkhorn(
    cost: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    epsilon: float = 0.1,
    n_iters: int = 50,
    tol: float | None = None,
    check_every: int = 10,
) -> SinkhornResult:
    r"""Batched, masked, log-domain Sinkhorn for entropic OT.

    Solves, for each example of the batch,

    .. math::

        \min_{P \ge 0} \langle P, C \rangle_F - \varepsilon H(P)
        \quad \text{s.t.} \quad P\mathbf{1} = a,\ P^\top \mathbf{1} = b,

    whose solution is :math:`P_{ij} = \exp((f_i + g_j - C_{ij})/\varepsilon)` for dual
    potentials :math:`f, g` found by alternating the exact block updates

    .. math::

        f_i \leftarrow \varepsilon \log a_i
            - \varepsilon \operatorname{logsumexp}_j \big((g_j - C_{ij})/\varepsilon\big),
        \qquad
        g_j \leftarrow \varepsilon \log b_j
            - \varepsilon \operatorname{logsumexp}_i \big((f_i - C_{ij})/\varepsilon\big).

    After each ``g`` update the column marginals hold exactly; convergence is measured on
    the rows. Padding: tokens with zero mass in ``a``/``b`` have :math:`\log a_i = -\infty`,
    hence :math:`f_i = -\infty` and exactly zero mass in :math:`P`. The -inf are applied as
    masks (``torch.where``) so that neither the plan nor its gradient gets NaN, even for
    examples whose rows or columns are all padding (their plan is all zeros). Cost entries
    at padding are ignored (may be anything, even NaN).

    Speed: the iterations run in blocks of at most ``check_every`` (log-stabilised
    scaling, Schmitzer 2019, "Stabilized sparse scaling algorithms for entropy regularized
    transport problems"): at the start of a block the current potentials are absorbed into
    a kernel :math:`K_{ij} = \exp(s_i + g_j/\varepsilon - C_{ij}/\varepsilon)` (rows
    shifted so that nothing under/overflows), the block's updates are the same updates as
    above written as scalings, ``x = a / (K y)`` and ``y = b / (K^T x)`` (two batched
    matrix-vector products per iteration instead of two log-sum-exp passes), and at the end
    of the block ``log x`` and ``log y`` are added to the potentials. The iterates are
    those of the log-domain updates (up to rounding). A block whose scalings leave a safe
    range (see :func:`_safe_log_range`; tiny epsilon, far from convergence) is redone with the
    log-sum-exp updates, so the result stays that of the log domain.

    Args:
        cost: ``[B, n, m]`` (or ``[n, m]``) cost matrix, float32 or float64, any device.
        a: ``[B, n]`` row marginals (non-negative, each non-empty row sums to 1).
        b: ``[B, m]`` column marginals, same total mass as ``a``.
        epsilon: entropic regularisation (POT's ``reg``), in the units of ``cost``.
        n_iters: maximum number of (f, g) update pairs.
        tol: if given, stop once the row-marginal L1 error of every example is < ``tol``
            (checked every ``check_every`` iterations; costs one device sync per check).
        check_every: how often to check ``tol``; also the length of a stabilised block.
    """
    if epsilon <= 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    if n_iters < 1:
        raise ValueError(f"n_iters must be >= 1, got {n_iters}")
    if check_every < 1:
        raise ValueError(f"check_every must be >= 1, got {check_every}")
    unbatched = cost.dim() == 2
    if unbatched:
        cost, a, b = cost.unsqueeze(0), a.unsqueeze(0), b.unsqueeze(0)
    if cost.dim() != 3 or a.shape != cost.shape[:2] or b.shape != (cost.shape[0], cost.shape[2]):
        raise ValueError(
            f"shape mismatch: cost {tuple(cost.shape)}, a {tuple(a.shape)}, b {tuple(b.shape)}"
        )
    if not cost.is_floating_point():
        raise ValueError(f"cost must be floating point, got {cost.dtype}")
    p = _Problem(cost, a.to(cost.dtype), b.to(cost.dtype), epsilon)

    # Scaled potentials u = f / eps, v = g / eps (zero on padding). Each iteration starts
    # with the u update, which reads v only, so v is the whole state between iterations.
    u = torch.zeros_like(p.a)
    v = torch.zeros_like(p.b)
    done = 0
    err = math.nan
    while done < n_iters:
        block = min(check_every, n_iters - done)
        # Blocks end on the tol checkpoints (multiples of check_every, and n_iters).
        out = p.scaling_block(v, block, want_error=tol is not None)
        if out is None:  # scalings out of range: redo the block in the log domain
            u, v = p.log_block(v, block)
            err_t = p.row_error_log(u, v) if tol is not None else None
        else:
            u, v, err_t = out
        done += block
        if err_t is not None:
            err = float(err_t)
            if err < tol:  # type: ignore[operator]
                break

    # neg_c is -inf at padding pairs, so their mass is exactly zero (u, v are finite).
    plan = (p.neg_c + u.unsqueeze(-1)).add_(v.unsqueeze(-2)).exp_()
    if tol is None:
        with torch.no_grad():
            rows = plan.sum(-1)
            err_all = torch.where(p.row_live, (rows - p.a).abs(), p.zero).sum(-1)
            err = float(err_all.max()) if err_all.numel() else 0.0
    f, g = u * epsilon, v * epsilon
    if unbatched:
        plan, f, g = plan.squeeze(0), f.squeeze(0), g.squeeze(0)
    return SinkhornResult(plan=plan, f=f, g=g, n_iters=done, marginal_error=err)


# Largest |log x|, |log y| of the scalings within a block for which the block's result is
# trusted: a quarter of -log(smallest normal number) (22 in float32, 177 in float64), so
# kernel entries lost to underflow weigh < exp(-|log tiny| / 2) relative to a row's sum.
def _safe_log_range(dtype: torch.dtype) -> float:
    return -math.log(torch.finfo(dtype).tiny) / 4.0


class _Problem:
    """Masks and the scaled cost of one batched Sinkhorn problem, and its two block kinds."""

    def __init__(self, cost: torch.Tensor, a: torch.Tensor, b: torch.Tensor, eps: float) -> None:
        self.a, self.b = a, b
        self.row_ok = a > 0  # [B, n]
        self.col_ok = b > 0  # [B, m]
        self.pair_ok = self.row_ok.unsqueeze(-1) & self.col_ok.unsqueeze(-2)  # [B, n, m]
        any_row = self.row_ok.any(-1, keepdim=True)  # [B, 1]
        any_col = self.col_ok.any(-1, keepdim=True)
        # Rows/columns that carry mass in an example that has both rows and columns.
        self.row_live = self.row_ok & any_col
        self.col_live = self.col_ok & any_row
        self.any_row, self.any_col = any_row.unsqueeze(-1), any_col.unsqueeze(-1)  # [B, 1, 1]
        self.zero = torch.zeros((), dtype=cost.dtype, device=cost.device)
        self.neg_inf = torch.full((), -math.inf, dtype=cost.dtype, device=cost.device)
        # -C/eps, -inf (not NaN, whatever the cost there) at padding pairs: exp gives exactly
        # zero mass there, with a zero gradient.
        self.neg_c = torch.where(self.pair_ok, cost / -eps, self.neg_inf)
        self._neg_c_finite: torch.Tensor | None = None
        self.log_a = torch.log(torch.where(self.row_ok, a, torch.ones_like(a)))
        self.log_b = torch.log(torch.where(self.col_ok, b, torch.ones_like(b)))
        # Added to scaling denominators: 1 where a row/column takes no part (so 0/1, not 0/0).
        self.row_dead = (~self.row_live).to(cost.dtype).unsqueeze(-2)  # [B, 1, n]
        self.col_dead = (~self.col_live).to(cost.dtype).unsqueeze(-2)  # [B, 1, m]
        self.a_row, self.b_row = a.unsqueeze(-2), b.unsqueeze(-2)
        self.safe = _safe_log_range(cost.dtype)
        self._log_biases: tuple[torch.Tensor, torch.Tensor] | None = None

    # -- log-stabilised scaling (fast path) ----------------------------------------------

    def scaling_block(
        self, v: torch.Tensor, iters: int, want_error: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None:
        """``iters`` iterations from ``v`` as scalings; None if they left the safe range."""
        z = self.neg_c + v.unsqueeze(-2)
        with torch.no_grad():
            # Row shift: the largest kernel entry of row i is a_i (the output does not
            # depend on the shift, so it carries no gradient).
            shift = torch.where(self.row_live, self.log_a - z.amax(-1), self.zero)
        # In place on a fresh temporary (autograd allows it: add does not save its output).
        kernel = z.add_(shift.unsqueeze(-1)).exp_()  # [B, n, m]; exactly 0 at padding
        # Scalings as row vectors x [B, 1, n], y [B, 1, m]: a batched vector-matrix product
        # with a contiguous matrix is several times faster on CPU than a batched
        # matrix-vector product (measured with torch 2.13), hence the transposed copy.
        kernel_t = kernel.transpose(-1, -2).contiguous()  # [B, m, n]
        x = y = torch.ones_like(self.b_row)  # y = 1: the potentials v absorbed in the kernel
        for _ in range(iters):
            x = self.a_row / torch.baddbmm(self.row_dead, y, kernel_t)  # [B, 1, n]
            y = self.b_row / torch.baddbmm(self.col_dead, x, kernel)  # [B, 1, m]
        x, y = x.squeeze(-2), y.squeeze(-2)
        log_x = torch.log(torch.where(self.row_live, x, 1.0))
        log_y = torch.log(torch.where(self.col_live, y, 1.0))
        with torch.no_grad():
            worst = torch.maximum(log_x.abs().amax(), log_y.abs().amax())
            # NaN compares False, so a NaN/inf block is also rejected.
            if not bool(worst <= self.safe):
                return None
        u = torch.where(self.row_live, shift + log_x, self.zero)
        v = torch.where(self.col_live, v + log_y, self.zero)
        err = None
        if want_error:
            with torch.no_grad():
                rows = x * torch.bmm(y.unsqueeze(-2), kernel_t).squeeze(-2)
                err = torch.where(self.row_live, (rows - self.a).abs(), self.zero).sum(-1)
                err = err.max() if err.numel() else self.zero
        return u, v, err

    # -- plain log-sum-exp updates (fallback) --------------------------------------------

    def _biases(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._log_biases is None:
            row_bias = torch.where(self.row_ok, self.zero, self.neg_inf).unsqueeze(-1)
            col_bias = torch.where(self.col_ok, self.zero, self.neg_inf).unsqueeze(-2)
            self._log_biases = (row_bias, col_bias)
        return self._log_biases

    def _finite_neg_c(self) -> torch.Tensor:
        # Zero, not -inf, at padding pairs: the -inf enter through the biases, and a row or
        # column that is all padding stays finite (no NaN in logsumexp's gradient).
        if self._neg_c_finite is None:
            self._neg_c_finite = torch.where(self.pair_ok, self.neg_c, self.zero)
        return self._neg_c_finite

    def _row_lse(self, v: torch.Tensor) -> torch.Tensor:
        _, col_bias = self._biases()
        z = self._finite_neg_c() + v.unsqueeze(-2) + col_bias
        return torch.logsumexp(torch.where(self.any_col, z, self.zero), dim=-1)  # [B, n]

    def _col_lse(self, u: torch.Tensor) -> torch.Tensor:
        row_bias, _ = self._biases()
        z = self._finite_neg_c() + u.unsqueeze(-1) + row_bias
        return torch.logsumexp(torch.where(self.any_row, z, self.zero), dim=-2)  # [B, m]

    def log_block(self, v: torch.Tensor, iters: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``iters`` iterations of the log-domain updates from ``v``."""
        u = v.new_zeros(self.a.shape)
        for _ in range(iters):
            u = torch.where(self.row_live, self.log_a - self._row_lse(v), self.zero)
            v = torch.where(self.col_live, self.log_b - self._col_lse(u), self.zero)
        return u, v

    def row_error_log(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Largest row-marginal L1 error over the batch, from the potentials."""
        with torch.no_grad():
            rows = torch.exp(u + self._row_lse(v))
            err = torch.where(self.row_live, (rows - self.a).abs(), self.zero).sum(-1)
            return err.max() if err.numel() else self.zero


def sinkhorn_plan(
    cost: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    epsilon: float = 0.1,
    n_iters: int = 50,
    tol: float | None = None,
) -> torch.Tensor:
    """Entropic OT plan ``[B, n, m]`` by log-domain Sinkhorn; see :func:`sinkhorn`."""
    return sinkhorn(cost, a, b, epsilon=epsilon, n_iters=n_iters, tol=tol).plan


# ---------------------------------------------------------------------------- loss


def _marginals(
    kind: MarginalKind,
    embeddings: torch.Tensor,
    mask: torch.Tensor,
    weights: torch.Tensor | None,
    dtype: torch.dtype,
) -> torch.Tensor:
    if weights is not None:
        if kind != "weighted":
            raise ValueError(f"token weights given but marginals={kind!r}; use 'weighted'")
        return weighted_marginals(weights.detach(), mask, dtype=dtype)
    if kind == "uniform":
        return uniform_marginals(mask, dtype=dtype)
    if kind == "norm":
        return norm_marginals(embeddings, mask).to(dtype)
    if kind == "weighted":
        raise ValueError("marginals='weighted' needs student_weights and teacher_weights")
    raise ValueError(f"unknown marginals {kind!r}; expected one of {MARGINAL_KINDS}")


def ot_alignment_loss(
    student_embeddings: torch.Tensor,
    student_mask: torch.Tensor,
    teacher_embeddings: torch.Tensor,
    teacher_mask: torch.Tensor,
    *,
    cost: CostKind = "cosine",
    marginals: MarginalKind = "uniform",
    student_weights: torch.Tensor | None = None,
    teacher_weights: torch.Tensor | None = None,
    epsilon: float = 0.1,
    n_iters: int = 50,
    tol: float | None = None,
    detach_plan: bool = True,
    cost_scale: CostScale = "none",
    reduction: Reduction = "mean",
    return_plan: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    r"""OPTICAL's token-level OT distillation loss :math:`\langle P^\star, C \rangle_F`.

    Student tokens ``[B, n, d]`` with mask ``[B, n]`` are transported onto teacher tokens
    ``[B, m, d]`` with mask ``[B, m]``; :math:`P^\star` is the entropic OT plan (see
    :func:`sinkhorn`). With ``detach_plan=True`` (default, our choice) the plan is computed
    without gradient and the loss backpropagates through the cost only,
    :math:`\partial \mathcal{L} / \partial C = P^\star` (per example); with ``False`` the
    gradient also flows through the unrolled Sinkhorn iterations.

    ``marginals``: ``"uniform"`` over real tokens, ``"weighted"`` by the given
    ``student_weights`` / ``teacher_weights`` ``[B, n]`` / ``[B, m]`` (detached), or
    ``"norm"`` by detached embedding norms. ``cost_scale``: ``"max"`` / ``"mean"`` divide
    each example's cost by its detached max / mean over real pairs (so that ``epsilon`` is
    relative), ``"none"`` keeps raw units. ``reduction``: ``"mean"`` over examples with at
    least one real token on each side, ``"sum"``, or ``"none"`` (``[B]``). All of these
    are our choices, not the paper's.

    Returns the loss, or ``(loss, plan)`` with the plan ``[B, n, m]`` if ``return_plan``.
    """
    if cost not in COST_KINDS:
        raise ValueError(f"unknown cost kind {cost!r}; expected one of {COST_KINDS}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; expected one of {REDUCTIONS}")
    if student_embeddings.dim() != 3 or teacher_embeddings.dim() != 3:
        raise ValueError("embeddings must be [batch, tokens, dim]")
    s_mask, t_mask = _as_mask(student_mask), _as_mask(teacher_mask)
    if s_mask.shape != student_embeddings.shape[:2] or t_mask.shape != teacher_embeddings.shape[:2]:
        raise ValueError("masks must be [batch, tokens] matching the embeddings")
    if student_embeddings.shape[0] != teacher_embeddings.shape[0]:
        raise ValueError("student and teacher batch sizes differ")
    if (student_weights is None) != (teacher_weights is None):
        raise ValueError("give both student_weights and teacher_weights, or neither")

    dtype = torch.promote_types(student_embeddings.dtype, teacher_embeddings.dtype)
    if not dtype.is_floating_point:
        raise ValueError(f"embeddings must be floating point, got {dtype}")
    c = pairwise_cost(student_embeddings.to(dtype), teacher_embeddings.to(dtype), kind=cost)
    pair_ok = s_mask.unsqueeze(-1) & t_mask.unsqueeze(-2)
    c = _scale_cost(c, pair_ok, cost_scale)
    a = _marginals(marginals, student_embeddings, s_mask, student_weights, dtype)
    b = _marginals(marginals, teacher_embeddings, t_mask, teacher_weights, dtype)

    if detach_plan:
        with torch.no_grad():
            plan = sinkhorn_plan(c.detach(), a, b, epsilon=epsilon, n_iters=n_iters, tol=tol)
    else:
        plan = sinkhorn_plan(c, a, b, epsilon=epsilon, n_iters=n_iters, tol=tol)

    per_example = (plan * torch.where(pair_ok, c, torch.zeros_like(c))).sum(dim=(-2, -1))
    if reduction == "none":
        loss = per_example
    elif reduction == "sum":
        loss = per_example.sum()
    else:
        valid = pair_ok.flatten(1).any(-1)
        loss = per_example[valid].sum() / valid.sum().clamp_min(1).to(dtype)
    return (loss, plan) if return_plan else loss


class OTAlignmentLoss(nn.Module):
    r"""OPTICAL's optimal-transport distillation loss as a ``torch.nn.Module``.

    Optimises the student so that its token embeddings of a low-resource sentence can be
    transported cheaply onto the frozen teacher's token embeddings of the English
    translation: loss :math:`\langle P^\star, C \rangle_F` with :math:`C` a token cost
    and :math:`P^\star` the entropic OT plan between the two token sets
    (:math:`\min_P \langle P, C\rangle - \varepsilon H(P)`, :math:`P\mathbf{1}=a`,
    :math:`P^\top\mathbf{1}=b`), solved by log-domain Sinkhorn.

    Paper: Huang et al., "Improving Cross-lingual Information Retrieval on Low-Resource
    Languages via Optimal Transport Distillation", WSDM 2023, arXiv:2301.12566.

    Our choices, not the paper's (its full text is not available here), exposed as
    arguments: ``cost`` (default ``"cosine"``), ``marginals`` (default ``"uniform"`` over
    non-padding tokens), ``epsilon`` (0.1, relative to the [0, 2] cosine cost),
    ``n_iters`` (50) / ``tol``, ``detach_plan`` (True: gradient through the cost only),
    ``cost_scale`` (``"none"``) and ``reduction`` (``"mean"``). The teacher is not
    detached here: feed it under ``torch.no_grad()`` or freeze its parameters.
    """

    citation = PAPER

    def __init__(
        self,
        cost: CostKind = "cosine",
        marginals: MarginalKind = "uniform",
        epsilon: float = 0.1,
        n_iters: int = 50,
        tol: float | None = None,
        detach_plan: bool = True,
        cost_scale: CostScale = "none",
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        if cost not in COST_KINDS:
            raise ValueError(f"unknown cost kind {cost!r}; expected one of {COST_KINDS}")
        if marginals not in MARGINAL_KINDS:
            raise ValueError(f"unknown marginals {marginals!r}; expected one of {MARGINAL_KINDS}")
        if cost_scale not in COST_SCALES:
            raise ValueError(f"unknown cost_scale {cost_scale!r}; expected one of {COST_SCALES}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"unknown reduction {reduction!r}; expected one of {REDUCTIONS}")
        if epsilon <= 0 or n_iters < 1:
            raise ValueError("epsilon must be > 0 and n_iters >= 1")
        self.cost = cost
        self.marginals = marginals
        self.epsilon = float(epsilon)
        self.n_iters = int(n_iters)
        self.tol = tol
        self.detach_plan = detach_plan
        self.cost_scale = cost_scale
        self.reduction = reduction

    def forward(
        self,
        student_embeddings: torch.Tensor,
        student_mask: torch.Tensor,
        teacher_embeddings: torch.Tensor,
        teacher_mask: torch.Tensor,
        student_weights: torch.Tensor | None = None,
        teacher_weights: torch.Tensor | None = None,
        return_plan: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Loss for a batch (and the plan ``[B, n, m]`` if ``return_plan``)."""
        return ot_alignment_loss(
            student_embeddings,
            student_mask,
            teacher_embeddings,
            teacher_mask,
            cost=self.cost,
            marginals=self.marginals,
            student_weights=student_weights,
            teacher_weights=teacher_weights,
            epsilon=self.epsilon,
            n_iters=self.n_iters,
            tol=self.tol,
            detach_plan=self.detach_plan,
            cost_scale=self.cost_scale,
            reduction=self.reduction,
            return_plan=return_plan,
        )

    def get_config_dict(self) -> dict[str, object]:
        """The loss options, for logging and model cards (as sentence-transformers does)."""
        return {
            "cost": self.cost,
            "marginals": self.marginals,
            "epsilon": self.epsilon,
            "n_iters": self.n_iters,
            "tol": self.tol,
            "detach_plan": self.detach_plan,
            "cost_scale": self.cost_scale,
            "reduction": self.reduction,
        }

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.get_config_dict().items())
