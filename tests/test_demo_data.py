"""The shipped demo data: the collection as DATASHEET.md and README describe it, and the
bitexts: what the build code makes, no query leakage, valid alignments."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path

import pytest
import yaml

from optical_clir.data.collection import read_documents, read_qrels
from optical_clir.data.demo import build, pseudolang, swahili
from optical_clir.data.mmarco import iter_tsv_triples

DATA = Path(__file__).resolve().parents[1] / "data" / "demo"
pytestmark = pytest.mark.skipif(
    not (DATA / "queries" / "en.tsv").exists(), reason="demo queries not present"
)


@pytest.fixture(scope="module")
def queries() -> list[str]:
    return [
        q for lang in ("en", "sw") for _, q in build.read_queries(DATA / "queries" / f"{lang}.tsv")
    ]


def _rows(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]


def test_check_cli_passes() -> None:
    """The shipped files are exactly what the build code makes."""
    assert build.main(["--check", "--data-dir", str(DATA)]) == 0


def test_swahili_generator_deterministic_and_large() -> None:
    pairs = swahili.generate()
    assert pairs == swahili.generate()
    assert len(pairs) >= 1500
    assert len({swahili.normalise(sw) for sw, _ in pairs}) == len(pairs)
    assert len(swahili.HANDWRITTEN) >= 100


def test_no_bitext_pair_contains_a_query(queries: list[str]) -> None:
    for name in ("sw-en.tsv", "pseudo-en.tsv"):
        rows = _rows(DATA / "bitext" / name)
        assert len(rows) >= 1500
        for row in rows:
            assert len(row) == 2 and all(row)
            for side in row:
                assert swahili.contains_query(side, queries) is None, row


def test_contains_query_normalises() -> None:
    assert swahili.contains_query("Well: How to cook UGALI, fast!", ["how to cook ugali"])
    assert swahili.contains_query("how to cook ugalis", ["how to cook ugali"]) is None


def test_alignment_lines_match_pairs() -> None:
    rows = _rows(DATA / "bitext" / "pseudo-en.tsv")
    align = (DATA / "bitext" / "pseudo-en.align").read_text(encoding="utf-8").splitlines()
    assert len(align) == len(rows)
    for (pseudo, english), line in zip(rows, align, strict=True):
        n_src, n_en = len(pseudo.split()), len(english.split())
        for link in line.split():
            i, j = map(int, link.split("-"))
            assert 0 <= i < n_src and 0 <= j < n_en


def test_pseudo_words_are_not_english_and_do_not_collide() -> None:
    rows = _rows(DATA / "bitext" / "pseudo-en.tsv")
    english_vocab = {w.lower() for _, en in rows for w in en.split()}
    pseudo_vocab = {w for ps, _ in rows for w in ps.split() if w.isalpha()}
    assert not pseudo_vocab & english_vocab
    texts = [en for _, en in rows]
    stems = pseudolang.stems_of(texts)
    lexicon = pseudolang.build_lexicon(stems, english_vocab)
    assert len(set(lexicon.values())) == len(lexicon)


def test_pseudo_queries_same_ids_and_order() -> None:
    en = build.read_queries(DATA / "queries" / "en.tsv")
    pseudo = build.read_queries(DATA / "queries" / "pseudo.tsv")
    assert [q for q, _ in pseudo] == [q for q, _ in en]


def test_lexicon_covers_swahili_query_words() -> None:
    sw = [q for _, q in build.read_queries(DATA / "queries" / "sw.tsv")]
    words, uncovered = swahili.query_coverage(sw)
    assert words and not uncovered


# ------------------------------------------------------------ the collection (DATASHEET.md)

TOPICS, DOCS_PER_TOPIC = 30, 11


def doc_topic(docid: str) -> int:
    """DATASHEET: D0001-D0011 are topic 1, D0012-D0022 topic 2, and so on."""
    return (int(docid.removeprefix("D")) - 1) // DOCS_PER_TOPIC + 1


def query_topic(qid: str) -> int:
    """DATASHEET: Q(2t-1) and Q(2t) belong to topic t, T(5t-4)-T(5t) too."""
    number = int(qid[1:])
    return (number + 1) // 2 if qid.startswith("Q") else (number + 4) // 5


def _qrels(path: Path) -> list[tuple[str, str, int]]:
    return [row for _, row in read_qrels(path)]


def test_passages_queries_and_graded_judgments() -> None:
    """README: 330 English passages on 30 topics and 60 evaluation queries with graded
    judgments; the DATASHEET's statistics table, recomputed. The files carry no topic label:
    the topics are the id blocks the DATASHEET gives, and the judgments bear them out (all but
    the 6 cross-topic judgments it mentions stay in the query's block)."""
    docs = list(read_documents(DATA / "docs.jsonl"))
    assert [d.id for d in docs] == [f"D{n:04d}" for n in range(1, 331)]
    assert Counter(doc_topic(d.id) for d in docs) == {t: 11 for t in range(1, TOPICS + 1)}
    words = [len(d.text.split()) for d in docs]
    assert (min(words), max(words), round(statistics.mean(words), 1)) == (40, 73, 49.6)
    queries = build.read_queries(DATA / "queries" / "en.tsv")
    assert [q for q, _ in queries] == [f"Q{n:03d}" for n in range(1, 61)]
    assert all(4 <= len(text.split()) <= 11 for _, text in queries)

    qrels = _qrels(DATA / "qrels.txt")
    assert Counter(rel for _, _, rel in qrels) == {2: 98, 1: 91}  # graded, no 0 lines
    per_query = Counter(qid for qid, _, _ in qrels)
    assert set(per_query) == {q for q, _ in queries}
    assert (min(per_query.values()), max(per_query.values())) == (2, 6)
    assert round(statistics.mean(per_query.values()), 2) == 3.15
    highly = Counter(qid for qid, _, rel in qrels if rel == 2)
    assert set(highly) == set(per_query), "every query has a grade-2 passage"
    assert round(statistics.mean(highly.values()), 2) == 1.63
    cross = [(q, d) for q, d, _ in qrels if doc_topic(d) != query_topic(q)]
    assert len(cross) == 6


def test_training_queries_are_mmarco_triples_apart_from_the_evaluation_queries() -> None:
    """README: 150 separate training queries in mMARCO's triple format. Each gives two
    triples (read by the workflow's own triples reader) with its judged positive, one
    negative from its own topic (hard) and one from another topic (random); no training
    query equals or contains an evaluation query, in either direction."""
    train = build.read_queries(DATA / "train" / "queries.tsv")
    assert [q for q, _ in train] == [f"T{n:03d}" for n in range(1, 151)]
    positive = {qid: docid for qid, docid, rel in _qrels(DATA / "train" / "qrels.txt")}
    assert set(positive) == {q for q, _ in train}
    assert all(doc_topic(d) == query_topic(q) for q, d in positive.items())

    raw = (DATA / "docs.jsonl").read_text(encoding="utf-8").splitlines()
    doc_of = {doc["text"]: doc["id"] for doc in map(json.loads, raw)}
    qid_of = {text: qid for qid, text in train}
    kinds: dict[str, list[str]] = {}
    for query, pos, neg in iter_tsv_triples(DATA / "train" / "triples.tsv"):
        qid = qid_of[query]
        assert doc_of[pos] == positive[qid]  # texts copied exactly from docs.jsonl
        same_topic = doc_topic(doc_of[neg]) == query_topic(qid)
        kinds.setdefault(qid, []).append("hard" if same_topic else "random")
    assert {qid: sorted(k) for qid, k in kinds.items()} == {
        qid: ["hard", "random"] for qid, _ in train
    }

    evaluation = [
        text
        for lang in ("en", "sw")
        for _, text in build.read_queries(DATA / "queries" / f"{lang}.tsv")
    ]
    for _, text in train:
        assert swahili.contains_query(text, evaluation) is None, text
    for text in evaluation:
        assert swahili.contains_query(text, [t for _, t in train]) is None, text


def test_evaluation_queries_in_swahili_and_the_pseudo_language_with_bitext() -> None:
    """README: the evaluation queries in Swahili and in the pseudo-language (same ids and
    order, a text of their own) and bitext for both languages, in the demo config."""
    en = build.read_queries(DATA / "queries" / "en.tsv")
    for lang in ("sw", "pseudo"):
        translated = build.read_queries(DATA / "queries" / f"{lang}.tsv")
        assert [q for q, _ in translated] == [q for q, _ in en], lang
        assert all(t != e for (_, t), (_, e) in zip(translated, en, strict=True)), lang
    assert len(_rows(DATA / "bitext" / "sw-en.tsv")) == 2079  # DATASHEET's counts
    assert len(_rows(DATA / "bitext" / "pseudo-en.tsv")) == 3085
    config = yaml.safe_load((DATA.parents[1] / "config" / "config.yaml").read_text())
    bitexts = {lang: spec["bitext"]["source"]["path"] for lang, spec in config["languages"].items()}
    assert bitexts == {
        "sw": "data/demo/bitext/sw-en.tsv",
        "pseudo": "data/demo/bitext/pseudo-en.tsv",
    }
