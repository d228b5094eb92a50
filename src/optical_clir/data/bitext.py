"""The bitext stage: read L-English parallel text, clean it, sample it, split it into train/dev.

The distillation (OPTICAL's second stage) only needs sentence pairs ``(source, english)``
where source is the low-resource language L. :func:`prepare_bitext` reads them from one
source, cleans them (:func:`clean_bitext`), draws a seeded sample and a dev split
(:func:`sample_and_split`) and writes, atomically, into ``out_dir``:

- ``train.tsv``, ``dev.tsv``: ``source<TAB>english``, no header, whitespace-normalised;
- ``train.align``, ``dev.align``: only when the source has gold word alignments (Pharaoh
  ``i-j`` lines, line-parallel to the TSVs), so the OT alignment accuracy can be measured on
  dev; every pair carries its alignment line (:class:`Pair` ``.align``) through cleaning and
  sampling, so the files stay line-parallel by construction;
- ``stats.json``: what was read, what was dropped and why, what was sampled.

Configuration (workflow config ``languages.<lang>.bitext``)::

    source:                 # one of the kinds below, chosen by `kind` (required)
      kind: local_tsv       # path: source<TAB>english TSV (.gz ok); align: Pharaoh file (optional)
      kind: moses           # src, en: one sentence per line (.gz ok); align: optional
      kind: opus            # corpus, version, src_lang, en_lang (default en); the Moses zip
                            #   OPUS publishes is downloaded to cache_dir (default
                            #   results/data/bitext/opus); url: override of URL_TEMPLATE
                            #   (may use {corpus} {version} {l1} {l2}); sha256 / md5 (optional
                            #   checksums of the zip), retries (3), timeout (60)
      kind: huggingface     # name, config (null), split (train), src_lang, en_lang (en),
                            #   field (translation: a dict column keyed by language) or
                            #   src_column + en_column (two text columns); data_files,
                            #   revision (optional, passed to datasets.load_dataset)
      limit: null           # any kind: read at most this many pairs (null: all)
    clean:
      max_ratio: 3.0        # drop if max(tokens)/min(tokens) of the two sides exceeds this
      min_tokens: 1         # drop if either side has fewer whitespace tokens
      max_tokens: 100       # drop if either side has more whitespace tokens
      drop_identical: true  # drop untranslated copies (both sides equal)
      dedup: true           # drop exact duplicate pairs (after whitespace normalisation)
      drop_eval_queries: true  # drop pairs containing an evaluation query (when queries given)
    sample:
      n: null               # pairs to sample without replacement (null or more than kept: all)
      dev: 500              # dev pairs: a count, or a fraction of the sample if below 1
      seed: 13

Cleaning reasons, checked in this order (a pair counts under the first that applies):
``empty``, ``identical``, ``too_short``, ``too_long``, ``ratio``, ``eval_query``,
``duplicate``. Duplicates are checked last, so only copies of a *kept* pair count as
duplicates. Thresholds and the order are our choice, not the paper's.
"""

from __future__ import annotations

import io
import json
import logging
import random
import re
import unicodedata
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import islice
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from optical_clir.data.download import download, file_checksum
from optical_clir.errors import ConfigError, InputError
from optical_clir.io import atomic_path, open_text

logger = logging.getLogger(__name__)

__all__ = [
    "CLEAN_DEFAULTS",
    "DROP_REASONS",
    "KINDS",
    "SAMPLE_DEFAULTS",
    "URL_TEMPLATE",
    "Pair",
    "clean_bitext",
    "normalise_whitespace",
    "opus_download",
    "opus_url",
    "prepare_bitext",
    "read_huggingface",
    "read_moses",
    "read_opus_zip",
    "read_query_texts",
    "read_source",
    "read_tsv",
    "sample_and_split",
]

