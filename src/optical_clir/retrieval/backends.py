"""The dense search backends' settings and the line the tables print about them.

Torch-free on purpose: the workflow reads them on every Snakemake start (on a cluster, in
every job), where loading torch would cost a second or more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from optical_clir.errors import ConfigError

__all__ = ["AnnSettings", "describe_backends"]


@dataclass
class AnnSettings:
    """The candidate stage (config ``dense.ann``).

    nlist: inverted lists (k-means centroids) of the IVF index; None: about 4 sqrt(N)
        for N vectors, a power of two (faiss's guideline), at most N / 39.
    pq_m: product-quantiser bytes per vector (None: vectors stored uncompressed, IVF-Flat);
        must divide the dimension.
    train_vectors: vectors sampled (seeded) to train the centroids and the quantiser.
    nprobe: lists searched per query vector.
    k_tokens: nearest document vectors retrieved per query token (maxsim) or per query
        (dot); their documents are the candidates.
    query_chunk: queries scored together against the union of their candidates.
    """

    nlist: int | None = None
    pq_m: int | None = None
    train_vectors: int = 262144
    nprobe: int = 16
    k_tokens: int = 128
    query_chunk: int = 16
    seed: int = 0

    @classmethod
    def from_dict(cls, cfg: dict[str, Any] | AnnSettings | None) -> AnnSettings:
        if isinstance(cfg, AnnSettings):
            return cfg
        cfg = dict(cfg or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ConfigError(f"dense.ann.{unknown[0]}", f"unknown key; known: {sorted(known)}")
        return cls(**cfg)


def describe_backends(dense_cfg: dict[str, Any], collections: Sequence[str]) -> str:
    """One line for the tables' notes: how the dense runs searched each collection."""
    by = dense_cfg.get("backend_by_collection") or {}
    approx = [c for c in collections if by.get(c, dense_cfg["backend"]) == "faiss_ivf"]
    if not approx:
        return "Dense retrieval: exact MaxSim over every document."
    ann = AnnSettings.from_dict(
        {k: v for k, v in (dense_cfg.get("ann") or {}).items() if k != "threads"}
    )
    spec = f"IVF{ann.nlist or ''},{'Flat' if ann.pq_m is None else f'PQ{ann.pq_m}'}"
    where = "every collection" if len(approx) == len(collections) else ", ".join(approx)
    rest = "" if len(approx) == len(collections) else "; exact MaxSim on the other collections"
    return (
        f"Dense retrieval on {where}: ColBERT's two stages, candidates from a faiss {spec} index "
        f"over the document tokens ({ann.k_tokens} nearest tokens per query token, nprobe "
        f"{ann.nprobe}), then exact MaxSim on them (documents outside a query's candidates "
        f"are not ranked){rest}."
    )
