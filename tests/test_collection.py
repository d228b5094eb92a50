"""Reading and validating collections: every malformed input gets an error naming file and line."""

import json

import pytest

from optical_clir.data.collection import (
    prepare_collection,
    read_documents,
    read_qrels,
    read_queries,
    split_qrels,
    split_queries,
)
from optical_clir.errors import InputError


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_jsonl_and_tsv_documents(tmp_path):
    jsonl = write(
        tmp_path / "d.jsonl",
        '{"id": "a", "title": "T", "text": "x  y"}\n\n{"_id": "b", "contents": "z"}\n',
    )
    docs = list(read_documents(jsonl))
    assert [(d.id, d.title, d.text) for d in docs] == [("a", "T", "x y"), ("b", "", "z")]
    tsv = write(tmp_path / "d.tsv", "a\tonly text\nb\ttitle\ttext\n")
    assert [(d.id, d.title, d.text) for d in read_documents(tsv)] == [
        ("a", "", "only text"),
        ("b", "title", "text"),
    ]


@pytest.mark.parametrize(
    "content, line, message",
    [
        ('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', 2, "duplicate document id 'a'"),
        ('{"id": "a", "text": "x"}\n{broken\n', 2, "not valid JSON"),
        ('{"text": "x"}\n', 1, "no 'id' field"),
        ('{"id": "a"}\n', 1, "no 'text' or 'contents' field"),
        ("[1, 2]\n", 1, "JSON object"),
    ],
)
def test_bad_jsonl_documents(tmp_path, content, line, message):
    path = write(tmp_path / "docs.jsonl", content)
    with pytest.raises(InputError, match=message) as info:
        list(read_documents(path))
    assert info.value.line == line
    assert str(path) in str(info.value)


def test_bad_tsv_documents(tmp_path):
    path = write(tmp_path / "docs.tsv", "a\tx\nb\n")
    with pytest.raises(InputError, match=r"docs.tsv:2: expected 'docid<TAB>text'"):
        list(read_documents(path))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        list(read_documents(tmp_path / "nope.jsonl"))


def test_queries_tsv_errors_and_empty_skip(tmp_path):
    from optical_clir.data.collection import SkipCounts

    good = write(tmp_path / "q.tsv", "q1\tfirst query\nq2\t  \nq3\tthird\n")
    skips = SkipCounts()
    assert read_queries(good, skips=skips) == [("q1", "first query"), ("q3", "third")]
    assert skips.counts == {"empty query": 1}
    assert "q.tsv:2" in skips.examples["empty query"][0]
    with pytest.raises(InputError, match=r"q.tsv:2: query 'q2' is empty"):
        read_queries(good, strict=True)
    with pytest.raises(InputError, match=r":2: duplicate query id 'q1'"):
        read_queries(write(tmp_path / "d.tsv", "q1\ta\nq1\tb\n"))
    with pytest.raises(InputError, match=r":1: expected 'qid<TAB>query text'"):
        read_queries(write(tmp_path / "n.tsv", "q1 no tab here\n"))


def test_trec_topics(tmp_path):
    topics = write(
        tmp_path / "topics.txt",
        "<top>\n<num> Number: C041\n<title> Pesticides in baby food\n<desc> Description:\n"
        "Find reports.\n</top>\n\n<top>\n<num> C042\n<SW-title> Umoja wa Mataifa\n</top>\n",
    )
    assert read_queries(topics) == [
        ("C041", "Pesticides in baby food"),
        ("C042", "Umoja wa Mataifa"),
    ]
    broken = write(tmp_path / "broken.txt", "<top>\n<title> x\n</top>\n")
    with pytest.raises(InputError, match="no <num> field"):
        read_queries(broken)


@pytest.mark.parametrize(
    "content, message",
    [
        ("q1 0 d1\n", "expected 4 fields"),
        ("q1 0 d1 high\n", "relevance 'high' is not an integer"),
        ("q1 0 d1 1\nq1 0 d1 2\n", "judges document 'd1' twice"),
    ],
)
def test_bad_qrels(tmp_path, content, message):
    path = write(tmp_path / "qrels.txt", content)
    with pytest.raises(InputError, match=message):
        read_qrels(path)


