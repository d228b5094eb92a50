"""Dense retrieval with a saved :class:`TokenEncoder`: shard-wise document encoding and search.

Index layout (``out_dir``)::

    manifest.json                          written last: format, scoring, dim, shards, ...
    shard-00000.ids.json                   document ids of the shard, in order
    shard-00000.emb.npy                    maxsim: real-token vectors of all docs [tokens, D]
    shard-00000.offsets.npy                maxsim: int64 [docs + 1] row offsets into emb.npy
    shard-00000.vec.npy                    dot: pooled vectors [docs, D]

Encoding holds at most one shard of embeddings in memory. Tokenisation runs in a torch
``DataLoader`` (worker processes, pinned memory on GPU) while the model encodes, under fp16
autocast on GPU.

Search (``backend="exact"``) encodes all queries once, then reads each shard once, in blocks
of documents, for all queries together: per block, the similarities of every query token
to every document token (one matrix product over the block's flat token matrix), their
maximum per document (a segment max over the offsets) and the sum over each query's tokens,
chunked so that no intermediate exceeds ``sim_elements`` values; a running top-k per query.
Memory is bounded by the block, not the collection, and the index is read once whatever
the number of queries. On GPU the products run in fp16 (the index's dtype).

``backend="faiss_ivf"`` adds ColBERT v1's candidate stage (Khattab and Zaharia, 2020) in
front: an inverted-file faiss index over every document token (:func:`build_ann_index`,
built once per collection), in which each query token retrieves its ``k_tokens`` nearest
document tokens; the documents owning them are the query's candidates and are scored with
exact MaxSim (the same code as the exact backend). Documents outside a query's candidates
are not ranked for it. For ``dot`` indexes the faiss index holds the pooled vectors.
faiss is imported only by this backend.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from optical_clir.data.collection import read_documents, read_queries
from optical_clir.errors import ConfigError, InputError
from optical_clir.models.encoder import TokenEncoder
from optical_clir.retrieval.backends import AnnSettings

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
INDEX_FORMAT = "optical-dense-index-v1"
ANN_FORMAT = "optical-dense-ann-v1"
ANN_META = "ann.json"
ANN_INDEX = "index.faiss"
BACKENDS = ("exact", "faiss_ivf")
PRECISIONS = ("auto", "fp16", "bf16", "no")
# Defaults of the search's memory bounds (similarity values per product; documents and
# tokens per block read from disk).
SIM_ELEMENTS = {"cpu": 1 << 24, "cuda": 1 << 28}
BLOCK_DOCS = 16384
BLOCK_TOKENS = 1 << 21


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


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of inference on ``device`` (None: no autocast).

    ``auto``: fp16 on CUDA (the index is stored in fp16), none on CPU. ``bf16`` is honoured
    on CPU too; ``fp16`` on CPU is ignored (CPU fp16 matmuls are slow) with a warning.
    """
    if precision not in PRECISIONS:
        raise ConfigError("dense.precision", f"must be one of {PRECISIONS}, got {precision!r}")
    if precision == "no":
        return None
    if device.type == "cuda":
        return torch.bfloat16 if precision == "bf16" else torch.float16
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        logger.warning("dense.precision fp16 ignored on %s (no fp16 autocast there)", device)
    return None


def _autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    if dtype is None:
        return torch.autocast(device_type=device.type, enabled=False)
    return torch.autocast(device_type=device.type, dtype=dtype)


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