KINDS = ("local_tsv", "moses", "opus", "huggingface")
URL_TEMPLATE = "https://object.pouta.csc.fi/OPUS-{corpus}/{version}/moses/{l1}-{l2}.txt.zip"
DEFAULT_OPUS_CACHE = Path("results/data/bitext/opus")
DROP_REASONS = (
    "empty",
    "identical",
    "too_short",
    "too_long",
    "ratio",
    "eval_query",
    "duplicate",
)
# Defaults for library use; the workflow's are the schema's (languages.<lang>.bitext.clean
# and .sample), which a test keeps equal to these. The workflow's sampling seed is the
# top-level seed.
CLEAN_DEFAULTS: dict[str, Any] = {
    "max_ratio": 3.0,
    "min_tokens": 1,
    "max_tokens": 100,
    "drop_identical": True,
    "dedup": True,
    "drop_eval_queries": True,
}
SAMPLE_DEFAULTS: dict[str, Any] = {"n": None, "dev": 500, "seed": 13}
_PHARAOH = re.compile(r"(\d+)[-p](\d+)")
T = TypeVar("T")
U = TypeVar("U")


class Pair(NamedTuple):
    """One sentence pair; ``align`` is its Pharaoh alignment line, None when there is none."""

    src: str
    en: str
    align: str | None = None


def normalise_whitespace(text: str) -> str:
    """Collapse every run of whitespace (tabs, newlines, NBSP, ...) to one space and strip."""
    return " ".join(text.split())


# ---------------------------------------------------------------------------------- readers


def _parallel(
    a: Iterable[T], a_name: str, b: Iterable[U], b_name: str
) -> Iterator[tuple[int, T, U]]:
    """``(1-based line, item of a, item of b)``; unequal lengths are an InputError naming both."""
    ia, ib = iter(a), iter(b)
    n = 0
    end = object()
    while True:
        xa, xb = next(ia, end), next(ib, end)
        if xa is end or xb is end:
            if xa is end and xb is end:
                return
            na = n + (0 if xa is end else 1 + sum(1 for _ in ia))
            nb = n + (0 if xb is end else 1 + sum(1 for _ in ib))
            raise InputError(
                a_name,
                f"has {na} lines but {b_name} has {nb}: the two files must be line-parallel",
            )
        n += 1
        yield n, xa, xb  # type: ignore[misc]


def _lines(f: Iterable[str]) -> Iterator[str]:
    """Lines without their line ending."""
    return (line.rstrip("\r\n") for line in f)


def _check_alignment(align: str, pair: Pair, path: str, line: int) -> str:
    """Validate a Pharaoh line against the pair's word counts; return it whitespace-normalised."""
    align = normalise_whitespace(align)
    n_src, n_en = len(pair.src.split()), len(pair.en.split())
    for token in align.split():
        match = _PHARAOH.fullmatch(token)
        if match is None:
            raise InputError(path, f"'{token}' is not a Pharaoh alignment pair (i-j)", line=line)
        i, j = int(match.group(1)), int(match.group(2))
        if i >= n_src or j >= n_en:
            raise InputError(
                path,
                f"alignment {token} is outside the sentence pair ({n_src} source, {n_en} English "
                "words): is the alignment file line-parallel to the bitext?",
                line=line,
            )
    return align


def _with_alignments(
    pairs: Iterator[Pair], src_name: str, align_path: str | Path
) -> Iterator[Pair]:
    """Attach the lines of ``align_path`` to ``pairs`` (line-parallel, validated)."""
    with open_text(align_path) as f:
        for line, pair, align in _parallel(pairs, src_name, _lines(f), str(align_path)):
            yield pair._replace(align=_check_alignment(align, pair, str(align_path), line))