def make_collection(tmp_path, qrels="q1 0 d1 2\nq2 0 d2 1\n", sw="q1\tswali\nq2\tjingine\n"):
    write(tmp_path / "docs.jsonl", '{"id": "d1", "text": "one"}\n{"id": "d2", "text": "two"}\n')
    write(tmp_path / "qrels.txt", qrels)
    write(tmp_path / "en.tsv", "q1\tquestion\nq2\tanother\n")
    write(tmp_path / "sw.tsv", sw)
    return {
        "source": "local",
        "docs": str(tmp_path / "docs.jsonl"),
        "qrels": str(tmp_path / "qrels.txt"),
        "queries": {"en": str(tmp_path / "en.tsv"), "sw": str(tmp_path / "sw.tsv")},
    }


def test_prepare_collection_normalises(tmp_path):
    stats = prepare_collection(make_collection(tmp_path), tmp_path / "out")
    assert stats["documents"] == 2 and stats["queries"] == {"en": 2, "sw": 2}
    assert stats["skipped"] == {}
    lines = (tmp_path / "out/docs.jsonl").read_text().splitlines()
    assert json.loads(lines[0]) == {"id": "d1", "title": "", "text": "one"}
    assert split_queries(tmp_path / "out/queries.tsv", "sw", tmp_path / "out/sw.tsv") == 2
    assert (tmp_path / "out/sw.tsv").read_text() == "q1\tswali\nq2\tjingine\n"


def test_unknown_ids_in_qrels_are_counted_skips_or_strict_errors(tmp_path):
    qrels = "q1 0 d1 2\nq9 0 d1 1\nq2 0 d7 1\nq2 0 d2 1\n"
    cfg = make_collection(tmp_path, qrels=qrels)
    stats = prepare_collection(cfg, tmp_path / "out")
    assert stats["skipped"] == {"qrels for unknown query": 1, "qrels for unknown document": 1}
    assert stats["judgments"] == 2
    saved = json.loads((tmp_path / "out/stats.json").read_text())
    assert saved["skipped_examples"]["qrels for unknown query"] == [f"{cfg['qrels']}:2 (q9 d1)"]
    with pytest.raises(InputError, match=r"qrels.txt:2: query 'q9' is not in the topic set"):
        prepare_collection({**cfg, "strict": True}, tmp_path / "strict")
    assert not (tmp_path / "strict/docs.jsonl").exists()


def test_queries_without_relevant_documents_are_counted(tmp_path):
    cfg = make_collection(tmp_path, qrels="q1 0 d1 2\nq2 0 d2 0\n", sw="q1\tswali\nq2\t\n")
    stats = prepare_collection(cfg, tmp_path / "out")
    assert stats["queries"] == {"en": 1, "sw": 1}
    assert stats["skipped"] == {"empty query": 1, "query without relevant documents": 1}
    # strict: true makes the empty query an error, but a query with no relevant document is
    # still skipped and counted (README: "a query with no relevant document is always skipped")
    with pytest.raises(InputError, match=r"sw.tsv:2: query 'q2' is empty"):
        prepare_collection({**cfg, "strict": True}, tmp_path / "strict-empty")
    cfg = make_collection(tmp_path / "strict", qrels="q1 0 d1 2\nq2 0 d2 0\n")
    stats = prepare_collection({**cfg, "strict": True}, tmp_path / "strict/out")
    assert stats["queries"] == {"en": 1, "sw": 1}
    assert stats["skipped"] == {"query without relevant documents": 2}
    assert stats["skipped_examples"]["query without relevant documents"] == ["en:q2", "sw:q2"]
    assert (tmp_path / "strict/out/queries.tsv").read_text() == "en\tq1\tquestion\nsw\tq1\tswali\n"


