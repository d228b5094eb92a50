"""The OT plan as OPTICAL solves it against POT's batched solver, and OT's share of a step.

Part 1 solves the entropic OT problems of one batch of real token costs: the zero-shot
student (the MiniLM backbone of the default ``EncoderConfig``) on 32 Swahili sentences of
``data/demo/bitext/sw-en.tsv`` against the same model on their English sides (cosine cost:
mean 0.95, within-pair sd 0.08, the situation the relative epsilon is for), at
OPTICAL's chosen epsilon (relative 0.05: a twentieth of each pair's cost sd), uniform marginals
over the real tokens, and the same stopping rule on both sides (``tol`` on the L2
row-marginal error, checked every 10 iterations, at most ``max_iter``). Two ways:

- peer, ``ot.batch.solve_batch(C / sd, reg=epsilon, method="log_sinkhorn")``: POT's
  batched log-domain Sinkhorn as a user calls it (float32 in, zero mass at padding);
- ours, :func:`optical_clir.losses.optimal_transport.sinkhorn_plan`: the same POT solver
  with ``method="sinkhorn"`` (scalings) in float64 after each row's smallest cost is
  subtracted (the plan does not change), with the log-domain solver as fallback.

The table gives milliseconds per batch (sides take turns), iterations, the largest plan
difference and the ratio peer/ours. Part 2 times one OPTICAL training step
(``DistillationModule``: cached teacher targets, student forward + backward, AdamW step) on
the same 32 pairs and the OT solve inside it; the OT share of a step should stay under 5%.

    .venv/bin/python benchmarks/ot_sinkhorn.py [--quick] [--threads N] [--skip-step]
"""

from __future__ import annotations

import argparse
import copy
import os
from dataclasses import dataclass

os.environ.setdefault("HF_HUB_OFFLINE", "1")

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

from optical_clir.losses.optimal_transport import (
    cost_spread,
    pairwise_cost,
    sinkhorn_plan,
    uniform_marginals,
)

BITEXT = REPO / "data/demo/bitext/sw-en.tsv"


@dataclass
class OTBatch:
    """One batch of OT problems: cost ``[B, n, m]`` (zero at padding), marginals, and each
    example's cost sd (the relative epsilon's unit)."""

    cost: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor
    spread: torch.Tensor


def batch_from_vectors(
    student: torch.Tensor, s_mask: torch.Tensor, teacher: torch.Tensor, t_mask: torch.Tensor
) -> OTBatch:
    """The OT problems of token vectors as ``ot_alignment_loss`` builds them."""
    pairs = s_mask[:, :, None] & t_mask[:, None, :]
    cost = pairwise_cost(student.float(), teacher.float())
    cost = torch.where(pairs, cost, torch.zeros_like(cost))
    return OTBatch(
        cost, uniform_marginals(s_mask), uniform_marginals(t_mask), cost_spread(cost, pairs)
    )


def demo_batch(batch: int, max_length: int = 32) -> OTBatch:
    """Real costs: the zero-shot MiniLM on ``batch`` Swahili sentences and their English."""
    from optical_clir.models.encoder import EncoderConfig, TokenEncoder
    from optical_clir.train.distill import read_bitext

    torch.manual_seed(0)
    encoder = TokenEncoder(EncoderConfig(dim=None)).eval()
    pairs = read_bitext(BITEXT, max_pairs=batch)
    with torch.no_grad():
        s, s_mask = encoder.encode_tokens([p[0] for p in pairs], max_length)
        t, t_mask = encoder.encode_tokens([p[1] for p in pairs], max_length)
    return batch_from_vectors(s, s_mask, t, t_mask)


def ours(problem: OTBatch, epsilon: float, max_iter: int, tol: float) -> tuple[torch.Tensor, int]:
    scaled = problem.cost / problem.spread[:, None, None]
    return sinkhorn_plan(scaled, problem.a, problem.b, epsilon, max_iter=max_iter, tol=tol)


def peer(problem: OTBatch, epsilon: float, max_iter: int, tol: float) -> tuple[torch.Tensor, int]:
    from ot.batch import solve_batch

    scaled = problem.cost / problem.spread[:, None, None]
    result = solve_batch(scaled, reg=epsilon, a=problem.a, b=problem.b, max_iter=max_iter,
                         tol=tol, method="log_sinkhorn", grad="detach")  # fmt: skip
    return result.plan, int(result.log["n_iter"]) + 1


def max_plan_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max())


