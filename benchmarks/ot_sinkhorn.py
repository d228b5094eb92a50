"""Our batched Sinkhorn against POT's, and the OT loss's share of a distillation step.

Part 1 solves the entropic OT problems of one batch (default 32 examples, 32 student x 64
teacher tokens, cosine cost of random 384-d token vectors, uniform marginals, epsilon 0.1,
50 iterations, float32) with our ``sinkhorn_plan`` (one batched call, no gradient, as
``ot_alignment_loss`` uses it) and with POT looped over the examples, through its public
entry point ``ot.sinkhorn`` with

- ``method="sinkhorn_log"`` (``ot.bregman.sinkhorn_log``): the same algorithm as ours, in
  the log domain; the like-for-like peer and the one the target refers to;
- ``method="sinkhorn"`` (``ot.bregman.sinkhorn_knopp``, POT's default): scaling updates
  with ``exp(-C/eps)``, faster but not safe for small epsilon.

Both sides run exactly the same number of iterations: POT stops when the marginal error is
below ``stopThr``, and with ``stopThr=0`` it never is, so it runs ``numItermax`` iterations
(it still computes that error every 10 iterations; that cost is POT's). POT is called on
the transposed problem (``b``, ``a``, ``C^T``): it updates the column potential first and we
update the row potential first, so transposed the iterates are the same and the plans must
agree to float32 rounding (the table shows the largest difference). A second row does the
same with ragged lengths (each example's lengths drawn from [n/2, n] x [m/2, m]; POT gets
each example's unpadded matrix, our batch is padded and masked). On a GPU (when
``torch.cuda.is_available()``) the comparison is repeated with CUDA tensors (POT's torch
backend). Target: ours >= 20x faster per batch than POT's ``sinkhorn_log`` on CPU.

Part 2 times one OPTICAL distillation training step (``DistillationModule`` with method
``optical``, the MiniLM student and teacher of the default ``EncoderConfig``, 32 sentence
pairs of ``data/demo/bitext/sw-en.tsv``: teacher forward, student forward + backward,
AdamW step) and the OT loss alone (``OTAlignmentLoss`` forward + backward on the same
batch's token embeddings). Target: the OT loss < 10% of a step.

    .venv/bin/python benchmarks/ot_sinkhorn.py [--quick] [--threads N] [--skip-step]
"""

from __future__ import annotations

import argparse
import copy
import os
from dataclasses import dataclass

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from _common import (
    REPO,
    cuda_sync,
    markdown_table,
    median,
    print_machine,
    set_threads,
    time_calls,
    time_interleaved,
)

from optical_clir.losses.optimal_transport import pairwise_cost, sinkhorn_plan, uniform_marginals

POT_METHODS = {
    "sinkhorn_log": "ot.sinkhorn(method='sinkhorn_log') = ot.bregman.sinkhorn_log",
    "sinkhorn": "ot.sinkhorn(method='sinkhorn') = ot.bregman.sinkhorn_knopp (POT default)",
}
BITEXT = REPO / "data/demo/bitext/sw-en.tsv"


@dataclass
class OTBatch:
    """One batch of OT problems: padded cost ``[B, n, m]``, marginals and true lengths."""

    cost: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor
    lengths: list[tuple[int, int]]