class _TokenizedWindows(torch.utils.data.IterableDataset):
    """The collection as tokenized batches, read and tokenized in DataLoader workers.

    The documents are read in windows of ``window``; each window is cut into batches of
    documents of similar length (longest first, by characters) when ``sort`` is set. Every
    item carries its window number and the documents' positions in it, so the main process
    writes the index in collection order whatever the order the workers deliver. Worker
    ``w`` of ``n`` tokenizes windows ``w, w + n, ...`` (each worker reads the whole file, so
    it also validates all of it). A reading error inside a worker comes back as an item
    (``"error"``) and is raised in the main process as the same :class:`InputError`.
    """

    def __init__(
        self,
        docs_jsonl: Path,
        use_title: bool,
        window: int,
        batch_size: int,
        sort: bool,
        tokenizer: Any,
        max_length: int,
    ) -> None:
        super().__init__()
        self.docs_jsonl = docs_jsonl
        self.use_title = use_title
        self.window = window
        self.batch_size = batch_size
        self.sort = sort
        self.tokenizer = tokenizer
        self.max_length = max_length

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        try:
            for number, chunk in enumerate(
                _batched(iter_documents(self.docs_jsonl, self.use_title), self.window)
            ):
                if number % workers != worker:
                    continue
                order = list(range(len(chunk)))
                if self.sort:
                    order.sort(key=lambda i: -len(chunk[i][1]))  # stable: ties in file order
                parts = [
                    order[s : s + self.batch_size] for s in range(0, len(chunk), self.batch_size)
                ]
                for b, part in enumerate(parts):
                    tokens = self.tokenizer(
                        [chunk[i][1] for i in part],
                        padding=True,
                        truncation=True,
                        max_length=self.max_length,
                        return_tensors="pt",
                    )
                    yield {
                        "window": number,
                        "ids": [doc_id for doc_id, _ in chunk] if b == 0 else None,
                        "batches": len(parts),
                        "positions": part,
                        "input_ids": tokens["input_ids"],
                        "attention_mask": tokens["attention_mask"],
                    }
        except InputError as error:
            if info is None:
                raise
            yield {"error": (error.path, error.problem, error.line)}


def _loader_workers(workers: int | None, device: torch.device) -> int:
    """Tokenizer worker processes: as given, else none on CPU (the model needs the cores)
    and up to 4 beside a GPU."""
    if workers is not None:
        if workers < 0:
            raise ConfigError("dense.loader_workers", "must be >= 0 or null")
        return int(workers)
    if device.type != "cuda":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(4, (cores or 2) - 1))


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
    precision: str = "auto",
    loader_workers: int | None = None,
) -> dict[str, Any]:
    """Encode the collection into an index folder (see module docstring); return the manifest.

    ``max_length`` defaults to the model's ``doc_max_length``; ``dtype`` float16 halves the
    disk size (scores are computed in float32 on CPU). The folder is built under a temporary
    name and renamed into place, so a killed job never leaves a half index with a manifest.

    Length-sorted batching (our choice, as sentence-transformers' ``encode`` does): the
    documents are read in windows of ``sort_window`` (at most ``shard_size``, so memory stays
    bounded by the shard), each window is encoded in batches of documents of similar length
    (longest first, by characters) so that little compute goes to padding, and written in
    collection order. The index is the same up to float rounding (a document's vectors may
    differ in the last bits with the padding of its batch). ``sort_window`` <= 1: batches in
    collection order. ``precision``: autocast of the encoder (:func:`autocast_dtype`).
    ``loader_workers``: tokenizer processes (None: :func:`_loader_workers`).
    """
    if dtype not in ("float16", "float32"):
        raise ConfigError("dense.dtype", "must be 'float16' or 'float32'")
    if batch_size < 1 or shard_size < 1:
        raise ConfigError("dense.batch_size", "batch_size and shard_size must be >= 1")
    window = max(batch_size, min(sort_window, shard_size)) if sort_window > 1 else batch_size
    enc = encoder if encoder is not None else TokenEncoder.from_pretrained(model_dir, device)
    enc.eval()
    dev = enc.device
    amp = autocast_dtype(precision, dev)
    workers = _loader_workers(loader_workers, dev)
    if workers:
        # one tokenizer thread per worker process (fast tokenizers warn after a fork otherwise)
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    scoring = enc.config.scoring
    max_length = max_length or enc.config.doc_max_length
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    writer = _ShardWriter(tmp, scoring, np.dtype(dtype))
    dataset = _TokenizedWindows(
        Path(docs_jsonl), use_title, window, batch_size, sort_window > 1, enc.tokenizer, max_length
    )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        num_workers=workers,
        pin_memory=dev.type == "cuda",
        prefetch_factor=4 if workers else None,
    )
    n_docs = 0
    # window number -> [ids, vectors by position, batches still to come]
    pending: dict[int, list[Any]] = {}
    next_window = 0
    try:
        with torch.inference_mode():
            bar = tqdm(desc="encode docs", unit="doc")
            for item in loader:
                if "error" in item:
                    path, problem, line = item["error"]
                    raise InputError(path, problem, line=line)
                batch = {
                    key: item[key].to(dev, non_blocking=True)
                    for key in ("input_ids", "attention_mask")
                }
                with _autocast(dev, amp):
                    emb, mask = enc.encode_tokenized(batch)
                entry = pending.setdefault(item["window"], [None, {}, item["batches"]])
                if item["ids"] is not None:
                    entry[0] = item["ids"]
                for i, arr in zip(item["positions"], writer.to_arrays(emb, mask), strict=True):
                    entry[1][i] = arr
                entry[2] -= 1
                bar.update(len(item["positions"]))
                while next_window in pending and pending[next_window][2] == 0:
                    ids, vecs, _ = pending.pop(next_window)
                    for i, doc_id in enumerate(ids):
                        writer.append(doc_id, vecs[i])
                        if len(writer) >= shard_size:  # no shard exceeds shard_size documents
                            writer.flush()
                    n_docs += len(ids)
                    next_window += 1
            bar.close()
            if pending:
                raise RuntimeError(f"encoding ended with windows {sorted(pending)} incomplete")
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