def test_ir_datasets_source_is_normalised(tmp_path, monkeypatch):
    """An ir_datasets collection (faked in-process: no download) is read through the same checks."""
    from collections import namedtuple

    from optical_clir.data import collection

    Doc = namedtuple("Doc", "doc_id title text")
    Query = namedtuple("Query", "query_id text")
    Qrel = namedtuple("Qrel", "query_id doc_id relevance iteration")

    class FakeDataset:
        def __init__(self, name):
            self.name = name

        def docs_iter(self):
            return iter([Doc("d1", "Title", "first\ndoc"), Doc("d2", "", "second")])

        def queries_iter(self):
            lang = self.name.split("/")[-1]
            return iter([Query("q1", f"{lang} one"), Query("q2", "")])

        def qrels_iter(self):
            return iter([Qrel("q1", "d1", 2, "0"), Qrel("q1", "d9", 1, "0")])

    monkeypatch.setattr(collection, "_load_ir_dataset", FakeDataset)
    cfg = {
        "source": "ir_datasets",
        "dataset": "fake/collection",
        "queries": {"en": {"ir_datasets": "fake/en"}, "sw": {"ir_datasets": "fake/sw"}},
    }
    stats = prepare_collection(cfg, tmp_path)
    assert stats["documents"] == 2
    assert stats["queries"] == {"en": 1, "sw": 1}
    assert stats["skipped"] == {"empty query": 2, "qrels for unknown document": 1}
    assert (tmp_path / "queries.tsv").read_text() == "en\tq1\ten one\nsw\tq1\tsw one\n"
    assert (tmp_path / "docs.jsonl").read_text().splitlines()[0] == (
        '{"id": "d1", "title": "Title", "text": "first doc"}'
    )


# ------------------------------------------------------------ formats, encodings, damaged files


def test_trec_topic_missing_its_end_tag_is_an_error_with_the_line(tmp_path):
    """Without </top>, the first topic used to swallow the second one silently."""
    topics = write(
        tmp_path / "topics.txt",
        "<top>\n<num> 1\n<title> first topic\n\n<top>\n<num> 2\n<title> second\n</top>\n",
    )
    with pytest.raises(InputError, match=r"topics.txt:1: topic opened here has no </top>") as info:
        read_queries(topics)
    assert "next <top> is on line 5" in str(info.value)
    unclosed = write(tmp_path / "end.txt", "<top>\n<num> 1\n<title> a\n</top>\n<top>\n<num> 2\n")
    with pytest.raises(InputError, match=r"end.txt:5: .*before the end of the file"):
        read_queries(unclosed)
    stray = write(tmp_path / "stray.txt", "<top>\n<num> 1\n<title> a\n</top>\nleft over\n")
    with pytest.raises(InputError, match=r"stray.txt:5: text outside <top>"):
        read_queries(stray)


def test_tsv_query_mentioning_top_stays_tsv(tmp_path):
    path = write(tmp_path / "q.tsv", "q1\thow to write <top> tags\nq2\tsecond\n")
    assert read_queries(path) == [("q1", "how to write <top> tags"), ("q2", "second")]


def test_explicit_query_format_wins_over_sniffing(tmp_path):
    trec = "<top>\n<num> 7\n<title> seven\n</top>\n"
    path = write(tmp_path / "topics.txt", trec)
    assert read_queries(path, query_format="trec") == [("7", "seven")]
    with pytest.raises(InputError, match=r"topics.txt:1: expected 'qid<TAB>query text'"):
        read_queries(path, query_format="tsv")
    tsv = write(tmp_path / "q.tsv", "q1\tplain\n")
    with pytest.raises(InputError, match=r"q.tsv:1: text outside <top>"):
        read_queries(tsv, query_format="trec")
    cfg = make_collection(tmp_path)
    cfg["queries"]["en"] = {"path": str(write(tmp_path / "en.txt", trec.replace("7", "q1"))),
                            "format": "trec"}  # fmt: skip
    stats = prepare_collection(cfg, tmp_path / "out")
    assert stats["queries"] == {"en": 1, "sw": 2}


@pytest.mark.parametrize(
    "name, content, reader, message",
    [
        ("docs.jsonl", "", read_documents, "no documents"),
        ("docs.jsonl", "\n\n", read_documents, "no documents"),
        ("qrels.txt", "", read_qrels, "no judgments"),
        ("q.tsv", "\n", read_queries, "no queries"),
    ],
)
def test_empty_inputs_are_errors(tmp_path, name, content, reader, message):
    path = write(tmp_path / name, content)
    with pytest.raises(InputError, match=message) as info:
        list(reader(path))
    assert info.value.path == str(path)