def read_tsv(path: str | Path, align: str | Path | None = None) -> Iterator[Pair]:
    """Pairs from a ``source<TAB>english`` TSV; a line without exactly 2 fields is an InputError."""

    def pairs() -> Iterator[Pair]:
        with open_text(path) as f:
            for line_no, line in enumerate(f, start=1):
                fields = line.rstrip("\r\n").split("\t")
                if len(fields) != 2:
                    raise InputError(
                        path,
                        f"expected 2 tab-separated fields (source<TAB>english), found {len(fields)}",
                        line=line_no,
                    )
                yield Pair(fields[0], fields[1])

    return pairs() if align is None else _with_alignments(pairs(), str(path), align)


def read_moses(
    src_path: str | Path, en_path: str | Path, align: str | Path | None = None
) -> Iterator[Pair]:
    """Pairs from Moses-style parallel files (one sentence per line, ``.gz`` ok)."""

    def pairs() -> Iterator[Pair]:
        with open_text(src_path) as fs, open_text(en_path) as fe:
            for _, src, en in _parallel(_lines(fs), str(src_path), _lines(fe), str(en_path)):
                yield Pair(src, en)

    return pairs() if align is None else _with_alignments(pairs(), str(src_path), align)


def _opus_pair(src_lang: str, en_lang: str) -> tuple[str, str]:
    """OPUS names a language pair in alphabetical order (``en-sw``, ``af-en``)."""
    l1, l2 = sorted((src_lang, en_lang))
    return l1, l2


def opus_url(
    corpus: str, version: str, src_lang: str, en_lang: str = "en", template: str = URL_TEMPLATE
) -> str:
    """The URL of the Moses zip OPUS publishes for ``corpus/version`` and the language pair."""
    l1, l2 = _opus_pair(src_lang, en_lang)
    return template.format(corpus=corpus, version=version, l1=l1, l2=l2)


def opus_download(source_cfg: Mapping[str, Any]) -> tuple[str, Path]:
    """The URL of an ``opus`` source's Moses zip and the cache file it is downloaded to."""
    corpus = _require(source_cfg, "corpus", "opus")
    version = _require(source_cfg, "version", "opus")
    src_lang = _require(source_cfg, "src_lang", "opus")
    en_lang = source_cfg.get("en_lang", "en")
    url = opus_url(corpus, version, src_lang, en_lang, source_cfg.get("url") or URL_TEMPLATE)
    l1, l2 = _opus_pair(src_lang, en_lang)
    cache = Path(source_cfg.get("cache_dir") or DEFAULT_OPUS_CACHE)
    return url, cache / f"{corpus}-{version}.{l1}-{l2}.txt.zip"


def _zip_member(zf: zipfile.ZipFile, zip_path: Path, corpus: str, pair: str, lang: str) -> str:
    """The member ``{corpus}.{pair}.{lang}``, matched without case or folder if need be."""
    wanted = f"{corpus}.{pair}.{lang}"
    names = [n for n in zf.namelist() if not n.endswith("/")]
    if wanted in names:
        return wanted
    loose = [n for n in names if n.rsplit("/", 1)[-1].lower() == wanted.lower()]
    if not loose:
        loose = [n for n in names if n.endswith(f".{pair}.{lang}")]
    if len(loose) == 1:
        if loose[0].rsplit("/", 1)[-1] != wanted:
            logger.warning("%s: no member %s, using %s", zip_path, wanted, loose[0])
        return loose[0]
    raise InputError(
        zip_path,
        f"no single member '{wanted}' in the OPUS zip (members: {', '.join(sorted(names))})",
    )


