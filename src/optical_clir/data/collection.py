"""Read an evaluation collection (documents, queries per language, qrels) and normalise it.

Sources are local files (TREC topics or TSV queries, TREC qrels, JSONL or TSV documents)
or an ``ir_datasets`` id. Everything is validated line by line: malformed lines and
duplicate ids are errors naming the file and line; the cases the field conventionally
skips (qrels for queries outside the topic set or documents outside the collection, empty
queries) are skipped, counted and logged, or made errors with ``strict``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from optical_clir.errors import InputError
from optical_clir.io import atomic_path, atomic_write_text, open_text

log = logging.getLogger(__name__)

Query = tuple[str, str]  # (qid, text)
# collections.<name>.qrels of a collection whose languages each have their own qrels (from
# their query source), against documents they share.
PER_LANGUAGE = "per_language"
Qrel = tuple[str, str, int]  # (qid, docid, relevance)


@dataclass
class Document:
    """One document of the collection, in the normalised form."""

    id: str
    title: str
    text: str


@dataclass
class SkipCounts:
    """What a reader skipped and why, so that nothing is dropped silently."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, where: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < 5:
            shown.append(where)
        log.warning("skipped (%s): %s", reason, where)


# --------------------------------------------------------------------------- documents


def read_documents(path: str | Path, seen: set[str] | None = None) -> Iterator[Document]:
    """Yield documents from JSONL (``id``/``_id``/``docid`` and ``text``/``contents``) or TSV.

    TSV is ``docid<TAB>text`` or ``docid<TAB>title<TAB>text``. Duplicate ids are errors;
    ``seen`` (filled with the ids read) lets a caller keep the one id set it needs anyway.
    """
    path = Path(path)
    seen = set() if seen is None else seen
    before = len(seen)
    jsonl = path.name.endswith((".jsonl", ".jsonl.gz", ".json"))
    with open_text(path) as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            doc = (
                _parse_jsonl_doc(path, lineno, line)
                if jsonl
                else _parse_tsv_doc(path, lineno, line)
            )
            _check_id(path, lineno, "document", doc.id)
            if doc.id in seen:
                raise InputError(path, f"duplicate document id '{doc.id}'", line=lineno)
            seen.add(doc.id)
            yield doc
    if len(seen) == before:
        raise InputError(path, "no documents: the file is empty")


def _parse_jsonl_doc(path: Path, lineno: int, line: str) -> Document:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not valid JSON ({exc.msg})", line=lineno) from None
    if not isinstance(obj, dict):
        raise InputError(path, "expected a JSON object per line", line=lineno)
    docid = next((obj[k] for k in ("id", "_id", "docid", "doc_id") if k in obj), None)
    text = next((obj[k] for k in ("text", "contents", "body") if k in obj), None)
    if docid is None or str(docid).strip() == "":
        raise InputError(path, "document has no 'id' field", line=lineno)
    if text is None:
        raise InputError(path, f"document '{docid}' has no 'text' or 'contents' field", line=lineno)
    return Document(str(docid).strip(), str(obj.get("title") or ""), _one_line(str(text)))


def _parse_tsv_doc(path: Path, lineno: int, line: str) -> Document:
    parts = line.rstrip("\n").split("\t")
    if len(parts) == 2:
        docid, title, text = parts[0], "", parts[1]
    elif len(parts) == 3:
        docid, title, text = parts
    else:
        raise InputError(
            path,
            f"expected 'docid<TAB>text' or 'docid<TAB>title<TAB>text', got {len(parts)} fields",
            line=lineno,
        )
    if not docid.strip():
        raise InputError(path, "empty document id", line=lineno)
    return Document(docid.strip(), title.strip(), _one_line(text))


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _check_id(path: Path, lineno: int, kind: str, ident: str) -> None:
    """An id with whitespace inside would be split apart by the TREC run and qrels formats."""
    if re.search(r"\s", ident):
        raise InputError(path, f"{kind} id '{ident}' contains whitespace", line=lineno)


# --------------------------------------------------------------------------- queries


QUERY_FORMATS = ("auto", "trec", "tsv")