def test_non_utf8_bytes_name_file_and_line(tmp_path):
    path = tmp_path / "q.tsv"
    path.write_bytes("q1\tcaf\u00e9\nq2\tcaf".encode() + b"\xe9\n")  # latin-1 on line 2
    with pytest.raises(InputError, match=r"q.tsv:2: not valid UTF-8: byte 0xe9 at column 7"):
        read_queries(path)
    docs = tmp_path / "docs.jsonl"
    docs.write_bytes(b'{"id": "a", "text": "x"}\n{"id": "b", "text": "\xff"}\n')
    with pytest.raises(InputError, match=r"docs.jsonl:2: not valid UTF-8"):
        list(read_documents(docs))


def test_byte_order_mark_does_not_drop_the_first_record(tmp_path):
    queries = tmp_path / "q.tsv"
    queries.write_bytes(b"\xef\xbb\xbfq1\tfirst\r\nq2\tsecond\r\n")
    assert read_queries(queries) == [("q1", "first"), ("q2", "second")]
    qrels = tmp_path / "qrels.txt"
    qrels.write_bytes(b"\xef\xbb\xbfq1 0 d1 1\nq2 0 d2 1\n")
    assert [row for _, row in read_qrels(qrels)] == [("q1", "d1", 1), ("q2", "d2", 1)]
    docs = tmp_path / "docs.jsonl"
    docs.write_bytes(b'\xef\xbb\xbf{"id": "a", "text": "x"}\n')
    assert [d.id for d in read_documents(docs)] == ["a"]


def test_damaged_gzip_files_are_errors(tmp_path):
    import gzip

    lines = "".join(
        json.dumps({"id": f"d{i}", "text": f"text {i} " * 20}) + "\n" for i in range(2000)
    )
    data = gzip.compress(lines.encode(), mtime=0)
    truncated = tmp_path / "docs.jsonl.gz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated gzip file") as info:
        list(read_documents(truncated))
    assert info.value.path == str(truncated) and info.value.line > 1
    plain = write(tmp_path / "plain.jsonl.gz", '{"id": "a", "text": "x"}\n')
    with pytest.raises(InputError, match=r"named \.gz but not gzip-compressed"):
        list(read_documents(plain))
    hidden = tmp_path / "hidden.jsonl"
    hidden.write_bytes(data)
    with pytest.raises(InputError, match=r"gzip-compressed but not named \.gz"):
        list(read_documents(hidden))
    good = tmp_path / "good.jsonl.gz"
    good.write_bytes(data)
    assert len(list(read_documents(good))) == 2000


@pytest.mark.parametrize(
    "name, content, reader, message",
    [
        ("docs.jsonl", '{"id": "a b", "text": "x"}\n', read_documents, "document id 'a b'"),
        ("docs.tsv", "a b\ttext\n", read_documents, "document id 'a b'"),
        ("q.tsv", "q 1\ttext\n", read_queries, "query id 'q 1'"),
        ("t.txt", "<top>\n<num> 4 1\n<title> x\n</top>\n", read_queries, "query id '4 1'"),
    ],
)
def test_whitespace_inside_an_id_is_an_error(tmp_path, name, content, reader, message):
    path = write(tmp_path / name, content)
    with pytest.raises(InputError, match=f"{message} contains whitespace") as info:
        list(reader(path))
    assert info.value.line in (1, 2)


def test_prepare_collection_streams_documents(tmp_path, monkeypatch):
    """Documents are written as they are read: none is kept alive once written, so memory
    does not grow with the collection (only the set of ids does)."""
    import gc
    import weakref

    from optical_clir.data import collection

    refs: list[weakref.ref] = []
    alive_at_end: list[int] = []

    def documents(dataset_id):
        for n in range(200):
            doc = collection.Document(f"d{n}", "", f"text {n}")
            refs.append(weakref.ref(doc))
            yield doc
        gc.collect()
        alive_at_end.append(sum(ref() is not None for ref in refs))

    monkeypatch.setattr(collection, "_ir_datasets_documents", documents)
    monkeypatch.setattr(collection, "_ir_datasets_qrels", lambda _: [(1, ("q1", "d7", 1))])
    monkeypatch.setattr(collection, "_ir_datasets_queries", lambda _: [(1, "q1", "query")])
    cfg = {"source": "ir_datasets", "dataset": "fake", "queries": {"sw": {"ir_datasets": "x"}}}
    stats = collection.prepare_collection(cfg, tmp_path)
    assert stats["documents"] == 200 and stats["judgments"] == 1
    assert alive_at_end[0] <= 1, f"{alive_at_end[0]} documents held in memory"
    assert (tmp_path / "docs.jsonl").read_text().count("\n") == 200


