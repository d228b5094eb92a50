"""Dense retrieval with a saved :class:`TokenEncoder`: shard-wise document encoding and search.

Index layout (``out_dir``)::

    manifest.json                          written last: format, scoring, dim, shards, ...
    shard-00000.ids.json                   document ids of the shard, in order
    shard-00000.emb.npy                    maxsim: real-token vectors of all docs [tokens, D]
    shard-00000.offsets.npy                maxsim: int64 [docs + 1] row offsets into emb.npy
    shard-00000.vec.npy                    dot: pooled vectors [docs, D]

Encoding holds at most one shard of embeddings in memory; search loads one shard at a time
(memory-mapped) and keeps a running top-k per query, so memory stays flat as the collection
grows. Scores are exact (matrix products). ``backend="faiss"`` uses faiss when installed
(inner-product flat index: exact for ``dot``; for ``maxsim`` ColBERT's two stages, token-level
candidate generation then exact MaxSim re-ranking); it is an optional dependency.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from optical_clir.data.collection import read_documents, read_queries
from optical_clir.errors import ConfigError, InputError
from optical_clir.models.encoder import TokenEncoder
from optical_clir.models.scoring import dot_scores, maxsim_scores

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
INDEX_FORMAT = "optical-dense-index-v1"
BACKENDS = ("exact", "faiss")


def iter_documents(path: str | Path, use_title: bool = True) -> Iterator[tuple[str, str]]:
    """``(doc id, text)`` from the normalised JSONL collection; title prepended if present."""
    for doc in read_documents(path):
        yield doc.id, f"{doc.title} {doc.text}" if (use_title and doc.title) else doc.text


def _batched(it: Iterator[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in it:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class _ShardWriter:
    """Accumulates one shard's embeddings and writes it when full."""

    def __init__(self, out_dir: Path, scoring: str, dtype: np.dtype) -> None:
        self.out_dir = out_dir
        self.scoring = scoring
        self.dtype = dtype
        self.shards: list[dict[str, Any]] = []
        self._reset()

    def _reset(self) -> None:
        self.ids: list[str] = []
        self.chunks: list[np.ndarray] = []
        self.lengths: list[int] = []

    def to_arrays(self, emb: torch.Tensor, mask: torch.Tensor | None) -> list[np.ndarray]:
        """One array per document of an encoded batch: its real-token vectors ``[T, D]``
        (maxsim) or its vector ``[D]`` (dot), in the index dtype; one device-to-host copy."""
        host = emb.float().cpu().numpy()
        if self.scoring == "maxsim":
            assert mask is not None
            keep = mask.cpu().numpy()
            return [row[m].astype(self.dtype) for row, m in zip(host, keep, strict=True)]
        return list(host.astype(self.dtype))

    def append(self, doc_id: str, vecs: np.ndarray) -> None:
        """Add one document (an array from :meth:`to_arrays`)."""
        self.ids.append(doc_id)
        self.chunks.append(vecs)
        if self.scoring == "maxsim":
            self.lengths.append(vecs.shape[0])

    def __len__(self) -> int:
        return len(self.ids)

    def flush(self) -> None:
        if not self.ids:
            return
        name = f"shard-{len(self.shards):05d}"
        (self.out_dir / f"{name}.ids.json").write_text(json.dumps(self.ids))
        entry: dict[str, Any] = {"name": name, "num_docs": len(self.ids)}
        if self.scoring == "maxsim":
            offsets = np.zeros(len(self.lengths) + 1, dtype=np.int64)
            np.cumsum(self.lengths, out=offsets[1:])
            np.save(self.out_dir / f"{name}.emb.npy", np.concatenate(self.chunks, axis=0))
            np.save(self.out_dir / f"{name}.offsets.npy", offsets)
            entry["num_tokens"] = int(offsets[-1])
        else:
            np.save(self.out_dir / f"{name}.vec.npy", np.stack(self.chunks, axis=0))
        self.shards.append(entry)
        self._reset()


