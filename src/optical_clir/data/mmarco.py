"""Training triples (query, positive passage, negative passage) for the teacher (mMARCO/MS MARCO).

Sources (``source_cfg["source"]``, kind detected or set with ``source_cfg["kind"]``):

- ``tsv``: a local file in the ``triples.train`` format ``query<TAB>pos<TAB>neg`` (``.gz`` ok);
- ``url``: the same format over HTTP(S), streamed, retried on network errors (resuming after
  the lines already read);
- ``hf``: a Hugging Face ``datasets`` id (``hf:<id>``), loaded with ``streaming=True``; the
  column names are configurable (``columns``);
- ``ir_datasets``: an ``ir_datasets`` id (``irds:mmarco/v2/en/train``): ``docpairs_iter()``
  joined with the queries and the docs store. ``ir_datasets`` is pinned in pyproject.toml and
  imported only when this source is used.

:func:`prepare_triples` caps the stream at ``max_triples`` and writes the TSV atomically
(default cache location ``results/data/mmarco/triples.tsv``).
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path
from typing import Any

import numpy as np

from optical_clir.errors import ConfigError, InputError

logger = logging.getLogger(__name__)

Triple = tuple[str, str, str]
DEFAULT_CACHE = Path("results/data/mmarco/triples.tsv")
KINDS = ("auto", "tsv", "url", "hf", "ir_datasets")


@dataclass
class TripleSourceConfig:
    """Where training triples come from.

    source: local path, ``http(s)://`` URL, ``hf:<dataset id>`` or ``irds:<ir_datasets id>``.
    kind: ``auto`` (from the form of ``source``) or one of tsv|url|hf|ir_datasets.
    max_triples: stop after this many triples (None: all).
    hf_config / hf_split / hf_kwargs: passed to ``datasets.load_dataset`` (e.g.
        ``hf_kwargs: {data_files: ...}`` for ``hf:json``).
    columns: the HF column names of query, positive and negative.
    retries / timeout_s / backoff_s: for URLs.
    """

    source: str
    kind: str = "auto"
    max_triples: int | None = None
    hf_config: str | None = None
    hf_split: str = "train"
    hf_kwargs: dict[str, Any] = field(default_factory=dict)
    columns: dict[str, str] = field(
        default_factory=lambda: {"query": "query", "positive": "positive", "negative": "negative"}
    )
    retries: int = 5
    timeout_s: float = 60.0
    backoff_s: float = 1.0

    @classmethod
    def from_dict(cls, cfg: dict[str, Any] | TripleSourceConfig) -> TripleSourceConfig:
        """Build from a config mapping, rejecting unknown keys."""
        if isinstance(cfg, TripleSourceConfig):
            return cfg
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ConfigError(f"triples.{unknown[0]}", f"unknown key; known: {sorted(known)}")
        if "source" not in cfg:
            raise ConfigError("triples.source", "missing")
        out = cls(**cfg)
        if out.kind not in KINDS:
            raise ConfigError("triples.kind", f"must be one of {KINDS}, got {out.kind!r}")
        if out.max_triples is not None and int(out.max_triples) < 0:
            raise ConfigError("triples.max_triples", "must be >= 0 or null")
        for key in ("query", "positive", "negative"):
            if key not in out.columns:
                raise ConfigError(f"triples.columns.{key}", "missing")
        return out


def detect_kind(source: str) -> str:
    """The source kind from its form: URL, ``hf:``/``irds:`` prefix, or an existing file."""
    if source.startswith(("http://", "https://")):
        return "url"
    if source.startswith("hf:"):
        return "hf"
    if source.startswith(("irds:", "ir_datasets:")):
        return "ir_datasets"
    if Path(source).exists():
        return "tsv"
    raise ConfigError(
        "triples.source",
        f"{source!r} is not an existing file, an http(s) URL, 'hf:<id>' or 'irds:<id>'; "
        "set triples.kind to say what it is",
    )


def _strip_prefix(source: str) -> str:
    for prefix in ("hf:", "irds:", "ir_datasets:"):
        if source.startswith(prefix):
            return source[len(prefix) :]
    return source


def parse_triple_line(raw: bytes | str, path: str | Path, line_no: int) -> Triple:
    """One ``query<TAB>pos<TAB>neg`` line -> triple, or :class:`InputError` saying what is wrong."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(path, f"not valid UTF-8 ({exc.reason})", line=line_no) from None
    text = raw.rstrip("\r\n")
    fields = text.split("\t")
    if len(fields) != 3:
        raise InputError(
            path,
            f"expected 3 tab-separated fields (query, positive, negative), got {len(fields)}",
            line=line_no,
        )
    names = ("query", "positive", "negative")
    for name, value in zip(names, fields, strict=True):
        if not value.strip():
            raise InputError(path, f"empty {name} field", line=line_no)
    return fields[0], fields[1], fields[2]