def sniff_query_format(content: str) -> str:
    """``trec`` when the first non-blank line is a ``<top>`` tag, else ``tsv``: a decision
    taken on the file's start only, so a TSV query that mentions ``<top>`` stays TSV."""
    for line in content.splitlines():
        if line.strip():
            return "trec" if line.strip().lower().startswith("<top>") else "tsv"
    return "tsv"


def read_queries(
    path: str | Path,
    skips: SkipCounts | None = None,
    strict: bool = False,
    query_format: str = "auto",
) -> list[Query]:
    """Read queries from TSV (``qid<TAB>text``) or TREC topics (``<top>`` SGML), keeping file order.

    ``query_format``: ``trec``, ``tsv`` or ``auto`` (:func:`sniff_query_format`). An empty
    query is skipped and counted (or an error with ``strict``); duplicate ids, ids with
    whitespace and a file without any query are errors.
    """
    path = Path(path)
    if query_format not in QUERY_FORMATS:
        raise ValueError(f"query_format must be one of {QUERY_FORMATS}, not {query_format!r}")
    with open_text(path) as handle:
        content = handle.read()
    if query_format == "auto":
        query_format = sniff_query_format(content)
    if query_format == "trec":
        parsed = list(_parse_trec_topics(path, content))
    else:
        parsed = list(_parse_tsv_queries(path, content))
    if not parsed:
        raise InputError(path, "no queries: the file is empty")
    queries: list[Query] = []
    seen: set[str] = set()
    for lineno, qid, text in parsed:
        _check_id(path, lineno, "query", qid)
        if qid in seen:
            raise InputError(path, f"duplicate query id '{qid}'", line=lineno)
        seen.add(qid)
        if not text:
            if strict:
                raise InputError(path, f"query '{qid}' is empty", line=lineno)
            if skips is not None:
                skips.add("empty query", f"{path}:{lineno} ({qid})")
            continue
        queries.append((qid, text))
    return queries


def _parse_tsv_queries(path: Path, content: str) -> Iterator[tuple[int, str, str]]:
    for lineno, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        if "\t" not in line:
            raise InputError(path, "expected 'qid<TAB>query text' (no tab found)", line=lineno)
        qid, text = line.split("\t", 1)
        if not qid.strip():
            raise InputError(path, "empty query id", line=lineno)
        if "\t" in text:
            raise InputError(path, "expected 2 tab-separated fields, got more", line=lineno)
        yield lineno, qid.strip(), _one_line(text)


_TOP_TAG = re.compile(r"<(/?)top>", re.I)
_NUM = re.compile(r"<num>\s*(?:Number:)?[ \t]*([^<\n]*)", re.I)
_TITLE = re.compile(r"<(?:title|EN-title|[A-Z]{2}-title)>\s*(?:Topic:)?(.*?)(?=<|\Z)", re.S | re.I)


def _parse_trec_topics(path: Path, content: str) -> Iterator[tuple[int, str, str]]:
    """Parse TREC/CLEF SGML topics, using the title field as the query (the field's custom).

    Every ``<top>`` must be closed by ``</top>`` before the next one, and nothing but
    whitespace may stand outside the topics: a topic that is not closed would otherwise
    swallow the next one.
    """

    def line_of(offset: int) -> int:
        return content.count("\n", 0, offset) + 1

    opened: re.Match[str] | None = None
    outside_from = 0
    for tag in _TOP_TAG.finditer(content):
        closing = tag.group(1) == "/"
        if opened is None:
            stray = content[outside_from : tag.start()]
            if stray.strip():
                offset = outside_from + len(stray) - len(stray.lstrip())
                raise InputError(
                    path, "text outside <top> ... </top> (is this a topics file?)",
                    line=line_of(offset),
                )  # fmt: skip
            if closing:
                raise InputError(path, "</top> without an opening <top>", line=line_of(tag.start()))
            opened = tag
            continue
        if not closing:
            raise InputError(
                path,
                f"topic opened here has no </top> (the next <top> is on line "
                f"{line_of(tag.start())})",
                line=line_of(opened.start()),
            )
        yield _trec_topic(path, content, opened.end(), tag.start(), line_of)
        opened, outside_from = None, tag.end()
    if opened is not None:
        raise InputError(
            path, "topic opened here has no </top> before the end of the file",
            line=line_of(opened.start()),
        )  # fmt: skip
    if content[outside_from:].strip():
        stray = content[outside_from:]
        offset = outside_from + len(stray) - len(stray.lstrip())
        raise InputError(
            path, "text outside <top> ... </top> (is this a topics file?)", line=line_of(offset)
        )