def read_opus_zip(
    zip_path: str | Path, corpus: str, src_lang: str, en_lang: str = "en"
) -> Iterator[Pair]:
    """Pairs from an OPUS Moses zip: members ``{corpus}.{l1}-{l2}.{l1}`` and ``.{l2}``."""
    zip_path = Path(zip_path)
    l1, l2 = _opus_pair(src_lang, en_lang)
    pair = f"{l1}-{l2}"
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as error:
        raise InputError(zip_path, f"not a readable zip file: {error}") from error
    src_member = _zip_member(zf, zip_path, corpus, pair, src_lang)
    en_member = _zip_member(zf, zip_path, corpus, pair, en_lang)
    logger.info("%s: reading %s (source) and %s (English)", zip_path, src_member, en_member)

    def pairs() -> Iterator[Pair]:
        with (
            zf,
            io.TextIOWrapper(zf.open(src_member), encoding="utf-8") as fs,
            io.TextIOWrapper(zf.open(en_member), encoding="utf-8") as fe,
        ):
            for _, src, en in _parallel(
                _lines(fs), f"{zip_path}!{src_member}", _lines(fe), f"{zip_path}!{en_member}"
            ):
                yield Pair(src, en)

    return pairs()


def read_huggingface(
    name: str,
    src_lang: str,
    en_lang: str = "en",
    config: str | None = None,
    split: str = "train",
    field: str | None = "translation",
    src_column: str | None = None,
    en_column: str | None = None,
    **load_kwargs: Any,
) -> Iterator[Pair]:
    """Pairs from a Hugging Face dataset, streamed: a ``field`` dict keyed by language, or two columns.

    ``datasets`` is imported only here (it is slow to import and needs no network until used).
    """
    import datasets  # lazy: only this source kind needs it

    two_columns = src_column is not None or en_column is not None
    if two_columns and (src_column is None or en_column is None):
        raise ConfigError("bitext.source.src_column", "give both src_column and en_column")
    logger.info("loading Hugging Face dataset %s (config %s, split %s)", name, config, split)
    ds = datasets.load_dataset(name, config, split=split, streaming=True, **load_kwargs)

    def pairs() -> Iterator[Pair]:
        for row_no, row in enumerate(ds, start=1):
            try:
                if two_columns:
                    src, en = row[src_column], row[en_column]
                else:
                    record = row[field]
                    src, en = record[src_lang], record[en_lang]
            except (KeyError, TypeError) as error:
                raise InputError(
                    name,
                    f"row has no {error} (columns: {', '.join(row)}); set field or "
                    "src_column/en_column in the bitext source config",
                    line=row_no,
                ) from error
            yield Pair("" if src is None else str(src), "" if en is None else str(en))

    return pairs()


def _require(cfg: Mapping[str, Any], key: str, kind: str) -> Any:
    """A required source key, or a ConfigError saying which kind needs it."""
    if cfg.get(key) in (None, ""):
        raise ConfigError(f"bitext.source.{key}", f"required for source kind '{kind}'")
    return cfg[key]


