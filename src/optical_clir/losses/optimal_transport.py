r"""Optimal-transport token alignment loss of OPTICAL (arXiv 2301.12566).

OPTICAL distils a frozen English teacher into a student encoder for a low-resource
language: the student encodes the low-resource sentence into token embeddings
:math:`S \in \mathbb{R}^{n \times d}`, the teacher encodes its English translation into
:math:`T \in \mathbb{R}^{m \times d}`, and the loss is the cost of the entropic optimal
transport plan between the two token sets,

.. math::

    \mathcal{L} = \langle P^\star, C \rangle_F,
    \qquad
    P^\star = \arg\min_{P \ge 0,\ P\mathbf{1}=a,\ P^\top\mathbf{1}=b}
        \langle P, C \rangle_F - \varepsilon H(P).

The plan is solved by POT's batched solver (``ot.batch.solve_batch``, log-domain
Sinkhorn on torch tensors, zero-mass padding); this module keeps what is specific to
OPTICAL as pure functions: the token cost, the marginals, the epsilon that fits the cost,
the loss and the plan's diagnostics.

The paper's full text is not available here, so these details are **our choices, not the
paper's**, each a switch of :class:`OTAlignmentLoss`:

* cost ``cosine`` (:math:`1 - \cos`, default), ``sqeuclidean`` or ``euclidean``;
* marginals uniform over the tokens that carry mass (default), proportional to given token
  weights (``idf``: inverse document frequency; ``word``: each word the same mass, shared
  by its subwords), or to the embedding norms (``norm``); special tokens and punctuation
  carry mass or not (decided by the caller through the mass masks);
* epsilon absolute (in the cost's units) or relative to each example's cost spread
  (the standard deviation of :math:`C` over its real token pairs), optionally annealed
  geometrically from a larger value over the first part of training (:func:`epsilon_at`);
* gradients through :math:`C` only (plan detached, default; the envelope theorem makes
  this the gradient of the entropic OT value) or also through the Sinkhorn iterations;
* per-example losses averaged over the examples with a real token on each side.

Why epsilon must fit the cost: with the cosine cost of a student that has never seen the
language, :math:`C` is about 0.98 with a spread of 0.08 inside a sentence pair; at
:math:`\varepsilon = 0.1`, :math:`\exp(-C/\varepsilon)` is nearly constant, the plan is
nearly uniform and :math:`\langle P, C\rangle` is the mean cost, a sentence-level loss. A
relative epsilon keeps the plan as sharp as intended whatever the cost's scale.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from ot.batch import solve_batch
from torch import nn

from optical_clir.losses.settings import LOSS_KEYS

__all__ = [
    "COST_KINDS",
    "EPSILON_MODES",
    "MARGINAL_KINDS",
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

CostKind = Literal["cosine", "sqeuclidean", "euclidean"]
MarginalKind = Literal["uniform", "idf", "word", "norm"]
EpsilonMode = Literal["absolute", "relative"]

COST_KINDS: tuple[str, ...] = ("cosine", "sqeuclidean", "euclidean")
MARGINAL_KINDS: tuple[str, ...] = ("uniform", "idf", "word", "norm")
# Marginal kinds whose token weights the caller supplies.
WEIGHTED_MARGINALS: tuple[str, ...] = ("idf", "word")
EPSILON_MODES: tuple[str, ...] = ("absolute", "relative")

PAPER = (
    "Huang, Z. et al. (2023). Improving Cross-lingual Information Retrieval on "
    "Low-Resource Languages via Optimal Transport Distillation (OPTICAL). "
    "WSDM 2023, arXiv:2301.12566."
)


# --------------------------------------------------------------------------- costs


def pairwise_cost(
    student: torch.Tensor, teacher: torch.Tensor, kind: CostKind = "cosine"
) -> torch.Tensor:
    r"""Pairwise token cost ``[B, n, d] x [B, m, d] -> [B, n, m]``.

    ``cosine``: :math:`1 - \cos(s_i, t_j) \in [0, 2]` (zero vectors count as orthogonal);
    ``sqeuclidean``: :math:`\lVert s_i - t_j \rVert^2`; ``euclidean``:
    :math:`\lVert s_i - t_j \rVert` (exact, zero gradient at distance 0).
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
        return torch.cdist(student, teacher, p=2.0, compute_mode="donot_use_mm_for_euclid_dist")
    raise ValueError(f"unknown cost kind {kind!r}; expected one of {COST_KINDS}")