def _trec_topic(
    path: Path, content: str, start: int, end: int, line_of: Callable[[int], int]
) -> tuple[int, str, str]:
    block = content[start:end]
    num = _NUM.search(block)
    if num is None:
        raise InputError(path, "topic has no <num> field", line=line_of(start))
    lineno = line_of(start + num.start())
    qid = num.group(1).strip()
    if not qid:
        raise InputError(path, "topic has an empty <num> field", line=lineno)
    title = _TITLE.search(block)
    if title is None:
        raise InputError(path, f"topic '{qid}' has no <title> field", line=lineno)
    return lineno, qid, _one_line(title.group(1))


# --------------------------------------------------------------------------- qrels


def read_qrels(path: str | Path) -> list[tuple[int, Qrel]]:
    """Read TREC qrels ``qid iter docid rel`` as (line number, (qid, docid, rel)).

    A line with a wrong number of fields, a non-integer relevance, or a (qid, docid) pair
    judged twice is an error naming the line.
    """
    path = Path(path)
    rows: list[tuple[int, Qrel]] = []
    seen: dict[tuple[str, str], int] = {}
    with open_text(path) as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 4:
                raise InputError(
                    path,
                    f"expected 4 fields 'qid iter docid relevance', got {len(parts)}",
                    line=lineno,
                )
            qid, _, docid, rel = parts
            try:
                relevance = int(rel)
            except ValueError:
                raise InputError(
                    path, f"relevance '{rel}' is not an integer", line=lineno
                ) from None
            key = (qid, docid)
            if key in seen:
                raise InputError(
                    path,
                    f"query '{qid}' judges document '{docid}' twice (first on line {seen[key]})",
                    line=lineno,
                )
            seen[key] = lineno
            rows.append((lineno, (qid, docid, relevance)))
    if not rows:
        raise InputError(path, "no judgments: the file is empty")
    return rows


def filter_qrels(
    path: str | Path,
    rows: Iterable[tuple[int, Qrel]],
    query_ids: set[str],
    doc_ids: set[str],
    skips: SkipCounts,
    strict: bool = False,
) -> list[Qrel]:
    """Keep qrels whose query and document exist; skip and count the rest (error with ``strict``)."""
    kept: list[Qrel] = []
    for lineno, (qid, docid, rel) in rows:
        problem = None
        if qid not in query_ids:
            problem = ("qrels for unknown query", f"query '{qid}' is not in the topic set")
        elif docid not in doc_ids:
            problem = ("qrels for unknown document", f"document '{docid}' is not in the collection")
        if problem is not None:
            if strict:
                raise InputError(path, problem[1], line=lineno)
            skips.add(problem[0], f"{path}:{lineno} ({qid} {docid})")
            continue
        kept.append((qid, docid, rel))
    return kept


# --------------------------------------------------------------------------- writers


def document_line(doc: Document) -> str:
    """One document as a line of the normalised JSONL."""
    return json.dumps({"id": doc.id, "title": doc.title, "text": doc.text}, ensure_ascii=False)


def stream_documents(docs: Iterable[Document], handle: TextIO) -> int:
    """Write documents to an open text file one line at a time; return how many were written."""
    count = 0
    for doc in docs:
        handle.write(document_line(doc) + "\n")
        count += 1
    return count