# ----------------------------------------------------------------------------- reading


class NpyRows:
    """Rows of a 2-D ``.npy`` file read with plain file reads (no memory map), so that what a
    search holds in memory is what it asked for, whatever the size of the file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(fh)
            self.header = fh.tell()
        if fortran or len(shape) != 2:
            raise InputError(self.path, f"expected a C-ordered 2-D array, got shape {shape}")
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.row_bytes = self.shape[1] * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start .. stop - 1`` as a new array."""
        stop = min(stop, self.shape[0])
        out = np.empty((max(0, stop - start), self.shape[1]), dtype=self.dtype)
        if len(out):
            with open(self.path, "rb") as fh:
                fh.seek(self.header + start * self.row_bytes)
                if fh.readinto(memoryview(out).cast("B")) != out.nbytes:
                    raise InputError(self.path, f"file ends before row {stop}: truncated index")
        return out

    def gather(self, ranges: Sequence[tuple[int, int]]) -> np.ndarray:
        """The rows of several ``(start, stop)`` ranges, concatenated (sorted ranges read
        forward through the file)."""
        total = sum(b - a for a, b in ranges)
        out = np.empty((total, self.shape[1]), dtype=self.dtype)
        view = memoryview(out).cast("B")
        pos = 0
        with open(self.path, "rb") as fh:
            for a, b in ranges:
                n = (b - a) * self.row_bytes
                if not n:
                    continue
                fh.seek(self.header + a * self.row_bytes)
                if fh.readinto(view[pos : pos + n]) != n:
                    raise InputError(self.path, f"file ends before row {b}: truncated index")
                pos += n
        return out


# ----------------------------------------------------------------------------- scoring


class TopK:
    """Running top-k per query; ties broken by global document order (earlier first).

    Scores must arrive in increasing document order (block after block, shard after shard),
    which is what makes "earlier first" hold across updates. Unfilled places hold score
    ``-inf`` and document ``-1``.
    """

    def __init__(self, n_queries: int, k: int, device: torch.device | str = "cpu") -> None:
        self.k = k
        self.scores = torch.full((n_queries, k), float("-inf"), device=device)
        self.index = torch.full((n_queries, k), -1, dtype=torch.long, device=device)

    def update(
        self, scores: torch.Tensor, doc_index: torch.Tensor | int, rows: slice = slice(None)
    ) -> None:
        """Merge ``scores [len(rows), n]`` of the documents ``doc_index`` (``[n]`` global
        positions, ascending; an int ``i`` means ``i .. i + n - 1``) for queries ``rows``."""
        device = self.scores.device
        scores = scores.to(device=device, dtype=torch.float32)
        if isinstance(doc_index, int):
            doc_index = torch.arange(doc_index, doc_index + scores.shape[1], device=device)
        values, local = select_topk(scores, self.k)
        all_scores = torch.cat([self.scores[rows], values], dim=1)
        all_index = torch.cat([self.index[rows], doc_index.to(device)[local]], dim=1)
        order = torch.sort(all_scores, dim=1, descending=True, stable=True).indices[:, : self.k]
        self.scores[rows] = torch.gather(all_scores, 1, order)
        self.index[rows] = torch.gather(all_index, 1, order)