def _open_binary(path: Path) -> io.BufferedIOBase:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def iter_tsv_triples(path: str | Path) -> Iterator[Triple]:
    """Triples from a local ``triples.train``-format TSV (optionally gzipped)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    with _open_binary(path) as fh:
        for line_no, raw in enumerate(fh, start=1):
            yield parse_triple_line(raw, path, line_no)


def iter_url_triples(
    url: str, retries: int = 5, timeout_s: float = 60.0, backoff_s: float = 1.0
) -> Iterator[Triple]:
    """Stream triples from an HTTP(S) TSV (``.gz`` decompressed on the fly).

    On a network error (connection, timeout, truncated body, HTTP 5xx/429) the request is
    retried up to ``retries`` times with exponential backoff, skipping the lines already
    yielded, so a flaky connection never duplicates or drops a triple.
    """
    done = 0
    failures = 0
    while True:
        try:
            request = urllib.request.Request(url, headers={"User-Agent": "optical-clir"})
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                stream: Any = response
                if url.split("?")[0].endswith(".gz"):
                    stream = gzip.GzipFile(fileobj=response)
                for line_no, raw in enumerate(stream, start=1):
                    if line_no <= done:
                        continue
                    triple = parse_triple_line(raw, url, line_no)
                    done = line_no
                    yield triple
            return
        except urllib.error.HTTPError as exc:
            if exc.code < 500 and exc.code != 429:
                raise InputError(url, f"HTTP {exc.code} {exc.reason}") from None
            error: Exception = exc
        except (urllib.error.URLError, HTTPException, TimeoutError, ConnectionError, EOFError) as e:
            error = e
        except OSError as e:  # socket errors, gzip on truncated data
            error = e
        failures += 1
        if failures > retries:
            raise InputError(url, f"download failed after {retries} retries: {error}") from error
        wait = backoff_s * 2 ** (failures - 1)
        logger.warning("%s: %s; retry %d/%d in %.1fs", url, error, failures, retries, wait)
        time.sleep(wait)


def iter_hf_triples(cfg: TripleSourceConfig) -> Iterator[Triple]:
    """Triples from a Hugging Face dataset, streamed; columns named by ``cfg.columns``."""
    import datasets

    name = _strip_prefix(cfg.source)
    ds = datasets.load_dataset(
        name, cfg.hf_config, split=cfg.hf_split, streaming=True, **cfg.hf_kwargs
    )
    cols = cfg.columns
    for i, row in enumerate(ds, start=1):
        try:
            triple = (
                str(row[cols["query"]]),
                str(row[cols["positive"]]),
                str(row[cols["negative"]]),
            )
        except KeyError as exc:
            raise InputError(
                cfg.source, f"row has no column {exc}; columns are {sorted(row)}", line=i
            ) from None
        yield triple


def iter_ir_datasets_triples(dataset_id: str) -> Iterator[Triple]:
    """Triples from ``ir_datasets``: ``docpairs_iter()`` (query_id, doc_id_a = positive,
    doc_id_b = negative) joined with ``queries_iter()`` and ``docs_store()``.

    The query table is held in memory (mMARCO train: ~800k queries); passages are looked up
    in the docs store. Needs ``pip install ir_datasets`` (not a dependency of this project).
    """
    try:
        import ir_datasets
    except ImportError:
        raise ConfigError(
            "triples.source",
            "ir_datasets is not installed (optional); pip install ir_datasets, or use a TSV, "
            "URL or hf: source",
        ) from None
    ds = ir_datasets.load(_strip_prefix(dataset_id))
    queries = {q.query_id: q.text for q in ds.queries_iter()}
    store = ds.docs_store()
    for pair in ds.docpairs_iter():
        pos = store.get(pair.doc_id_a)
        neg = store.get(pair.doc_id_b)
        yield queries[pair.query_id], pos.text, neg.text


def iter_triples(source_cfg: dict[str, Any] | TripleSourceConfig) -> Iterator[Triple]:
    """Triples from the configured source, capped at ``max_triples``."""
    cfg = TripleSourceConfig.from_dict(source_cfg)
    kind = detect_kind(cfg.source) if cfg.kind == "auto" else cfg.kind
    stream: Iterable[Triple]
    if kind == "tsv":
        stream = iter_tsv_triples(cfg.source)
    elif kind == "url":
        stream = iter_url_triples(cfg.source, cfg.retries, cfg.timeout_s, cfg.backoff_s)
    elif kind == "hf":
        stream = iter_hf_triples(cfg)
    else:
        stream = iter_ir_datasets_triples(cfg.source)
    limit = cfg.max_triples
    if limit == 0:
        return
    for n, triple in enumerate(stream, start=1):
        yield triple
        if limit is not None and n >= limit:
            return


def _clean(text: str) -> str:
    """Tabs and newlines inside a passage would break the TSV; replace them with spaces."""
    return " ".join(text.replace("\t", " ").splitlines()).strip()


def prepare_triples(
    source_cfg: dict[str, Any] | TripleSourceConfig, out_path: str | Path = DEFAULT_CACHE
) -> int:
    """Write the (capped) triples to ``out_path`` as TSV, atomically; return how many.

    The file is written to a temporary name in the same folder and renamed into place, so an
    interrupted run never leaves a truncated cache behind.
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    n = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            for q, pos, neg in iter_triples(source_cfg):
                q, pos, neg = _clean(q), _clean(pos), _clean(neg)
                if not (q and pos and neg):
                    logger.warning("skipping a triple with an empty field after cleaning")
                    continue
                out.write(f"{q}\t{pos}\t{neg}\n")
                n += 1
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp_name, out_path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    logger.info("wrote %d triples to %s", n, out_path)
    return n