def _masked_sd(cost: torch.Tensor, pair_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example mean and (sample) standard deviation of the cost over real pairs."""
    with torch.no_grad():
        m = pair_mask.to(cost.dtype)
        count = m.sum(dim=(-2, -1))
        mean = (cost * m).sum(dim=(-2, -1)) / count.clamp_min(1)
        var = (((cost - mean[:, None, None]) ** 2) * m).sum(dim=(-2, -1)) / (count - 1).clamp_min(1)
        return mean, var.sqrt()


def cost_spread(cost: torch.Tensor, pair_mask: torch.Tensor) -> torch.Tensor:
    """Standard deviation of each example's cost over its real token pairs, ``[B]`` (detached).

    An example without spread (fewer than two real pairs, or a cost constant up to rounding)
    gets 1: any epsilon gives it the same plan, and dividing by the spread stays safe.
    """
    mean, sd = _masked_sd(cost, pair_mask)
    flat = sd <= 1e-7 * mean.abs().clamp_min(torch.finfo(cost.dtype).tiny)
    return torch.where(flat | ~torch.isfinite(sd), torch.ones_like(sd), sd)


def epsilon_at(
    epsilon: float, start: float | None, progress: float, anneal_fraction: float = 0.5
) -> float:
    """The epsilon of a training step at ``progress`` in [0, 1] of the run.

    Without ``start``: ``epsilon`` throughout. With it: geometric interpolation from
    ``start`` (progress 0) to ``epsilon`` (progress ``anneal_fraction``), then ``epsilon``
    (epsilon scaling, our choice: a loose plan while the student knows nothing of the
    language, a sharp one once its tokens mean something).
    """
    if start is None or anneal_fraction <= 0 or progress >= anneal_fraction:
        return float(epsilon)
    t = max(0.0, progress) / anneal_fraction
    return float(math.exp((1 - t) * math.log(start) + t * math.log(epsilon)))


# ----------------------------------------------------------------------- marginals


def uniform_marginals(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Uniform distribution over the ``True`` entries of each row of a ``[B, n]`` mask.

    Masked tokens get zero mass; each row with a token sums to 1, an empty row is all zeros.
    """
    m = mask.to(dtype)
    return m / m.sum(-1, keepdim=True).clamp_min(1.0)


def weighted_marginals(
    weights: torch.Tensor, mask: torch.Tensor, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Non-negative token weights ``[B, n]`` -> a distribution over the masked-in tokens.

    A row whose tokens all weigh zero falls back to uniform (our choice).
    """
    w = weights.detach().to(dtype)
    if not torch.isfinite(w).all() or (w < 0).any():
        raise ValueError("token weights must be finite and non-negative")
    w = torch.where(mask, w, torch.zeros_like(w))
    total = w.sum(-1, keepdim=True)
    uniform = uniform_marginals(mask, dtype)
    return torch.where(total > 0, w / total.clamp_min(torch.finfo(dtype).tiny), uniform)


def _marginals(
    kind: str,
    embeddings: torch.Tensor,
    mask: torch.Tensor,
    weights: torch.Tensor | None,
    dtype: torch.dtype,
) -> torch.Tensor:
    if kind == "uniform":
        return uniform_marginals(mask, dtype)
    if kind == "norm":
        return weighted_marginals(embeddings.detach().norm(dim=-1), mask, dtype)
    if kind in WEIGHTED_MARGINALS:
        if weights is None:
            raise ValueError(f"marginals={kind!r} needs token weights for both sides")
        return weighted_marginals(weights, mask, dtype)
    raise ValueError(f"unknown marginals {kind!r}; expected one of {MARGINAL_KINDS}")


# ------------------------------------------------------------------------ the plan


def sinkhorn_plan(
    cost: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    epsilon: float,
    max_iter: int = 5000,
    tol: float = 1e-4,
    detach: bool = True,
) -> tuple[torch.Tensor, int]:
    """Entropic OT plans ``[B, n, m]`` of a batch, by POT's batched Sinkhorn (``solve_batch``).

    ``a`` / ``b`` may hold zeros (padding, tokens without mass): those rows and columns get
    exactly zero mass. Every example needs mass on both sides (see :func:`ot_alignment_loss`).
    POT stops when the L2 norm of the row-marginal error is below ``tol`` (checked every 10
    iterations) or after ``max_iter`` iterations. ``detach=False`` differentiates through
    the iterations (POT's ``grad="autodiff"``). Returns the plan (in ``cost``'s dtype) and
    the number of iterations run.

    The iterations run in float64 as scalings (POT's ``method="sinkhorn"``), after each
    row's smallest cost is subtracted from it: a row's mass is fixed, so the plan does not
    change, and every row keeps a kernel entry of 1. That is 10 to 50 times faster on CPU
    than POT's log-domain solver at the small epsilons OPTICAL needs (measured by
    ``benchmarks/ot_sinkhorn.py``); where a column still underflows (a cost range beyond
    about 700 epsilon) the batch is solved again by ``method="log_sinkhorn"``.
    """
    if epsilon <= 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    live = (a > 0).unsqueeze(-1) & (b > 0).unsqueeze(-2)
    work = (cost.detach() if detach else cost).to(torch.float64)
    with torch.no_grad():
        row_min = torch.where(live, work, torch.full_like(work, math.inf)).amin(-1, keepdim=True)
        row_min = torch.where(torch.isfinite(row_min), row_min, torch.zeros_like(row_min))
    # Cost entries of pairs without mass never matter; zero them so that they are finite.
    work = torch.where(live, work - row_min, torch.zeros_like(work))
    a64, b64 = a.detach().to(torch.float64), b.detach().to(torch.float64)
    grad = "detach" if detach else "autodiff"
    options = {"reg": float(epsilon), "a": a64, "b": b64, "max_iter": int(max_iter),
               "tol": float(tol), "grad": grad}  # fmt: skip
    # POT 0.9.7's scaling solver makes its start vectors on the CPU: elsewhere, log domain.
    scaling = work.device.type == "cpu"
    result = solve_batch(work, method="sinkhorn" if scaling else "log_sinkhorn", **options)
    if scaling and not bool(torch.isfinite(result.plan).all()):
        result = solve_batch(work, method="log_sinkhorn", **options)
    plan = torch.where(live, result.plan, torch.zeros_like(result.plan)).to(cost.dtype)
    return plan, int(result.log["n_iter"]) + 1


# ------------------------------------------------------------------ diagnostics


def plan_diagnostics(
    plan: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    cost: torch.Tensor,
    pair_mask: torch.Tensor,
) -> dict[str, torch.Tensor]:
    r"""How far the plans of a batch are from uniform, and how well they satisfy the marginals.

    Means over the examples (0-d tensors, detached; call ``float`` when logging):

    * ``row_max_ratio``: each row's largest share :math:`\max_j P_{ij} / a_i` divided by the
      uniform share :math:`1/m'` (:math:`m'` columns with mass); 1 for the independent
      coupling :math:`ab^\top` of uniform marginals, :math:`m'` for a one-to-one plan;
    * ``normalized_entropy``: :math:`(H(P) - \max(H(a), H(b))) / \min(H(a), H(b))`, 1 for
      the independent coupling (a constant cost) and 0 for a permutation plan;
    * ``marginal_error``: the largest row-marginal L1 error :math:`\lVert P\mathbf{1} - a\rVert_1`;
    * ``cost_mean``, ``cost_sd``: mean and (within-example) standard deviation of the cost
      over real token pairs.
    """
    with torch.no_grad():
        p = plan.detach().to(torch.float64)
        a64, b64 = a.detach().to(torch.float64), b.detach().to(torch.float64)
        rows = a64 > 0
        cols = (b64 > 0).sum(-1).clamp_min(1).to(torch.float64)  # [B]
        share = p.amax(-1) / a64.clamp_min(1e-300)  # [B, n]
        ratio = (share * cols[:, None] * rows).sum(-1) / rows.sum(-1).clamp_min(1)

        def entropy(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
            return -(torch.where(x > 0, x * x.clamp_min(1e-300).log(), torch.zeros_like(x))).sum(
                dim=dims
            )

        h_p = entropy(p, (-2, -1))
        h_a, h_b = entropy(a64, (-1,)), entropy(b64, (-1,))
        low = torch.minimum(h_a, h_b)
        norm_h = torch.where(low > 0, (h_p - torch.maximum(h_a, h_b)) / low, torch.ones_like(low))
        err = (p.sum(-1) - a64).abs().sum(-1)
        mean, sd = _masked_sd(cost.detach().to(torch.float64), pair_mask)
        return {
            "row_max_ratio": ratio.mean(),
            "normalized_entropy": norm_h.mean(),
            "marginal_error": err.max(),
            "cost_mean": mean.mean(),
            "cost_sd": sd.mean(),
        }


# ---------------------------------------------------------------------------- loss


@dataclass(frozen=True)
class OTResult:
    """The loss of a batch, its plans ``[B, n, m]`` and the solver's record.

    ``diagnostics`` holds :func:`plan_diagnostics` plus ``epsilon`` (the mean effective
    epsilon in the cost's units) and ``iterations``.
    """

    loss: torch.Tensor
    plan: torch.Tensor
    diagnostics: dict[str, Any]


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
    epsilon_mode: EpsilonMode = "relative",
    max_iter: int = 5000,
    tol: float = 1e-4,
    detach_plan: bool = True,
) -> OTResult:
    r"""OPTICAL's token-level OT distillation loss :math:`\langle P^\star, C \rangle_F`.

    Student tokens ``[B, n, d]`` with mass mask ``[B, n]`` (tokens that carry mass:
    ``True``) are transported onto teacher tokens ``[B, m, d]`` with mask ``[B, m]``.
    ``epsilon_mode="relative"``: the plan of each example uses
    :math:`\varepsilon \cdot \mathrm{sd}(C)` (:func:`cost_spread`), so ``epsilon`` is a
    fraction of the cost's spread; ``"absolute"``: ``epsilon`` in the cost's units.
    Examples without mass on a side contribute nothing and get an all-zero plan.
    """
    if cost not in COST_KINDS:
        raise ValueError(f"unknown cost kind {cost!r}; expected one of {COST_KINDS}")
    if epsilon_mode not in EPSILON_MODES:
        raise ValueError(f"unknown epsilon_mode {epsilon_mode!r}; expected one of {EPSILON_MODES}")
    if student_embeddings.dim() != 3 or teacher_embeddings.dim() != 3:
        raise ValueError("embeddings must be [batch, tokens, dim]")
    s_mask, t_mask = student_mask.bool(), teacher_mask.bool()
    if s_mask.shape != student_embeddings.shape[:2] or t_mask.shape != teacher_embeddings.shape[:2]:
        raise ValueError("masks must be [batch, tokens] matching the embeddings")
    if student_embeddings.shape[0] != teacher_embeddings.shape[0]:
        raise ValueError("student and teacher batch sizes differ")
    # The plan needs the cost's small differences (epsilon is a tenth of its spread): it is
    # computed in at least float32, outside any autocast (bf16 keeps 3 significant digits).
    dtype = torch.promote_types(
        torch.promote_types(student_embeddings.dtype, teacher_embeddings.dtype), torch.float32
    )
    with torch.autocast(student_embeddings.device.type, enabled=False):
        return _ot_loss(
            student_embeddings.to(dtype), s_mask, teacher_embeddings.to(dtype), t_mask,
            cost, marginals, student_weights, teacher_weights, epsilon, epsilon_mode,
            max_iter, tol, detach_plan,
        )  # fmt: skip


def _ot_loss(
    student_embeddings: torch.Tensor,
    s_mask: torch.Tensor,
    teacher_embeddings: torch.Tensor,
    t_mask: torch.Tensor,
    cost: str,
    marginals: str,
    student_weights: torch.Tensor | None,
    teacher_weights: torch.Tensor | None,
    epsilon: float,
    epsilon_mode: str,
    max_iter: int,
    tol: float,
    detach_plan: bool,
) -> OTResult:
    dtype = student_embeddings.dtype
    c = pairwise_cost(student_embeddings, teacher_embeddings, kind=cost)  # type: ignore[arg-type]
    valid = s_mask.any(-1) & t_mask.any(-1)  # [B]
    # An example with no mass on a side is given dummy mass so the solver stays finite;
    # its plan is zeroed and it is left out of the mean.
    s_live = torch.where(valid[:, None], s_mask, torch.ones_like(s_mask))
    t_live = torch.where(valid[:, None], t_mask, torch.ones_like(t_mask))
    pair_mask = s_live.unsqueeze(-1) & t_live.unsqueeze(-2)
    a = _marginals(marginals, student_embeddings, s_live, student_weights, dtype)
    b = _marginals(marginals, teacher_embeddings, t_live, teacher_weights, dtype)
    scale = (
        cost_spread(c, pair_mask) if epsilon_mode == "relative" else torch.ones(len(c), dtype=dtype)
    ).to(c.device)
    plan, iterations = sinkhorn_plan(
        c / scale[:, None, None], a, b, epsilon, max_iter=max_iter, tol=tol, detach=detach_plan
    )
    plan = plan * valid[:, None, None]
    per_example = (plan * torch.where(pair_mask, c, torch.zeros_like(c))).sum(dim=(-2, -1))
    loss = per_example[valid].sum() / valid.sum().clamp_min(1).to(dtype)
    diagnostics: dict[str, Any] = plan_diagnostics(
        plan[valid], a[valid], b[valid], c[valid], pair_mask[valid]
    )
    diagnostics["epsilon"] = (epsilon * scale[valid]).mean().detach()
    diagnostics["iterations"] = iterations
    return OTResult(loss=loss, plan=plan, diagnostics=diagnostics)


class OTAlignmentLoss(nn.Module):
    r"""OPTICAL's optimal-transport distillation loss as a ``torch.nn.Module``.

    Optimises the student so that its token embeddings of a low-resource sentence can be
    transported cheaply onto the frozen teacher's token embeddings of the English
    translation: :math:`\langle P^\star, C \rangle_F`, with :math:`P^\star` the entropic OT
    plan (POT's batched log-domain Sinkhorn). The options are our choices (see the module
    docstring); ``epsilon_start`` and ``anneal_fraction`` anneal epsilon over training
    through :meth:`set_progress`. ``forward`` returns an :class:`OTResult`.

    Paper: Huang et al., "Improving Cross-lingual Information Retrieval on Low-Resource
    Languages via Optimal Transport Distillation", WSDM 2023, arXiv:2301.12566.
    """

    citation = PAPER

    def __init__(
        self,
        cost: CostKind = "cosine",
        marginals: MarginalKind = "uniform",
        epsilon: float = 0.1,
        epsilon_mode: EpsilonMode = "relative",
        epsilon_start: float | None = None,
        anneal_fraction: float = 0.5,
        max_iter: int = 5000,
        tol: float = 1e-4,
        detach_plan: bool = True,
    ) -> None:
        super().__init__()
        if cost not in COST_KINDS:
            raise ValueError(f"unknown cost kind {cost!r}; expected one of {COST_KINDS}")
        if marginals not in MARGINAL_KINDS:
            raise ValueError(f"unknown marginals {marginals!r}; expected one of {MARGINAL_KINDS}")
        if epsilon_mode not in EPSILON_MODES:
            raise ValueError(f"unknown epsilon_mode {epsilon_mode!r}; expected {EPSILON_MODES}")
        if epsilon <= 0 or (epsilon_start is not None and epsilon_start <= 0):
            raise ValueError("epsilon and epsilon_start must be > 0")
        if max_iter < 1 or tol <= 0:
            raise ValueError("max_iter must be >= 1 and tol > 0")
        self.cost = cost
        self.marginals = marginals
        self.epsilon = float(epsilon)
        self.epsilon_mode = epsilon_mode
        self.epsilon_start = None if epsilon_start is None else float(epsilon_start)
        self.anneal_fraction = float(anneal_fraction)
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        self.detach_plan = bool(detach_plan)
        self.progress = 1.0  # outside training: the final epsilon

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> OTAlignmentLoss:
        """Build from the ``distill.loss`` config (keys as the constructor's arguments)."""
        return cls(**{k: cfg[k] for k in LOSS_KEYS if k in cfg})

    def set_progress(self, progress: float) -> None:
        """Tell the loss how far training is (0 to 1), for the epsilon schedule."""
        self.progress = float(progress)

    def current_epsilon(self) -> float:
        """The epsilon the next forward call uses (see :func:`epsilon_at`)."""
        return epsilon_at(self.epsilon, self.epsilon_start, self.progress, self.anneal_fraction)

    def forward(
        self,
        student_embeddings: torch.Tensor,
        student_mask: torch.Tensor,
        teacher_embeddings: torch.Tensor,
        teacher_mask: torch.Tensor,
        student_weights: torch.Tensor | None = None,
        teacher_weights: torch.Tensor | None = None,
    ) -> OTResult:
        """Loss, plans and diagnostics of a batch."""
        return ot_alignment_loss(
            student_embeddings,
            student_mask,
            teacher_embeddings,
            teacher_mask,
            cost=self.cost,
            marginals=self.marginals,
            student_weights=student_weights,
            teacher_weights=teacher_weights,
            epsilon=self.current_epsilon(),
            epsilon_mode=self.epsilon_mode,
            max_iter=self.max_iter,
            tol=self.tol,
            detach_plan=self.detach_plan,
        )

    def get_config_dict(self) -> dict[str, object]:
        """The loss options, for logging and model cards (as sentence-transformers does)."""
        return {key: getattr(self, key) for key in LOSS_KEYS}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.get_config_dict().items())