def select_topk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best columns of each row, ties at the boundary resolved to the earliest
    columns; returns ``(values, columns)`` with the columns in ascending order per row (so a
    stable sort by score keeps ties in column order). All columns when there are <= k."""
    q, n = scores.shape
    if n <= k:
        cols = torch.arange(n, device=scores.device).expand(q, n)
        return scores, cols
    kth = torch.topk(scores, k, dim=1, sorted=False).values.min(dim=1, keepdim=True).values
    greater = scores > kth
    need = k - greater.sum(dim=1, keepdim=True)
    ties = scores == kth
    keep = greater | (ties & (torch.cumsum(ties, dim=1) <= need))
    cols = keep.nonzero()[:, 1].view(q, k)
    return torch.gather(scores, 1, cols), cols


def _segment_max(sim: torch.Tensor, lengths: np.ndarray) -> torch.Tensor:
    """``sim [R, sum(lengths)]`` -> ``[R, len(lengths)]``: the maximum over each segment of
    columns (a document's tokens); 0 for an empty segment."""
    n = len(lengths)
    if sim.device.type == "cpu":
        out = torch.zeros(sim.shape[0], n, dtype=sim.dtype)
        nonempty = np.flatnonzero(lengths > 0)
        if len(nonempty):
            starts = (np.cumsum(lengths) - lengths)[nonempty]
            reduced = np.maximum.reduceat(sim.numpy(), starts, axis=1)
            out[:, torch.from_numpy(nonempty)] = torch.from_numpy(reduced)
        return out
    return _segment_max_torch(sim, lengths)


def _segment_max_torch(sim: torch.Tensor, lengths: np.ndarray) -> torch.Tensor:
    """:func:`_segment_max` on any device (a scatter of each column to its document)."""
    n = len(lengths)
    owner = torch.repeat_interleave(
        torch.arange(n, device=sim.device), torch.from_numpy(lengths).to(sim.device)
    )
    out = torch.zeros(sim.shape[0], n, dtype=sim.dtype, device=sim.device)
    return out.scatter_reduce_(1, owner.expand(sim.shape[0], -1), sim, "amax", include_self=False)


@dataclass
class _QueryTokens:
    """Every query's real token vectors, concatenated ``[tokens, D]``, and per-query counts."""

    vectors: torch.Tensor
    lengths: np.ndarray  # tokens per query

    def chunks(self, max_tokens: int) -> list[tuple[int, int]]:
        """Ranges of queries whose tokens add up to at most ``max_tokens`` (or one query)."""
        out, start, total = [], 0, 0
        for i, n in enumerate(self.lengths.tolist()):
            if i > start and total + n > max_tokens:
                out.append((start, i))
                start, total = i, 0
            total += n
        if start < len(self.lengths):
            out.append((start, len(self.lengths)))
        return out

    def token_range(self, q0: int, q1: int) -> tuple[int, int]:
        starts = np.concatenate([[0], np.cumsum(self.lengths)])
        return int(starts[q0]), int(starts[q1])


def _sum_per_query(tokmax: torch.Tensor, q_lengths: np.ndarray) -> torch.Tensor:
    """``[query tokens, docs]`` -> ``[queries, docs]``: sum over each query's tokens."""
    if tokmax.device.type == "cpu":
        starts = np.cumsum(q_lengths) - q_lengths
        return torch.from_numpy(np.add.reduceat(tokmax.float().numpy(), starts, axis=0))
    return _sum_per_query_torch(tokmax, q_lengths)


def _sum_per_query_torch(tokmax: torch.Tensor, q_lengths: np.ndarray) -> torch.Tensor:
    """:func:`_sum_per_query` on any device."""
    lengths = torch.from_numpy(q_lengths).to(tokmax.device)
    return torch.segment_reduce(tokmax.float(), "sum", lengths=lengths, axis=0)


def maxsim_flat(
    q_tokens: torch.Tensor,
    q_lengths: np.ndarray,
    d_tokens: torch.Tensor,
    d_lengths: np.ndarray,
    sim_elements: int,
) -> torch.Tensor:
    """MaxSim of every query against every document from flat token matrices.

    ``q_tokens [sum(q_lengths), D]`` (each query's real tokens, query after query) and
    ``d_tokens [sum(d_lengths), D]`` (likewise for documents) -> ``[queries, docs]`` float32:
    for each query token the largest similarity to a token of the document (0 for a
    document without tokens), summed over the query's tokens. The documents are taken in
    runs whose similarity matrix has at most ``sim_elements`` values (at least one document).
    """
    n_q, n_d = len(q_lengths), len(d_lengths)
    out = torch.empty(n_q, n_d, dtype=torch.float32, device=q_tokens.device)
    per_run = max(1, sim_elements // max(1, q_tokens.shape[0]))
    d_off = np.concatenate([[0], np.cumsum(d_lengths)])
    a = 0
    while a < n_d:
        # as many documents as fit in per_run tokens (at least one)
        b = int(np.searchsorted(d_off, d_off[a] + per_run, side="right")) - 1
        b = min(n_d, max(b, a + 1))
        sim = q_tokens @ d_tokens[d_off[a] : d_off[b]].T
        out[:, a:b] = _sum_per_query(_segment_max(sim, d_lengths[a:b]), q_lengths)
        a = b
    return out


# ----------------------------------------------------------------------------- search


@dataclass
class SearchSettings:
    """How :func:`search` bounds its memory and which precision it computes in.

    sim_elements: values of one similarity matrix (query tokens x document tokens); None:
        2^24 on CPU (64 MB in float32), 2^28 on GPU.
    block_docs / block_tokens: documents and token rows read from disk at a time.
    query_tokens: query tokens scored together (more queries are taken in turns over the
        same block; the block is read once either way).
    precision: ``auto`` = fp16 products on GPU, float32 on CPU (see :func:`autocast_dtype`).
    """

    sim_elements: int | None = None
    block_docs: int = BLOCK_DOCS
    block_tokens: int = BLOCK_TOKENS
    query_tokens: int = 16384
    precision: str = "auto"


def _compute_dtype(settings: SearchSettings, device: torch.device) -> torch.dtype:
    amp = autocast_dtype(settings.precision, device)
    return amp if (amp is not None and device.type == "cuda") else torch.float32


def _encode_queries(
    enc: TokenEncoder, texts: list[str], batch_size: int, max_length: int, dtype: torch.dtype
) -> _QueryTokens | torch.Tensor:
    """All queries encoded: flat real-token vectors (maxsim) or pooled ``[Q, D]`` (dot)."""
    pieces, lengths = [], []
    with torch.inference_mode():
        for batch in _batched(iter(texts), batch_size):
            q, q_mask = enc.encode(batch, max_length)
            if q_mask is None:
                pieces.append(q.float())
            else:
                pieces.append(q[q_mask].float())
                lengths.extend(q_mask.sum(dim=1).tolist())
    dim = enc.output_dim
    vecs = torch.cat(pieces) if pieces else torch.empty(0, dim, device=enc.device)
    if enc.config.scoring == "dot":
        return vecs.to(dtype)
    return _QueryTokens(vecs.to(dtype), np.asarray(lengths, dtype=np.int64))


def _doc_blocks(offsets: np.ndarray, block_docs: int, block_tokens: int) -> list[tuple[int, int]]:
    """Ranges of documents of a shard read together (at least one document each)."""
    n = len(offsets) - 1
    out, a = [], 0
    while a < n:
        b = int(np.searchsorted(offsets, offsets[a] + block_tokens, side="right")) - 1
        b = min(n, a + block_docs, max(b, a + 1))
        out.append((a, b))
        a = b
    return out


def _search_exact(
    manifest: dict[str, Any],
    index_dir: Path,
    queries: _QueryTokens | torch.Tensor,
    top: TopK,
    settings: SearchSettings,
    device: torch.device,
    dtype: torch.dtype,
    doc_chunk: int | None,
) -> None:
    """Every shard once, block by block, against all queries."""
    sim_elements = settings.sim_elements or SIM_ELEMENTS.get(device.type, SIM_ELEMENTS["cpu"])
    block_docs = min(settings.block_docs, doc_chunk or settings.block_docs)
    first = 0
    for shard in tqdm(manifest["shards"], desc="search shards", unit="shard"):
        name = shard["name"]
        if manifest["scoring"] == "dot":
            vec = NpyRows(index_dir / f"{name}.vec.npy")
            for a in range(0, len(vec), block_docs):
                d = torch.from_numpy(vec.read(a, a + block_docs)).to(device, dtype)
                top.update(queries @ d.T, first + a)
        else:
            assert isinstance(queries, _QueryTokens)
            emb = NpyRows(index_dir / f"{name}.emb.npy")
            offsets = np.load(index_dir / f"{name}.offsets.npy")
            lengths = np.diff(offsets)
            q_chunks = queries.chunks(settings.query_tokens)
            for a, b in _doc_blocks(offsets, block_docs, settings.block_tokens):
                d = torch.from_numpy(emb.read(int(offsets[a]), int(offsets[b]))).to(device, dtype)
                for q0, q1 in q_chunks:
                    t0, t1 = queries.token_range(q0, q1)
                    scores = maxsim_flat(
                        queries.vectors[t0:t1], queries.lengths[q0:q1], d, lengths[a:b],
                        sim_elements,
                    )  # fmt: skip
                    top.update(scores, first + a, slice(q0, q1))
        first += int(shard["num_docs"])


# ------------------------------------------------------------------ candidate stage (faiss)


def _faiss_module() -> Any:
    try:
        import faiss
    except ImportError:
        raise ConfigError(
            "dense.backend",
            "backend 'faiss_ivf' needs the faiss package (pip install faiss-cpu==1.15.1, or "
            "faiss-gpu on a cluster); use backend 'exact' otherwise",
        ) from None
    return faiss


def default_nlist(n_vectors: int) -> int:
    """About ``4 sqrt(N)`` inverted lists, a power of two, at least 1 and at most ``N / 39``
    (faiss warns below 39 training points per centroid)."""
    target = 4 * np.sqrt(max(1, n_vectors))
    nlist = 1 << max(0, round(np.log2(target)))
    return int(max(1, min(nlist, n_vectors // 39 or 1)))


def _vector_files(manifest: dict[str, Any], index_dir: Path) -> list[NpyRows]:
    suffix = "emb" if manifest["scoring"] == "maxsim" else "vec"
    return [NpyRows(index_dir / f"{s['name']}.{suffix}.npy") for s in manifest["shards"]]


def build_ann_index(
    index_dir: str | Path, out_dir: str | Path, settings: dict[str, Any] | AnnSettings | None = None
) -> dict[str, Any]:
    """Build the candidate stage's faiss IVF index over every vector of a dense index.

    The ids in the faiss index are global vector positions (token rows of all shards in
    order, or documents for ``dot``). Written atomically into ``out_dir`` (``index.faiss``
    and ``ann.json``); returns the metadata.
    """
    faiss = _faiss_module()
    cfg = AnnSettings.from_dict(settings)
    index_dir, out_dir = Path(index_dir), Path(out_dir)
    manifest = load_manifest(index_dir)
    files = _vector_files(manifest, index_dir)
    sizes = np.array([len(f) for f in files], dtype=np.int64)
    total = int(sizes.sum())
    if total == 0:
        raise InputError(index_dir, "the dense index holds no vectors")
    dim = int(manifest["dim"])
    nlist = int(cfg.nlist or default_nlist(total))
    if nlist > total:
        raise ConfigError("dense.ann.nlist", f"{nlist} lists for only {total} vectors")
    if cfg.pq_m is not None and dim % int(cfg.pq_m):
        raise ConfigError("dense.ann.pq_m", f"must divide the dimension {dim}")
    spec = f"IVF{nlist},{'Flat' if cfg.pq_m is None else f'PQ{int(cfg.pq_m)}'}"
    rng = np.random.default_rng(cfg.seed)
    n_train = min(total, max(int(cfg.train_vectors), nlist))
    sample = np.sort(rng.choice(total, size=n_train, replace=False))
    starts = np.concatenate([[0], np.cumsum(sizes)])
    train = np.concatenate(
        [
            files[s].gather([(int(i - starts[s]), int(i - starts[s] + 1)) for i in part])
            for s in range(len(files))
            if len(part := sample[(sample >= starts[s]) & (sample < starts[s + 1])])
        ]
    ).astype(np.float32)
    index = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
    logger.info("training %s on %d of %d vectors", spec, n_train, total)
    index.train(train)
    del train
    for s, rows in enumerate(files):
        for a in range(0, len(rows), BLOCK_TOKENS):
            x = rows.read(a, a + BLOCK_TOKENS).astype(np.float32)
            ids = np.arange(starts[s] + a, starts[s] + a + len(x), dtype=np.int64)
            index.add_with_ids(x, ids)
    meta = {
        "format": ANN_FORMAT,
        "factory": spec,
        "metric": "inner_product",
        "nlist": nlist,
        "pq_m": cfg.pq_m,
        "train_vectors": n_train,
        "ntotal": int(index.ntotal),
        "seed": cfg.seed,
        "faiss": getattr(faiss, "__version__", "unknown"),
        "index_dir": str(index_dir),
        "num_docs": manifest["num_docs"],
        "scoring": manifest["scoring"],
    }
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        faiss.write_index(index, str(tmp / ANN_INDEX))
        (tmp / ANN_META).write_text(json.dumps(meta, indent=2) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("ANN index %s: %d vectors, %s", out_dir, index.ntotal, spec)
    return meta


def load_ann_index(ann_dir: str | Path, manifest: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Read the faiss index of :func:`build_ann_index` and check it belongs to the index."""
    faiss = _faiss_module()
    ann_dir = Path(ann_dir)
    meta_path = ann_dir / ANN_META
    if not meta_path.is_file():
        raise InputError(ann_dir, f"not an ANN index (no {ANN_META}); run build_ann_index")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != ANN_FORMAT:
        raise InputError(meta_path, f"unknown ANN format {meta.get('format')!r}")
    if meta["num_docs"] != manifest["num_docs"] or meta["scoring"] != manifest["scoring"]:
        raise InputError(
            meta_path,
            "built for another dense index (documents or scoring differ); rebuild it",
        )
    return faiss.read_index(str(ann_dir / ANN_INDEX)), meta


def _search_candidates(
    manifest: dict[str, Any],
    index_dir: Path,
    ann_dir: Path,
    queries: _QueryTokens | torch.Tensor,
    top: TopK,
    ann: AnnSettings,
    settings: SearchSettings,
    device: torch.device,
    dtype: torch.dtype,
) -> None:
    """Candidates from the faiss index, then exact scores of each query's candidates."""
    faiss = _faiss_module()
    index, _ = load_ann_index(ann_dir, manifest)
    faiss.extract_index_ivf(index).nprobe = int(ann.nprobe)
    sim_elements = settings.sim_elements or SIM_ELEMENTS.get(device.type, SIM_ELEMENTS["cpu"])
    shards = manifest["shards"]
    doc_starts = np.concatenate([[0], np.cumsum([int(s["num_docs"]) for s in shards])])
    maxsim = manifest["scoring"] == "maxsim"
    if maxsim:
        assert isinstance(queries, _QueryTokens)
        offsets = [np.load(index_dir / f"{s['name']}.offsets.npy") for s in shards]
        # global token position -> global document position
        token_starts = np.concatenate([[0], np.cumsum([int(o[-1]) for o in offsets])])
        doc_token_starts = np.concatenate(
            [o[:-1] + token_starts[i] for i, o in enumerate(offsets)] + [token_starts[-1:]]
        )
        emb = [NpyRows(index_dir / f"{s['name']}.emb.npy") for s in shards]
        n_queries = len(queries.lengths)
    else:
        vec = [NpyRows(index_dir / f"{s['name']}.vec.npy") for s in shards]
        n_queries = queries.shape[0]
    for q0 in tqdm(range(0, n_queries, ann.query_chunk), desc="candidates", unit="chunk"):
        q1 = min(n_queries, q0 + ann.query_chunk)
        if maxsim:
            t0, t1 = queries.token_range(q0, q1)
            qv = queries.vectors[t0:t1]
        else:
            qv = queries[q0:q1]
        k = min(int(ann.k_tokens), int(index.ntotal))
        _, hits = index.search(np.ascontiguousarray(qv.float().cpu().numpy()), k)
        if maxsim:
            owner = np.repeat(np.arange(q1 - q0), queries.lengths[q0:q1])
            valid = hits >= 0
            docs = np.searchsorted(doc_token_starts, hits[valid], side="right") - 1
            pairs = np.unique(
                np.stack([np.broadcast_to(owner[:, None], hits.shape)[valid], docs]), axis=1
            )
        else:
            valid = hits >= 0
            rows = np.broadcast_to(np.arange(q1 - q0)[:, None], hits.shape)[valid]
            pairs = np.unique(np.stack([rows, hits[valid]]), axis=1)
        for s in range(len(shards)):
            lo, hi = doc_starts[s], doc_starts[s + 1]
            inside = (pairs[1] >= lo) & (pairs[1] < hi)
            if not inside.any():
                continue
            local = pairs[1][inside] - lo
            union = np.unique(local)
            cand = torch.full((q1 - q0, len(union)), False)
            cand[
                torch.from_numpy(pairs[0][inside]), torch.from_numpy(np.searchsorted(union, local))
            ] = True
            if maxsim:
                o = offsets[s]
                ranges = [(int(o[j]), int(o[j + 1])) for j in union]
                d = torch.from_numpy(emb[s].gather(ranges)).to(device, dtype)
                scores = maxsim_flat(
                    qv, queries.lengths[q0:q1], d, (o[union + 1] - o[union]), sim_elements
                )
            else:
                ranges = [(int(j), int(j) + 1) for j in union]
                d = torch.from_numpy(vec[s].gather(ranges)).to(device, dtype)
                scores = (qv @ d.T).float()
            scores = scores.masked_fill(~cand.to(scores.device), float("-inf"))
            top.update(scores, torch.from_numpy(union + lo), slice(q0, q1))


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
    doc_chunk: int | None = None,
    device: str = "auto",
    encoder: TokenEncoder | None = None,
    ann_dir: str | Path | None = None,
    ann: dict[str, Any] | AnnSettings | None = None,
    settings: SearchSettings | None = None,
) -> int:
    """Encode the queries, score them against the index, write a TREC run; return #lines.

    The query encoder may differ from the document encoder (OPTICAL's student encodes
    queries, the teacher's index stays); its scoring and dimension must match the index.
    Run lines: ``qid Q0 docid rank score tag``; rank from 1, ties in document order.
    ``backend``: ``exact`` or ``faiss_ivf`` (needs ``ann_dir`` from :func:`build_ann_index`
    and the ``ann`` search settings). ``doc_chunk``: at most this many documents per block.
    """
    if backend not in BACKENDS:
        raise ConfigError("dense.backend", f"must be one of {BACKENDS}, got {backend!r}")
    if backend == "faiss_ivf":
        _faiss_module()
        if ann_dir is None:
            raise ConfigError("dense.backend", "faiss_ivf needs the ANN index (ann_dir)")
    if k < 1:
        raise ConfigError("dense.k", "must be >= 1")
    settings = settings or SearchSettings()
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
    dtype = _compute_dtype(settings, dev)
    queries = read_queries(queries_tsv, strict=True)
    max_length = max_length or enc.config.query_max_length
    encoded = _encode_queries(enc, [t for _, t in queries], batch_size, max_length, dtype)
    top = TopK(len(queries), k, dev)
    with torch.inference_mode():
        if backend == "exact":
            _search_exact(manifest, index_dir, encoded, top, settings, dev, dtype, doc_chunk)
        else:
            _search_candidates(
                manifest, index_dir, Path(ann_dir), encoded, top, AnnSettings.from_dict(ann),  # type: ignore[arg-type]
                settings, dev, dtype,
            )  # fmt: skip
    scores_all = top.scores.cpu()
    index_all = top.index.cpu()
    # resolve global document positions to ids, one shard's id list at a time
    doc_ids = np.full(index_all.shape, None, dtype=object)
    flat = index_all.numpy()
    start = 0
    for shard in manifest["shards"]:
        inside = (flat >= start) & (flat < start + int(shard["num_docs"]))
        if inside.any():
            ids = json.loads((index_dir / f"{shard['name']}.ids.json").read_text())
            doc_ids[inside] = [ids[j - start] for j in flat[inside].tolist()]
        start += int(shard["num_docs"])
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
