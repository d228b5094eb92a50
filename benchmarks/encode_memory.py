"""Peak memory of document encoding as the collection grows (issue: flat memory).

Encodes the demo collection and a collection 10 times its size (the demo passages repeated
with fresh ids and shuffled words) with the same encoder, each in its own process, and
prints peak resident memory and the ratio against the demo collection (the baseline,
measured in the same run). Target: the 10x collection within 1.5x the demo's peak.

    .venv/bin/python benchmarks/encode_memory.py [--scale 10] [--batch-size 32] [--shard-size 330]

The default shard size is the demo collection's size, so the baseline is one shard and the
10x collection ten: memory is bounded by the shard, not the collection. With one shard
larger than the whole collection (e.g. --shard-size 10000) the shard's buffer grows with
the collection instead (measured 2026-11-29: ratio 1.60 at 10x).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, print_machine

DEMO_DOCS = REPO / "data/demo/docs.jsonl"


def scaled_collection(path: Path, scale: int, seed: int = 0) -> int:
    """Write ``scale`` copies of the demo passages (new ids, words shuffled per copy)."""
    rng = random.Random(seed)
    docs = [json.loads(line) for line in DEMO_DOCS.open(encoding="utf-8")]
    n = 0
    with path.open("w", encoding="utf-8") as out:
        for copy in range(scale):
            for doc in docs:
                words = doc["text"].split()
                if copy:
                    rng.shuffle(words)
                out.write(
                    json.dumps(
                        {
                            "id": f"{doc['id']}-{copy}",
                            "title": doc["title"],
                            "text": " ".join(words),
                        }
                    )
                    + "\n"
                )
                n += 1
    return n


def measure(
    model_dir: Path, docs: Path, out_dir: Path, batch_size: int, shard_size: int
) -> tuple[float, float]:
    """Run encode_documents in a child process; return (peak RSS in MiB, seconds)."""
    code = (
        "import sys; from optical_clir.retrieval.dense import encode_documents; "
        f"encode_documents({str(model_dir)!r}, {str(docs)!r}, {str(out_dir)!r}, "
        f"batch_size={batch_size}, shard_size={shard_size}, device='cpu')"
    )
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"encoding {docs} failed with status {status}")
    return usage.ru_maxrss / 1024, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--shard-size", type=int, default=330)
    args = parser.parse_args()
    print_machine(
        "Encoding memory: peak RSS of encode_documents as the collection grows",
        setup=f"demo x1 and x{args.scale}, batch {args.batch_size}, shard {args.shard_size}, "
        "MiniLM token vectors (doc max length 128), CPU, one process per collection",
    )

    from optical_clir.models.encoder import EncoderConfig, TokenEncoder

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = tmp / "encoder"
        TokenEncoder(EncoderConfig(dim=None, doc_max_length=128)).save_pretrained(model_dir)
        rows = []
        for scale in (1, args.scale):
            docs = tmp / f"docs-x{scale}.jsonl"
            n = scaled_collection(docs, scale)
            peak, secs = measure(
                model_dir, docs, tmp / f"index-x{scale}", args.batch_size, args.shard_size
            )
            rows.append((scale, n, peak, secs))
    base = rows[0][2]
    print(
        f"{'collection':>12} {'docs':>6} {'peak RSS MiB':>13} {'seconds':>8} {'ratio vs demo':>14}"
    )
    for scale, n, peak, secs in rows:
        print(f"{'demo x' + str(scale):>12} {n:>6} {peak:>13.0f} {secs:>8.1f} {peak / base:>14.2f}")
    print(
        f"target: ratio <= 1.5 for x{args.scale} (batch {args.batch_size}, shard {args.shard_size}, CPU)"
    )


if __name__ == "__main__":
    main()