def compare(problem: OTBatch, epsilon: float, max_iter: int, tol: float, repeats: int) -> dict:
    sync = cuda_sync if problem.cost.is_cuda else None
    times = time_interleaved(
        {"ours": lambda: ours(problem, epsilon, max_iter, tol),
         "peer": lambda: peer(problem, epsilon, max_iter, tol)},
        repeats=repeats, warmup=1, sync=sync,
    )  # fmt: skip
    mine, mine_iters = ours(problem, epsilon, max_iter, tol)
    theirs, their_iters = peer(problem, epsilon, max_iter, tol)
    return {
        "ours_s": median(times["ours"]),
        "peer_s": median(times["peer"]),
        "ours_iters": mine_iters,
        "peer_iters": their_iters,
        "max_plan_diff": max_plan_difference(mine, theirs),
    }


def step_share(repeats: int, batch_size: int, loss_cfg: dict) -> dict[str, float]:
    """Median seconds of one OPTICAL step and of the OT solve of that step's batch."""
    from optical_clir.models.encoder import EncoderConfig, TokenEncoder
    from optical_clir.train.distill import DistillationModule, collate_pairs, read_bitext

    torch.manual_seed(0)
    teacher = TokenEncoder(EncoderConfig(dim=None))
    student = copy.deepcopy(teacher).train()
    pairs = read_bitext(BITEXT, max_pairs=batch_size)
    module = DistillationModule(student, teacher, "optical", loss_cfg, cache_teacher=True,
                                idf_sentences=([s for s, _ in pairs], [e for _, e in pairs]))  # fmt: skip
    batch = collate_pairs(pairs)
    module.targets.precompute(batch["english"], batch_size)
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-3)
    sync = cuda_sync if torch.cuda.is_available() else None
    solves: list[float] = []
    real_solve = module.ot_loss.forward

    def timed_solve(*args, **kwargs):  # the OT part of a step: cost, marginals, plan, loss
        import time

        start = time.perf_counter()
        out = real_solve(*args, **kwargs)
        solves.append(time.perf_counter() - start)
        return out

    module.ot_loss.forward = timed_solve  # type: ignore[method-assign]

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        module(batch).backward()
        optimizer.step()

    step_times = time_calls(train_step, repeats=repeats, warmup=1, sync=sync)
    return {"step_s": median(step_times), "ot_s": median(solves[1:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few repeats, to check it runs")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epsilon", type=float, default=0.05, help="relative epsilon")
    parser.add_argument("--max-iter", type=int, default=2000)
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--repeats", type=int, default=None, help="timed calls (median)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--skip-step", action="store_true", help="skip part 2 (MiniLM step)")
    args = parser.parse_args()
    set_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 15)
    import ot

    print_machine(
        "OT: OPTICAL's plan vs POT's batched log-domain solver",
        pot=ot.__version__,
        problem=f"batch {args.batch} of zero-shot MiniLM sw/en token costs, relative epsilon "
        f"{args.epsilon}, tol {args.tol}, max_iter {args.max_iter}, median of {repeats}",
    )
    problem = demo_batch(args.batch)
    real = (problem.a > 0)[:, :, None] & (problem.b > 0)[:, None, :]
    print(f"Cost (1 - cosine) over real token pairs: mean {problem.cost[real].mean():.3f}; "
          f"sd within a pair, mean over the batch: {problem.spread.mean():.3f}\n")  # fmt: skip
    rows = []
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        moved = OTBatch(
            *(x.to(device) for x in (problem.cost, problem.a, problem.b, problem.spread))
        )
        r = compare(moved, args.epsilon, args.max_iter, args.tol, repeats)
        rows.append([
            device, f"{tuple(problem.cost.shape)}", f"{r['ours_s'] * 1e3:.2f} ({r['ours_iters']} it)",
            f"{r['peer_s'] * 1e3:.2f} ({r['peer_iters']} it)", f"{r['peer_s'] / r['ours_s']:.1f}x",
            f"{r['max_plan_diff']:.1e}",
        ])  # fmt: skip
    headers = ["device", "batch x student x teacher tokens", "ours ms/batch",
               "solve_batch log_sinkhorn ms/batch", "ratio peer/ours", "max |plan diff|"]  # fmt: skip
    print(markdown_table(headers, rows))
    if args.skip_step:
        return
    loss_cfg = {"epsilon": args.epsilon, "epsilon_mode": "relative", "marginals": "idf",
                "max_iter": args.max_iter, "tol": args.tol}  # fmt: skip
    share = step_share(repeats=2 if args.quick else 5, batch_size=args.batch, loss_cfg=loss_cfg)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print()
    print(markdown_table(
        ["device", "step ms", "OT (cost, plan, loss) ms", "OT share"],
        [[device, f"{share['step_s'] * 1e3:.0f}", f"{share['ot_s'] * 1e3:.2f}",
          f"{share['ot_s'] / share['step_s']:.1%}"]],
    ))  # fmt: skip
    print(f"\nstep: cached teacher targets, student forward/backward, AdamW on {args.batch} pairs "
          "at the demo's loss settings. target: OT share < 5%")  # fmt: skip


if __name__ == "__main__":
    main()