class TriplesFile(Sequence[Triple]):
    """Random access to a local triples TSV through an index of line offsets.

    Holds 8 bytes per line in memory instead of the texts, so a training loop can draw a
    seeded permutation over tens of millions of triples. Lines are validated when indexed.
    """

    def __init__(self, path: str | Path, max_triples: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(self.path, "file not found")
        offsets: list[int] = []
        pos = 0
        with open(self.path, "rb") as fh:
            for line_no, raw in enumerate(fh, start=1):
                if max_triples is not None and len(offsets) >= max_triples:
                    break
                parse_triple_line(raw, self.path, line_no)
                offsets.append(pos)
                pos += len(raw)
        if not offsets:
            raise InputError(self.path, "no triples in file")
        self._offsets = np.asarray(offsets, dtype=np.int64)
        self._fh: io.BufferedReader | None = None
        self._pid = -1

    def __len__(self) -> int:
        return int(self._offsets.shape[0])

    def _handle(self) -> io.BufferedReader:
        if self._fh is None or self._pid != os.getpid():  # reopen after fork
            self._fh = open(self.path, "rb")  # noqa: SIM115
            self._pid = os.getpid()
        return self._fh

    def __getitem__(self, index: int) -> Triple:  # type: ignore[override]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        fh = self._handle()
        fh.seek(int(self._offsets[index]))
        return parse_triple_line(fh.readline(), self.path, index + 1)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_fh"] = None
        return state