def make_batch(
    batch: int,
    n: int,
    m: int,
    dim: int = 384,
    ragged: bool = False,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> OTBatch:
    """Random unit token vectors, cosine cost, uniform marginals over the real tokens."""
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(batch, n, dim, generator=g)
    teacher = torch.randn(batch, m, dim, generator=g)
    if ragged:
        xs = torch.randint(max(1, n // 2), n + 1, (batch,), generator=g).tolist()
        ys = torch.randint(max(1, m // 2), m + 1, (batch,), generator=g).tolist()
    else:
        xs, ys = [n] * batch, [m] * batch
    smask = torch.arange(n)[None, :] < torch.tensor(xs)[:, None]
    tmask = torch.arange(m)[None, :] < torch.tensor(ys)[:, None]
    cost = pairwise_cost(student, teacher, "cosine")
    a, b = uniform_marginals(smask), uniform_marginals(tmask)
    return OTBatch(cost.to(device), a.to(device), b.to(device), list(zip(xs, ys, strict=True)))


def ours_plans(problem: OTBatch, epsilon: float, n_iters: int) -> torch.Tensor:
    """Our batched plan ``[B, n, m]`` (fixed iterations, no tolerance check)."""
    with torch.no_grad():
        return sinkhorn_plan(problem.cost, problem.a, problem.b, epsilon=epsilon, n_iters=n_iters)


def pot_inputs(problem: OTBatch, backend: str) -> list[tuple]:
    """Per-example unpadded, transposed POT inputs ``(b_k, a_k, C_k^T)``: float32 numpy
    arrays (``backend="numpy"``) or contiguous tensors on the batch's device (``"torch"``)."""
    out = []
    for k, (x, y) in enumerate(problem.lengths):
        parts = (problem.b[k, :y], problem.a[k, :x], problem.cost[k, :x, :y].T)
        if backend == "numpy":
            out.append(tuple(np.ascontiguousarray(p.cpu().numpy()) for p in parts))
        else:
            out.append(tuple(p.contiguous() for p in parts))
    return out


def pot_plans(inputs: list[tuple], epsilon: float, n_iters: int, method: str) -> list:
    """POT's plans, one example at a time, exactly ``n_iters`` iterations each (transposed
    back to ``[n_k, m_k]``)."""
    import ot

    return [
        ot.sinkhorn(b, a, ct, epsilon, method=method, numItermax=n_iters, stopThr=0.0, warn=False).T
        for b, a, ct in inputs
    ]


def max_plan_difference(ours: torch.Tensor, pot: list, lengths: list[tuple[int, int]]) -> float:
    """Largest absolute difference between our padded plans and POT's unpadded ones (and
    the mass our plans put on padding, which must be zero)."""
    worst = 0.0
    ours = ours.detach().cpu().double()
    for k, (x, y) in enumerate(lengths):
        ref = torch.as_tensor(np.asarray(pot[k].cpu() if torch.is_tensor(pot[k]) else pot[k]))
        worst = max(worst, float((ours[k, :x, :y] - ref.double()).abs().max()))
        worst = max(worst, float(ours[k, x:].abs().sum() + ours[k, :, y:].abs().sum()))
    return worst


def compare_sinkhorn(
    problem: OTBatch, epsilon: float, n_iters: int, repeats: int, methods: list[str]
) -> list[dict]:
    """Median seconds per batch of ours and of each POT method, and plan agreement."""
    on_cuda = problem.cost.is_cuda
    sync = cuda_sync if on_cuda else None
    inputs = pot_inputs(problem, "torch" if on_cuda else "numpy")
    fns = {"ours": lambda: ours_plans(problem, epsilon, n_iters)}
    for method in methods:
        fns[method] = lambda method=method: pot_plans(inputs, epsilon, n_iters, method)
    times = time_interleaved(fns, repeats=repeats, warmup=1, sync=sync)
    ours = ours_plans(problem, epsilon, n_iters)
    rows = []
    for method in methods:
        diff = max_plan_difference(
            ours, pot_plans(inputs, epsilon, n_iters, method), problem.lengths
        )
        rows.append(
            {
                "peer": method,
                "ours_s": median(times["ours"]),
                "peer_s": median(times[method]),
                "max_plan_diff": diff,
            }
        )
    return rows


def step_share(repeats: int, batch_size: int, epsilon: float, n_iters: int) -> dict[str, float]:
    """Median seconds of one OPTICAL distillation step and of the OT loss alone."""
    from optical_clir.models.encoder import EncoderConfig, TokenEncoder
    from optical_clir.train.distill import DistillationModule, collate_pairs, read_bitext

    torch.manual_seed(0)
    teacher = TokenEncoder(EncoderConfig())  # MiniLM backbone, 128-d projection, maxsim
    student = copy.deepcopy(teacher).train()
    module = DistillationModule(
        student, teacher, "optical", {"epsilon": epsilon, "n_iters": n_iters}
    ).to(select_device())
    batch = collate_pairs(read_bitext(BITEXT, max_pairs=batch_size))
    optimizer = torch.optim.AdamW(student.parameters(), lr=2e-5)
    sync = cuda_sync if torch.cuda.is_available() else None

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        module(batch).backward()
        optimizer.step()

    length = module.max_length
    with torch.no_grad():
        s, s_mask = student.encode_tokens(batch["source"], length)
        t, t_mask = teacher.encode_tokens(batch["english"], length)
    s = s.detach().requires_grad_(True)

    def ot_only() -> None:
        s.grad = None
        module.ot_loss(s, s_mask, t, t_mask).backward()

    step_times = time_calls(train_step, repeats=repeats, warmup=1, sync=sync)
    ot_times = time_calls(ot_only, repeats=max(repeats, 5) * 4, warmup=2, sync=sync)
    return {
        "step_s": median(step_times),
        "ot_s": median(ot_times),
        "tokens": f"{tuple(s.shape[:2])} x {tuple(t.shape[:2])}",
    }


def select_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few repeats, to check it runs")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--n", type=int, default=32, help="student tokens")
    parser.add_argument("--m", type=int, default=64, help="teacher tokens")
    parser.add_argument("--epsilon", type=float, default=0.1)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=None, help="timed calls (median)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--skip-step", action="store_true", help="skip part 2 (MiniLM step)")
    args = parser.parse_args()
    set_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 15)
    import ot

    print_machine(
        "OT: our batched Sinkhorn vs POT",
        pot=ot.__version__,
        problem=f"batch {args.batch}, {args.n}x{args.m} tokens, eps {args.epsilon}, "
        f"{args.iters} iterations, float32, median of {repeats}",
    )
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        for ragged in (False, True):
            problem = make_batch(args.batch, args.n, args.m, ragged=ragged, device=device)
            for r in compare_sinkhorn(
                problem, args.epsilon, args.iters, repeats, list(POT_METHODS)
            ):
                rows.append(
                    [
                        device,
                        "ragged" if ragged else "full",
                        POT_METHODS[r["peer"]],
                        f"{r['ours_s'] * 1e3:.2f}",
                        f"{r['peer_s'] * 1e3:.2f}",
                        f"{r['peer_s'] / r['ours_s']:.1f}x",
                        f"{r['max_plan_diff']:.1e}",
                    ]
                )
    headers = [
        "device",
        "lengths",
        "peer (looped over the batch)",
        "ours ms/batch",
        "peer ms/batch",
        "speed-up (peer/ours)",
        "max |plan diff|",
    ]
    print(markdown_table(headers, rows))
    print("\ntarget: speed-up >= 20x against sinkhorn_log on CPU\n")

    if args.skip_step:
        return
    share = step_share(
        repeats=2 if args.quick else 5,
        batch_size=args.batch,
        epsilon=args.epsilon,
        n_iters=args.iters,
    )
    print(
        markdown_table(
            ["device", "tokens (student x teacher)", "step ms", "OT loss ms", "OT share"],
            [
                [
                    str(select_device()),
                    share["tokens"],
                    f"{share['step_s'] * 1e3:.0f}",
                    f"{share['ot_s'] * 1e3:.2f}",
                    f"{share['ot_s'] / share['step_s']:.1%}",
                ]
            ],
        )
    )
    print(
        "\nstep: teacher forward + student forward/backward + AdamW on "
        f"{args.batch} pairs; OT loss: forward + backward. target: OT share < 10%"
    )


if __name__ == "__main__":
    main()