def read_source(source_cfg: Mapping[str, Any]) -> tuple[Iterator[Pair], dict[str, Any]]:
    """Open the configured source; return its pairs and a description for ``stats.json``."""
    kind = source_cfg.get("kind")
    if kind not in KINDS:
        raise ConfigError("bitext.source.kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
    align = source_cfg.get("align")
    if align is not None and kind not in ("local_tsv", "moses"):
        raise ConfigError("bitext.source.align", f"not supported for source kind '{kind}'")
    info: dict[str, Any] = {"kind": kind}
    if kind == "local_tsv":
        path = _require(source_cfg, "path", kind)
        pairs = read_tsv(path, align)
        info.update(path=str(path))
    elif kind == "moses":
        src, en = _require(source_cfg, "src", kind), _require(source_cfg, "en", kind)
        pairs = read_moses(src, en, align)
        info.update(src=str(src), en=str(en))
    elif kind == "opus":
        corpus, version = source_cfg["corpus"], source_cfg["version"]
        src_lang, en_lang = source_cfg["src_lang"], source_cfg.get("en_lang", "en")
        url, zip_dest = opus_download(source_cfg)
        zip_path = download(
            url,
            zip_dest,
            sha256=source_cfg.get("sha256"),
            md5=source_cfg.get("md5"),
            retries=int(source_cfg.get("retries", 3)),
            timeout=float(source_cfg.get("timeout", 60)),
        )
        pairs = read_opus_zip(zip_path, corpus, src_lang, en_lang)
        info.update(
            corpus=corpus,
            version=version,
            src_lang=src_lang,
            en_lang=en_lang,
            url=url,
            path=str(zip_path),
            sha256=file_checksum(zip_path),
        )
    else:
        name = _require(source_cfg, "name", kind)
        src_lang = _require(source_cfg, "src_lang", kind)
        load_kwargs = {
            k: source_cfg[k] for k in ("data_files", "revision") if source_cfg.get(k) is not None
        }
        pairs = read_huggingface(
            name,
            src_lang,
            source_cfg.get("en_lang", "en"),
            config=source_cfg.get("config"),
            split=source_cfg.get("split", "train"),
            field=source_cfg.get("field", "translation"),
            src_column=source_cfg.get("src_column"),
            en_column=source_cfg.get("en_column"),
            **load_kwargs,
        )
        info.update(
            {k: source_cfg[k] for k in ("name", "config", "split") if k in source_cfg},
            src_lang=src_lang,
        )
    if align is not None:
        info["align"] = str(align)
    limit = source_cfg.get("limit")
    if limit is not None:
        pairs = islice(pairs, int(limit))
        info["limit"] = int(limit)
    return pairs, info


# --------------------------------------------------------------------------------- cleaning


def _match_tokens(text: str) -> list[str]:
    """Tokens for query matching: NFKC, case-folded, punctuation and symbols as spaces."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return "".join(c if c.isalnum() else " " for c in text).split()


class _QueryMatcher:
    """Finds whether a text contains any query as a contiguous run of matching tokens.

    Normalised token-level matching (our choice): ``What is malaria?`` is found in
    ``... what is malaria ? ...`` whatever the tokenisation of punctuation, but ``cat`` is not
    found in ``concatenate``. Queries are indexed by their first token, so the cost per text
    is about its length, not the number of queries.
    """

    def __init__(self, queries: Iterable[str]) -> None:
        self.by_first: dict[str, set[tuple[str, ...]]] = {}
        for query in queries:
            tokens = tuple(_match_tokens(query))
            if tokens:
                self.by_first.setdefault(tokens[0], set()).add(tokens)
        self.size = sum(len(v) for v in self.by_first.values())

    def contains(self, text: str) -> bool:
        tokens = _match_tokens(text)
        for i, token in enumerate(tokens):
            for query in self.by_first.get(token, ()):
                if tuple(tokens[i : i + len(query)]) == query:
                    return True
        return False


def _clean_config(cfg: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults filled in and checked; unknown keys are a ConfigError (typos must not pass)."""
    cfg = dict(cfg or {})
    unknown = set(cfg) - set(CLEAN_DEFAULTS)
    if unknown:
        raise ConfigError(
            f"bitext.clean.{sorted(unknown)[0]}",
            f"unknown key (known: {', '.join(CLEAN_DEFAULTS)})",
        )
    out = {**CLEAN_DEFAULTS, **{k: v for k, v in cfg.items() if v is not None}}
    if float(out["max_ratio"]) < 1:
        raise ConfigError("bitext.clean.max_ratio", "must be at least 1")
    if int(out["min_tokens"]) > int(out["max_tokens"]):
        raise ConfigError("bitext.clean.min_tokens", "must not exceed max_tokens")
    return out


def clean_bitext(
    pairs: Iterable[Sequence[str | None]],
    cfg: Mapping[str, Any] | None = None,
    eval_queries: Iterable[str] | None = None,
) -> tuple[list[Pair], dict[str, Any]]:
    """Normalise whitespace and drop bad pairs; return the kept pairs and counts per reason.

    ``pairs``: ``(src, en)`` or ``(src, en, align)`` tuples (or :class:`Pair`); an alignment
    rides along unchanged. ``cfg``: see :data:`CLEAN_DEFAULTS`. ``eval_queries``: query texts
    that must not occur in the training bitext (reason ``eval_query``). Reasons are checked in
    the order of :data:`DROP_REASONS`, one reason per dropped pair.
    """
    cfg = _clean_config(cfg)
    max_ratio = float(cfg["max_ratio"])
    min_tokens, max_tokens = int(cfg["min_tokens"]), int(cfg["max_tokens"])
    matcher = _QueryMatcher(eval_queries) if eval_queries and cfg["drop_eval_queries"] else None
    dropped = dict.fromkeys(DROP_REASONS, 0)
    seen: set[tuple[str, str]] = set()
    kept: list[Pair] = []
    n_input = 0
    for item in pairs:
        n_input += 1
        src, en = normalise_whitespace(item[0] or ""), normalise_whitespace(item[1] or "")
        align = item[2] if len(item) > 2 else None
        n_src, n_en = len(src.split()), len(en.split())
        if not src or not en:
            reason = "empty"
        elif cfg["drop_identical"] and src == en:
            reason = "identical"
        elif min(n_src, n_en) < min_tokens:
            reason = "too_short"
        elif max(n_src, n_en) > max_tokens:
            reason = "too_long"
        elif max(n_src, n_en) / min(n_src, n_en) > max_ratio:
            reason = "ratio"
        elif matcher is not None and (matcher.contains(src) or matcher.contains(en)):
            reason = "eval_query"
        elif cfg["dedup"] and (src, en) in seen:
            reason = "duplicate"
        else:
            if cfg["dedup"]:
                seen.add((src, en))
            kept.append(Pair(src, en, align))
            continue
        dropped[reason] += 1
    stats = {
        "input": n_input,
        "kept": len(kept),
        "dropped_total": n_input - len(kept),
        "dropped": dropped,
        "reason_order": list(DROP_REASONS),
        "config": cfg,
        "eval_queries": matcher.size if matcher is not None else 0,
    }
    logger.info(
        "bitext cleaning: %d pairs read, %d kept, dropped %s",
        n_input,
        len(kept),
        ", ".join(f"{k} {v}" for k, v in dropped.items() if v) or "none",
    )
    return kept, stats


# --------------------------------------------------------------------------------- sampling


def sample_and_split(
    pairs: Sequence[Pair], n_sample: int | None, dev_size: int | float, seed: int
) -> tuple[list[Pair], list[Pair]]:
    """Seeded sample of ``n_sample`` pairs without replacement, then a seeded train/dev split.

    ``n_sample`` None or above ``len(pairs)``: all pairs (a warning in the latter case).
    ``dev_size``: a count, or a fraction of the sample when below 1. Both splits keep the
    corpus order of their pairs (our choice: files that diff well; training shuffles anyway).
    """
    available = len(pairs)
    if n_sample is None:
        n = available
    elif n_sample <= 0:
        raise ConfigError("bitext.sample.n", f"must be positive, got {n_sample}")
    elif n_sample > available:
        logger.warning(
            "bitext sample: %d pairs requested but only %d left after cleaning; using all",
            n_sample,
            available,
        )
        n = available
    else:
        n = int(n_sample)
    if isinstance(dev_size, float) and 0 < dev_size < 1:
        n_dev = round(n * dev_size)
    elif dev_size >= 0 and float(dev_size).is_integer():
        n_dev = int(dev_size)
    else:
        raise ConfigError(
            "bitext.sample.dev", f"must be a count or a fraction in (0, 1): {dev_size}"
        )
    if n_dev >= n:
        raise ConfigError(
            "bitext.sample.dev",
            f"{n_dev} dev pairs leave no training pairs out of {n} sampled",
        )
    rng = random.Random(seed)
    chosen = rng.sample(range(available), n)  # a random order: the first n_dev go to dev
    dev_idx, train_idx = sorted(chosen[:n_dev]), sorted(chosen[n_dev:])
    return [pairs[i] for i in train_idx], [pairs[i] for i in dev_idx]


# ------------------------------------------------------------------------------------ stage


def _write_tsv(path: Path, pairs: Sequence[Pair]) -> None:
    """``src<TAB>en`` lines, written atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for p in pairs:
            f.write(f"{p.src}\t{p.en}\n")


def _write_align(path: Path, pairs: Sequence[Pair]) -> None:
    """One Pharaoh line per pair (empty when a pair has no links), written atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for p in pairs:
            f.write(f"{p.align or ''}\n")


def _sample_config(cfg: Mapping[str, Any] | None) -> dict[str, Any]:
    """Sampling settings with defaults; unknown keys are a ConfigError."""
    cfg = dict(cfg or {})
    unknown = set(cfg) - set(SAMPLE_DEFAULTS)
    if unknown:
        raise ConfigError(
            f"bitext.sample.{sorted(unknown)[0]}",
            f"unknown key (known: {', '.join(SAMPLE_DEFAULTS)})",
        )
    return {**SAMPLE_DEFAULTS, **{k: v for k, v in cfg.items() if k == "n" or v is not None}}


def prepare_bitext(
    source_cfg: Mapping[str, Any],
    clean_cfg: Mapping[str, Any] | None,
    sample_cfg: Mapping[str, Any] | None,
    out_dir: str | Path,
    eval_queries: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Run the whole bitext stage into ``out_dir``; return what is written to ``stats.json``.

    ``eval_queries``: the evaluation query texts (any language) to keep out of the bitext.
    """
    out_dir = Path(out_dir)
    sample = _sample_config(sample_cfg)
    pairs, source_info = read_source(source_cfg)
    has_align = source_cfg.get("align") is not None
    queries = list(eval_queries) if eval_queries is not None else None
    kept, clean_stats = clean_bitext(pairs, clean_cfg, queries)
    if not kept:
        where = source_info.get("path") or source_info.get("name") or source_info.get("src", "")
        raise InputError(
            where,
            f"no sentence pairs left after cleaning ({clean_stats['input']} read, dropped: "
            f"{clean_stats['dropped']})",
        )
    train, dev = sample_and_split(kept, sample["n"], sample["dev"], int(sample["seed"]))
    logger.info("bitext: %d train and %d dev pairs -> %s", len(train), len(dev), out_dir)

    _write_tsv(out_dir / "train.tsv", train)
    _write_tsv(out_dir / "dev.tsv", dev)
    outputs = ["train.tsv", "dev.tsv"]
    if has_align:
        _write_align(out_dir / "train.align", train)
        _write_align(out_dir / "dev.align", dev)
        outputs += ["train.align", "dev.align"]
    else:
        for name in ("train.align", "dev.align"):  # stale ones would no longer be parallel
            if (out_dir / name).exists():
                logger.info("removing stale %s (the source has no alignments)", out_dir / name)
                (out_dir / name).unlink()
    stats = {
        "source": source_info,
        "read": clean_stats["input"],
        "clean": clean_stats,
        "sample": {
            "requested": sample["n"],
            "available": len(kept),
            "sampled": len(train) + len(dev),
            "train": len(train),
            "dev": len(dev),
            "dev_requested": sample["dev"],
            "seed": int(sample["seed"]),
        },
        "outputs": outputs,
    }
    with atomic_path(out_dir / "stats.json") as tmp:
        tmp.write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return stats


def read_query_texts(paths: Iterable[str | Path]) -> list[str]:
    """The texts of ``qid<TAB>text`` query files (e.g. every ``queries/<lang>.tsv``)."""
    texts = []
    for path in paths:
        with open_text(path) as f:
            for line_no, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                fields = line.rstrip("\r\n").split("\t")
                if len(fields) != 2:
                    raise InputError(path, "expected qid<TAB>text", line=line_no)
                texts.append(fields[1])
    return texts
