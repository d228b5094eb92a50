"""Recall of the candidate stage (backend faiss_ivf) against exact MaxSim on the demo.

Encodes the demo's 330 passages with the demo teacher's encoder (its MiniLM initialisation,
or a trained teacher with ``--model results/models/teacher`` after ``make demo``), builds the
faiss IVF index over their token vectors, searches the demo's English, Swahili and
pseudo-language queries with both backends and prints, for each (nprobe, k_tokens), the
mean recall@10 and recall@100 of the candidate-stage run against the exact run (the share of
the exact top k that the candidate stage also ranks in its top k) and the mean number of
candidate documents per query.

    .venv/bin/python benchmarks/ann_recall.py [--model DIR] [--nlist N] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, markdown_table, print_machine
from scale import recall_at, run_rankings

QUERY_SETS = ("en", "sw", "pseudo")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="a saved TokenEncoder (default: MiniLM)")
    parser.add_argument("--nlist", type=int, default=None, help="IVF lists (default: auto)")
    parser.add_argument("--nprobe", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--k-tokens", type=int, nargs="+", default=[32, 128, 256, 512])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from optical_clir.models.encoder import EncoderConfig, TokenEncoder
    from optical_clir.retrieval.dense import build_ann_index, encode_documents, search

    print_machine("Candidate stage recall on the demo", device=args.device)
    docs = REPO / "data/demo/docs.jsonl"
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if args.model:
            model = Path(args.model)
        else:  # the demo teacher's configuration before training (config/config.yaml)
            config = EncoderConfig(dim=None, doc_max_length=128, query_max_length=32)
            model = TokenEncoder(config).save_pretrained(tmp / "encoder")
        enc = TokenEncoder.from_pretrained(model, args.device)
        manifest = encode_documents(model, docs, tmp / "index", shard_size=128, encoder=enc)
        meta = build_ann_index(tmp / "index", tmp / "ann", {"nlist": args.nlist, "seed": 0})
        exact = {}
        for qset in QUERY_SETS:
            run = tmp / f"exact-{qset}.trec"
            search(model, tmp / "index", REPO / f"data/demo/queries/{qset}.tsv", run, k=100,
                   encoder=enc)  # fmt: skip
            exact[qset] = run_rankings(run)
        rows = []
        for nprobe in args.nprobe:
            for k_tokens in args.k_tokens:
                cells = [str(nprobe), f"{nprobe / meta['nlist']:.1%}", str(k_tokens)]
                for qset in QUERY_SETS:
                    run = tmp / f"ann-{qset}.trec"
                    search(
                        model, tmp / "index", REPO / f"data/demo/queries/{qset}.tsv", run, k=100,
                        backend="faiss_ivf", ann_dir=tmp / "ann",
                        ann={"nprobe": nprobe, "k_tokens": k_tokens}, encoder=enc,
                    )  # fmt: skip
                    approx = run_rankings(run)
                    candidates = sum(len(v) for v in approx.values()) / len(exact[qset])
                    cells.append(
                        f"{recall_at(approx, exact[qset], 10):.3f} / "
                        f"{recall_at(approx, exact[qset], 100):.3f} ({candidates:.0f})"
                    )
                rows.append(cells)
    print(
        f"Demo: {manifest['num_docs']} passages, "
        f"{sum(s['num_tokens'] for s in manifest['shards']):,} token vectors "
        f"({manifest['dim']}-d); {meta['factory']} ({meta['nlist']} lists); encoder "
        f"{'trained teacher ' + str(args.model) if args.model else 'MiniLM (the demo teacher before training)'}.\n"
    )
    print(
        markdown_table(
            [
                "nprobe",
                "lists probed",
                "k_tokens",
                *[
                    f"{q}: recall@10 / @100 (candidates per query, at most 100 ranked)"
                    for q in QUERY_SETS
                ],
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