def test_per_language_qrels_judge_each_language_on_its_own(tmp_path, monkeypatch):
    """Two languages search one document set with their own qrels (``qrels: per_language``):
    query 'q1' exists in both with different judgments, and each language is judged on its own."""
    from collections import namedtuple

    from optical_clir.data import collection
    from optical_clir.evaluation.measures import evaluation_query_ids, per_query_measures

    Doc = namedtuple("Doc", "doc_id title text")
    Query = namedtuple("Query", "query_id text")
    Qrel = namedtuple("Qrel", "query_id doc_id relevance iteration")
    queries = {"tl": [("q1", "tl one"), ("q2", "tl two")], "ps": [("q1", "ps one"), ("q3", "")]}
    qrels = {
        "tl": [("q1", "d1", 2), ("q2", "d2", 1)],
        "ps": [("q1", "d3", 1), ("q3", "d4", 1), ("q1", "d9", 1)],
    }

    class FakeDataset:
        def __init__(self, name):
            self.lang = name.split("/")[-1]

        def docs_iter(self):
            assert self.lang == "en", "documents come from `dataset` only"
            return iter([Doc(f"d{n}", "", f"doc {n}") for n in range(1, 5)])

        def queries_iter(self):
            return iter([Query(*q) for q in queries[self.lang]])

        def qrels_iter(self):
            return iter([Qrel(*row, "0") for row in qrels[self.lang]])

    monkeypatch.setattr(collection, "_load_ir_dataset", FakeDataset)
    cfg = {
        "source": "ir_datasets",
        "dataset": "fake/en",
        "qrels": "per_language",
        "queries": {"tl": {"ir_datasets": "fake/tl"}, "ps": {"ir_datasets": "fake/ps"}},
    }
    out = tmp_path / "coll"
    stats = prepare_collection(cfg, out)
    assert stats["documents"] == 4
    assert stats["queries"] == {"tl": 2, "ps": 1}
    assert stats["judgments_by_language"] == {"tl": 2, "ps": 1}
    assert stats["skipped"] == {"empty query": 1, "qrels for unknown query": 1,
                                "qrels for unknown document": 1}  # fmt: skip
    assert stats["sources"]["qrels"] == {"tl": "ir_datasets:fake/tl", "ps": "ir_datasets:fake/ps"}
    assert (out / "qrels.txt").read_text() == "tl:q1 0 d1 2\ntl:q2 0 d2 1\nps:q1 0 d3 1\n"
    assert split_qrels(out / "qrels.txt", "tl", out / "qrels/tl.txt") == 2
    assert split_qrels(out / "qrels.txt", "ps", out / "qrels/ps.txt") == 1
    assert (out / "qrels/tl.txt").read_text() == "q1 0 d1 2\nq2 0 d2 1\n"
    assert (out / "qrels/ps.txt").read_text() == "q1 0 d3 1\n"

    # Both runs rank d1 above d3 for q1: right for Tagalog, half right for Pashto.
    run = "q1 Q0 d1 1 2.0 x\nq1 Q0 d3 2 1.0 x\nq2 Q0 d2 1 1.0 x\n"
    ap = {}
    for lang in ("tl", "ps"):
        split_queries(out / "queries.tsv", lang, out / f"queries/{lang}.tsv")
        qids = evaluation_query_ids(out / f"queries/{lang}.tsv", out / f"qrels/{lang}.txt")
        table = per_query_measures(write(tmp_path / f"{lang}.trec", run),
                                   out / f"qrels/{lang}.txt", qids, ("AP",))  # fmt: skip
        ap[lang] = table["AP"].to_dict()
    assert ap == {"tl": {"q1": 1.0, "q2": 1.0}, "ps": {"q1": 0.5}}