def write_documents(docs: Iterable[Document], path: str | Path) -> int:
    """Write documents as normalised JSONL, streamed into place; return how many were written."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        return stream_documents(docs, handle)


def write_queries(queries: Iterable[Query], path: str | Path) -> None:
    """Write queries as ``qid<TAB>text`` lines."""
    atomic_write_text(path, "".join(f"{qid}\t{text}\n" for qid, text in queries))


def write_qrels(qrels: Iterable[Qrel], path: str | Path) -> None:
    """Write TREC qrels."""
    atomic_write_text(path, "".join(f"{qid} 0 {docid} {rel}\n" for qid, docid, rel in qrels))


def load_queries_tsv(path: str | Path) -> dict[str, str]:
    """Read a normalised queries file into an ordered ``{qid: text}`` mapping."""
    return dict(read_queries(path, strict=False, query_format="tsv"))


# --------------------------------------------------------------------------- normalisation


def _load_ir_dataset(dataset_id: str):  # pragma: no cover - needs downloads
    """Load an ``ir_datasets`` dataset lazily (downloads happen on first iteration)."""
    import ir_datasets

    return ir_datasets.load(dataset_id)


def _first_field(record, names: tuple[str, ...]) -> str:
    """The first of ``names`` that an ir_datasets record has, else its default text."""
    for name in names:
        if hasattr(record, name):
            return str(getattr(record, name) or "")
    return record.default_text()


def _ir_datasets_documents(dataset_id: str) -> Iterator[Document]:
    for doc in _load_ir_dataset(dataset_id).docs_iter():
        text = _first_field(doc, ("text", "body"))
        yield Document(str(doc.doc_id), str(getattr(doc, "title", "") or ""), _one_line(str(text)))


def _collect_ids(docs: Iterable[Document], seen: set[str]) -> Iterator[Document]:
    """Pass documents on, adding their ids to ``seen`` (the qrels are checked against it)."""
    for doc in docs:
        seen.add(doc.id)
        yield doc


def _ir_datasets_queries(dataset_id: str) -> list[tuple[int, str, str]]:
    rows = []
    for n, query in enumerate(_load_ir_dataset(dataset_id).queries_iter(), start=1):
        text = _first_field(query, ("text", "title"))
        rows.append((n, str(query.query_id), _one_line(str(text))))
    return rows


def _ir_datasets_qrels(dataset_id: str) -> list[tuple[int, Qrel]]:
    return [
        (n, (str(q.query_id), str(q.doc_id), int(q.relevance)))
        for n, q in enumerate(_load_ir_dataset(dataset_id).qrels_iter(), start=1)
    ]


def _source_queries(spec: str | dict, skips: SkipCounts, strict: bool) -> list[Query]:
    if isinstance(spec, dict) and "ir_datasets" in spec:
        dataset_id = spec["ir_datasets"]
        queries: list[Query] = []
        for n, qid, text in _ir_datasets_queries(dataset_id):
            if not text:
                if strict:
                    raise InputError(f"ir_datasets:{dataset_id}", f"query '{qid}' is empty", line=n)
                skips.add("empty query", f"ir_datasets:{dataset_id} ({qid})")
                continue
            queries.append((qid, text))
        return queries
    if isinstance(spec, dict):  # {path, format}
        return read_queries(spec["path"], skips, strict, spec.get("format", "auto"))
    return read_queries(spec, skips=skips, strict=strict)


def prepare_collection(cfg: dict, out_dir: str | Path) -> dict:
    """Validate one collection's sources and write the normalised files under ``out_dir``.

    ``cfg`` holds ``source`` (``local`` or ``ir_datasets``), ``docs``/``qrels`` paths (local)
    or ``dataset`` (ir_datasets), ``queries`` as ``{lang: path | {"path": path, "format":
    "trec" | "tsv"} | {"ir_datasets": id}}`` (a bare path's format is sniffed) and
    ``strict``. With ``qrels: per_language`` (ir_datasets only) each language is judged on
    the qrels of its own query dataset, against the documents of ``dataset``. Writes
    ``docs.jsonl``, ``qrels.txt`` (per language: ids ``<lang>:<qid>``, split by
    :func:`split_qrels`), ``queries.tsv`` (``lang<TAB>qid<TAB>text``, split per language by
    :func:`split_queries`) and ``stats.json``; returns the statistics. Documents are streamed from the source to disk,
    so memory grows only with the set of document ids.
    """
    out_dir = Path(out_dir)
    strict = bool(cfg.get("strict", False))
    skips = SkipCounts()

    queries = {lang: _source_queries(spec, skips, strict) for lang, spec in cfg["queries"].items()}
    per_language = cfg.get("qrels") == PER_LANGUAGE
    doc_ids: set[str] = set()  # the only thing that grows with the collection
    if cfg.get("source", "local") == "ir_datasets":
        docs_source = f"ir_datasets:{cfg['dataset']}"
        docs = _collect_ids(_ir_datasets_documents(cfg["dataset"]), doc_ids)
        qrels_source = docs_source
    else:
        docs_source, qrels_source = cfg["docs"], cfg["qrels"]
        docs = read_documents(docs_source, seen=doc_ids)

    # Documents stream into a temporary file, renamed into place once the qrels are checked
    # against their ids: a bad input leaves no docs.jsonl behind.
    with atomic_path(out_dir / "docs.jsonl") as tmp, open(tmp, "w", encoding="utf-8") as handle:
        n_docs = stream_documents(docs, handle)
        if per_language:
            qrels_sources = {
                lang: f"ir_datasets:{spec['ir_datasets']}" for lang, spec in cfg["queries"].items()
            }
            qrels_of = {
                lang: filter_qrels(
                    qrels_sources[lang],
                    _ir_datasets_qrels(cfg["queries"][lang]["ir_datasets"]),
                    {qid for qid, _ in qs},
                    doc_ids,
                    skips,
                    strict=strict,
                )
                for lang, qs in queries.items()
            }
        else:
            if cfg.get("source", "local") == "ir_datasets":
                qrel_rows = _ir_datasets_qrels(cfg["dataset"])
            else:
                qrel_rows = read_qrels(qrels_source)
            all_qids = {qid for qs in queries.values() for qid, _ in qs}
            shared = filter_qrels(qrels_source, qrel_rows, all_qids, doc_ids, skips, strict=strict)
            qrels_of = {lang: shared for lang in queries}

    for lang, qs in queries.items():
        judged = {qid for qid, _, rel in qrels_of[lang] if rel > 0}
        for qid, _ in qs:
            if qid not in judged:
                skips.add("query without relevant documents", f"{lang}:{qid}")
        queries[lang] = [(qid, text) for qid, text in qs if qid in judged]
    atomic_write_text(
        out_dir / "queries.tsv",
        "".join(f"{lang}\t{qid}\t{text}\n" for lang, qs in queries.items() for qid, text in qs),
    )
    if per_language:
        qrels = [
            (qualified_qid(lang, qid), docid, rel)
            for lang, rows in qrels_of.items()
            for qid, docid, rel in rows
        ]
    else:
        qrels = shared
    write_qrels(qrels, out_dir / "qrels.txt")

    grades: dict[str, int] = {}
    for _, _, rel in qrels:
        grades[str(rel)] = grades.get(str(rel), 0) + 1
    stats = {
        "documents": n_docs,
        "queries": {lang: len(qs) for lang, qs in queries.items()},
        "judgments": len(qrels),
        "judgments_by_grade": dict(sorted(grades.items())),
        "skipped": skips.counts,
        "skipped_examples": skips.examples,
        "sources": {"documents": str(docs_source), "qrels": str(qrels_source)},
    }
    if per_language:
        stats["judgments_by_language"] = {lang: len(rows) for lang, rows in qrels_of.items()}
        stats["sources"]["qrels"] = qrels_sources
    atomic_write_text(out_dir / "stats.json", json.dumps(stats, indent=2) + "\n")
    log.info(
        "collection: %d documents, %s queries, %d judgments, skipped %s",
        n_docs,
        stats["queries"],
        len(qrels),
        skips.counts or "nothing",
    )
    return stats


def qualified_qid(lang: str, qid: str) -> str:
    """A query id made unique across the languages of a collection with per-language qrels."""
    return f"{lang}:{qid}"


def split_qrels(all_qrels: str | Path, lang: str, out_path: str | Path) -> int:
    """Write one language's qrels, with its own query ids, from the combined ``qrels.txt`` of a
    collection with per-language qrels (ids ``<lang>:<qid>``); return the judgments written."""
    prefix = qualified_qid(lang, "")
    rows = [
        (qid.removeprefix(prefix), docid, rel)
        for _, (qid, docid, rel) in read_qrels(all_qrels)
        if qid.startswith(prefix)
    ]
    write_qrels(rows, out_path)
    return len(rows)


def split_queries(all_queries_tsv: str | Path, lang: str, out_path: str | Path) -> int:
    """Write the queries of one language from the combined ``queries.tsv``; return the count."""
    rows = []
    with open_text(all_queries_tsv) as handle:
        for line in handle:
            qlang, qid, text = line.rstrip("\n").split("\t", 2)
            if qlang == lang:
                rows.append((qid, text))
    write_queries(rows, out_path)
    return len(rows)