def encode_documents(
    model_dir: str | Path,
    docs_jsonl: str | Path,
    out_dir: str | Path,
    batch_size: int = 32,
    shard_size: int = 10000,
    max_length: int | None = None,
    dtype: str = "float16",
    use_title: bool = True,
    device: str = "auto",
    encoder: TokenEncoder | None = None,
    sort_window: int = 1024,
) -> dict[str, Any]:
    """Encode the collection into an index folder (see module docstring); return the manifest.

    ``max_length`` defaults to the model's ``doc_max_length``; ``dtype`` float16 halves the
    disk size (scores are computed in float32). The folder is built under a temporary name
    and renamed into place, so a killed job never leaves a half index with a manifest.

    Length-sorted batching (our choice, as sentence-transformers' ``encode`` does): the
    documents are read in windows of ``sort_window`` (at most ``shard_size``, so memory stays
    bounded by the shard), each window is encoded in batches of documents of similar length
    (longest first, by characters) so that little compute goes to padding, and written in
    collection order. The index is the same up to float rounding (a document's vectors may
    differ in the last bits with the padding of its batch). ``sort_window`` <= 1: batches in
    collection order.
    """
    if dtype not in ("float16", "float32"):
        raise ConfigError("dense.dtype", "must be 'float16' or 'float32'")
    if batch_size < 1 or shard_size < 1:
        raise ConfigError("dense.batch_size", "batch_size and shard_size must be >= 1")
    window = max(batch_size, min(sort_window, shard_size)) if sort_window > 1 else batch_size
    enc = encoder if encoder is not None else TokenEncoder.from_pretrained(model_dir, device)
    enc.eval()
    scoring = enc.config.scoring
    max_length = max_length or enc.config.doc_max_length
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    writer = _ShardWriter(tmp, scoring, np.dtype(dtype))
    n_docs = 0
    try:
        with torch.inference_mode():
            bar = tqdm(desc="encode docs", unit="doc")
            for chunk in _batched(iter_documents(docs_jsonl, use_title), window):
                order = list(range(len(chunk)))
                if sort_window > 1:
                    order.sort(key=lambda i: -len(chunk[i][1]))  # stable: ties in file order
                vecs: list[np.ndarray] = [np.empty(0)] * len(chunk)
                for start in range(0, len(chunk), batch_size):
                    part = order[start : start + batch_size]
                    emb, mask = enc.encode([chunk[i][1] for i in part], max_length)
                    for i, arr in zip(part, writer.to_arrays(emb, mask), strict=True):
                        vecs[i] = arr
                    bar.update(len(part))
                for (doc_id, _), arr in zip(chunk, vecs, strict=True):
                    writer.append(doc_id, arr)
                    if len(writer) >= shard_size:  # no shard exceeds shard_size documents
                        writer.flush()
                n_docs += len(chunk)
            bar.close()
            writer.flush()
        manifest = {
            "format": INDEX_FORMAT,
            "scoring": scoring,
            "dim": enc.output_dim,
            "dtype": dtype,
            "normalize": enc.config.normalize,
            "max_length": max_length,
            "num_docs": n_docs,
            "shards": writer.shards,
            "model_dir": str(model_dir),
            "docs": str(docs_jsonl),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("encoded %d documents into %d shards at %s", n_docs, len(writer.shards), out_dir)
    return manifest


def load_manifest(index_dir: str | Path) -> dict[str, Any]:
    """Read and check an index's manifest."""
    path = Path(index_dir) / MANIFEST
    if not path.is_file():
        raise InputError(index_dir, f"not a dense index (no {MANIFEST}); run encode_documents")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != INDEX_FORMAT:
        raise InputError(path, f"unknown index format {manifest.get('format')!r}")
    return manifest


class TopK:
    """Running top-k per query; ties broken by global document order (earlier first)."""

    def __init__(self, n_queries: int, k: int) -> None:
        self.k = k
        self.scores = torch.empty(n_queries, 0)
        self.index = torch.empty(n_queries, 0, dtype=torch.long)

    def update(self, scores: torch.Tensor, first_doc: int) -> None:
        """Merge ``scores [Q, n]`` of documents ``first_doc .. first_doc + n - 1``."""
        idx = torch.arange(first_doc, first_doc + scores.shape[1]).expand(scores.shape[0], -1)
        all_scores = torch.cat([self.scores, scores.float().cpu()], dim=1)
        all_index = torch.cat([self.index, idx], dim=1)
        order = torch.sort(all_scores, dim=1, descending=True, stable=True).indices[:, : self.k]
        self.scores = torch.gather(all_scores, 1, order)
        self.index = torch.gather(all_index, 1, order)


def _gather_docs(
    emb: np.ndarray, offsets: np.ndarray, docs: np.ndarray, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shard documents ``docs`` (local indices) as a padded ``[n, T, D]`` tensor and mask."""
    starts, stops = offsets[docs], offsets[docs + 1]
    lengths = torch.from_numpy((stops - starts).astype(np.int64))
    t = max(1, int(lengths.max())) if len(docs) else 1
    out = torch.zeros(len(docs), t, emb.shape[1])
    if len(docs) and int(stops[-1] - starts[0]) == int(lengths.sum()):  # contiguous run
        flat = np.array(emb[starts[0] : stops[-1]], dtype=np.float32)
    else:
        flat = np.concatenate(
            [np.array(emb[a:b], dtype=np.float32) for a, b in zip(starts, stops, strict=True)]
        )
    mask = torch.arange(t)[None, :] < lengths[:, None]
    out[mask] = torch.from_numpy(flat)
    return out.to(device), mask.to(device)


def _faiss_module() -> Any:
    try:
        import faiss
    except ImportError:
        raise ConfigError(
            "dense.backend",
            "backend 'faiss' needs the optional faiss package (pip install faiss-cpu, or "
            "faiss-gpu on a cluster); use backend 'exact' otherwise",
        ) from None
    return faiss


def _search_shard_exact(
    manifest: dict[str, Any],
    index_dir: Path,
    shard: dict[str, Any],
    q: torch.Tensor,
    q_mask: torch.Tensor | None,
    doc_chunk: int,
    device: torch.device,
) -> torch.Tensor:
    """Scores ``[Q, docs of shard]``, computed in document chunks."""
    name = shard["name"]
    if manifest["scoring"] == "dot":
        vec = np.load(index_dir / f"{name}.vec.npy", mmap_mode="r")
        parts = []
        for s in range(0, vec.shape[0], doc_chunk):
            d = torch.from_numpy(np.array(vec[s : s + doc_chunk], dtype=np.float32)).to(device)
            parts.append(dot_scores(q, d).cpu())
        return torch.cat(parts, dim=1)
    assert q_mask is not None
    emb = np.load(index_dir / f"{name}.emb.npy", mmap_mode="r")
    offsets = np.load(index_dir / f"{name}.offsets.npy")
    n = len(offsets) - 1
    parts = []
    for s in range(0, n, doc_chunk):
        d, d_mask = _gather_docs(emb, offsets, np.arange(s, min(n, s + doc_chunk)), device)
        parts.append(maxsim_scores(q, q_mask, d, d_mask).cpu())
    return torch.cat(parts, dim=1)


def _search_shard_faiss(
    manifest: dict[str, Any],
    index_dir: Path,
    shard: dict[str, Any],
    q: torch.Tensor,
    q_mask: torch.Tensor | None,
    candidates: int,
    device: torch.device,
) -> torch.Tensor:
    """Like the exact search but through faiss: ``-inf`` for documents not retrieved.

    dot: flat inner-product index, exact. maxsim: each query token retrieves its
    ``candidates`` nearest document tokens; the documents owning them are re-ranked with
    exact MaxSim (ColBERT end-to-end retrieval, without compression).
    """
    faiss = _faiss_module()
    name = shard["name"]
    n_docs = int(shard["num_docs"])
    out = torch.full((q.shape[0], n_docs), float("-inf"))
    if manifest["scoring"] == "dot":
        vec = np.ascontiguousarray(np.load(index_dir / f"{name}.vec.npy"), dtype=np.float32)
        index = faiss.IndexFlatIP(vec.shape[1])
        index.add(vec)
        qn = np.ascontiguousarray(q.float().cpu().numpy())
        dist, ids = index.search(qn, min(candidates, n_docs))
        for i in range(q.shape[0]):
            keep = ids[i] >= 0
            out[i, torch.from_numpy(ids[i][keep])] = torch.from_numpy(dist[i][keep]).float()
        return out
    assert q_mask is not None
    emb = np.load(index_dir / f"{name}.emb.npy", mmap_mode="r")
    offsets = np.load(index_dir / f"{name}.offsets.npy")
    index = faiss.IndexFlatIP(emb.shape[1])
    index.add(np.ascontiguousarray(emb, dtype=np.float32))
    owner = np.searchsorted(offsets, np.arange(int(offsets[-1])), side="right") - 1
    for i in range(q.shape[0]):
        toks = np.ascontiguousarray(q[i][q_mask[i]].float().cpu().numpy())
        _, ids = index.search(toks, min(candidates, int(offsets[-1])))
        docs = np.unique(owner[ids[ids >= 0]])
        for s in range(0, len(docs), 256):
            chunk = docs[s : s + 256]
            d, m = _gather_docs(emb, offsets, chunk, device)
            out[i, torch.from_numpy(chunk)] = maxsim_scores(q[i : i + 1], q_mask[i : i + 1], d, m)[
                0
            ].cpu()
    return out


def search(
    model_dir: str | Path,
    index_dir: str | Path,
    queries_tsv: str | Path,
    run_path: str | Path,
    k: int = 1000,
    backend: str = "exact",
    run_tag: str = "optical-dense",
    batch_size: int = 32,
    max_length: int | None = None,
    doc_chunk: int = 512,
    faiss_candidates: int = 1024,
    device: str = "auto",
    encoder: TokenEncoder | None = None,
) -> int:
    """Encode the queries, score them against every shard, write a TREC run; return #lines.

    The query encoder may differ from the document encoder (OPTICAL's student encodes
    queries, the teacher's index stays); its scoring and dimension must match the index.
    Run lines: ``qid Q0 docid rank score tag``; rank from 1, ties in document order.
    """
    if backend not in BACKENDS:
        raise ConfigError("dense.backend", f"must be one of {BACKENDS}, got {backend!r}")
    if backend == "faiss":
        _faiss_module()
    if k < 1:
        raise ConfigError("dense.k", "must be >= 1")
    index_dir = Path(index_dir)
    manifest = load_manifest(index_dir)
    enc = encoder if encoder is not None else TokenEncoder.from_pretrained(model_dir, device)
    enc.eval()
    if enc.config.scoring != manifest["scoring"] or enc.output_dim != manifest["dim"]:
        raise ConfigError(
            "dense.model",
            f"query encoder ({enc.config.scoring}, dim {enc.output_dim}) does not match the "
            f"index ({manifest['scoring']}, dim {manifest['dim']})",
        )
    dev = enc.device
    queries = read_queries(queries_tsv, strict=True)
    max_length = max_length or enc.config.query_max_length
    # queries are few: encode them all once, then stream the shards (each read once)
    encoded: list[tuple[torch.Tensor, torch.Tensor | None]] = []
    with torch.inference_mode():
        for qbatch in _batched(iter(queries), batch_size):
            q, q_mask = enc.encode([t for _, t in qbatch], max_length)
            encoded.append((q, q_mask))
        tops = [TopK(q.shape[0], k) for q, _ in encoded]
        first = 0
        starts = []
        for shard in tqdm(manifest["shards"], desc="search shards", unit="shard"):
            starts.append(first)
            for (q, q_mask), top in zip(encoded, tops, strict=True):
                if backend == "exact":
                    scores = _search_shard_exact(
                        manifest, index_dir, shard, q, q_mask, doc_chunk, dev
                    )
                else:
                    scores = _search_shard_faiss(
                        manifest, index_dir, shard, q, q_mask, faiss_candidates, dev
                    )
                top.update(scores, first)
            first += int(shard["num_docs"])
    scores_all = torch.cat([t.scores for t in tops]) if tops else torch.empty(0, 0)
    index_all = torch.cat([t.index for t in tops]) if tops else torch.empty(0, 0, dtype=torch.long)
    # resolve global document positions to ids, one shard's id list at a time
    doc_ids = np.full(index_all.shape, None, dtype=object)
    flat = index_all.numpy()
    for shard, start in zip(manifest["shards"], starts, strict=True):
        inside = (flat >= start) & (flat < start + int(shard["num_docs"]))
        if inside.any():
            ids = json.loads((index_dir / f"{shard['name']}.ids.json").read_text())
            doc_ids[inside] = [ids[j - start] for j in flat[inside].tolist()]
    run_path = Path(run_path)
    run_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = run_path.with_name(f".{run_path.name}.tmp")
    lines = 0
    with open(tmp, "w") as out:
        for row, (qid, _) in enumerate(queries):
            for rank, s in enumerate(scores_all[row].tolist(), start=1):
                if s == float("-inf"):
                    break
                out.write(f"{qid} Q0 {doc_ids[row, rank - 1]} {rank} {s:.6f} {run_tag}\n")
                lines += 1
    os.replace(tmp, run_path)
    logger.info("wrote %d run lines for %d queries to %s", lines, len(queries), run_path)
    return lines
