"""PSQ: IBM Model 1 by EM, translation tables, weighted queries, and BM25 over them."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from optical_clir.errors import InputError
from optical_clir.translate.psq import (
    NULL,
    ibm_model1,
    psq_query,
    read_psq_queries,
    read_translation_table,
    train_psq,
    translation_table,
    word_tokens,
    write_translation_table,
)

LEXICON = {"paka": "cat", "mbwa": "dog", "ndege": "bird", "anakula": "eats", "analala": "sleeps",
           "mtoni": "river", "shambani": "farm", "leo": "today"}  # fmt: skip


def _toy_corpus(n: int, seed: int = 0) -> list[tuple[list[str], list[str]]]:
    """Word-for-word translations (English adds 'the', a word with no source) in shuffled
    order on the English side, so only co-occurrence statistics reveal the lexicon."""
    rng = random.Random(seed)
    words = list(LEXICON)
    corpus = []
    for _ in range(n):
        src = rng.sample(words, rng.randint(2, 4))
        en = [LEXICON[w] for w in src] + ["the"]
        rng.shuffle(en)
        corpus.append((src, en))
    return corpus


def test_em_recovers_the_known_word_translations() -> None:
    t = ibm_model1(_toy_corpus(300), iterations=10)
    for f, e in LEXICON.items():
        best = max(t[f], key=t[f].get)
        assert best == e, (f, best)
        assert t[f][e] > 0.8
        assert sum(t[f].values()) == pytest.approx(1.0)
    # the English word without a source is explained by NULL
    assert max(t[NULL], key=t[NULL].get) == "the"
    assert ibm_model1(_toy_corpus(300), iterations=10) == t  # deterministic


def test_translation_table_cuts_by_cumulative_probability_and_top_k() -> None:
    t = {"a": {"x": 0.5, "y": 0.3, "z": 0.15, "w": 0.05}, NULL: {"x": 1.0}, "b": {"q": 0.0005}}
    assert translation_table(t, threshold=0.75, top_k=5) == {"a": [("x", 0.5), ("y", 0.3)]}
    assert translation_table(t, threshold=1.0, top_k=2)["a"] == [("x", 0.5), ("y", 0.3)]
    assert translation_table(t, threshold=1.0, top_k=9, min_probability=0.1)["a"] == [
        ("x", 0.5), ("y", 0.3), ("z", 0.15)]  # fmt: skip
    with pytest.raises(ValueError):
        translation_table(t, threshold=0.0)


def test_psq_weights_per_term_sum_to_one_and_untranslated_terms_are_kept() -> None:
    table = {"paka": [("cat", 0.6), ("cats", 0.2)], "mtoni": [("river", 0.9)]}
    terms = psq_query("Paka, mtoni 2016!", table)
    assert [t.source for t in terms] == ["paka", "mtoni", "2016"]
    for term in terms:
        assert sum(w for _, w in term.translations) == pytest.approx(1.0)
    assert [e for e, _ in terms[0].translations] == ["cat", "cats"]
    assert [w for _, w in terms[0].translations] == pytest.approx([0.75, 0.25])
    assert terms[2].translations == (("2016", 1.0),)  # no translation: kept as is


def test_tables_round_trip_and_bad_lines(tmp_path: Path) -> None:
    table = {"paka": [("cat", 0.75), ("cats", 0.25)], "leo": [("today", 1.0)]}
    write_translation_table(table, tmp_path / "t.tsv")
    assert read_translation_table(tmp_path / "t.tsv") == table
    (tmp_path / "bad.tsv").write_text("source\tenglish\tprobability\npaka\tcat\t1.5\n")
    with pytest.raises(InputError) as info:
        read_translation_table(tmp_path / "bad.tsv")
    assert info.value.line == 2


def test_train_psq_writes_the_table_and_weighted_queries(tmp_path: Path) -> None:
    corpus = _toy_corpus(200, seed=1)
    bitext = tmp_path / "train.tsv"
    bitext.write_text("".join(f"{' '.join(s)}\t{' '.join(e)}\n" for s, e in corpus))
    queries = tmp_path / "q.tsv"
    queries.write_text("Q1\tpaka mtoni\nQ2\tmbwa nyumbani\n")
    counts = train_psq(bitext, queries, tmp_path / "table.tsv", tmp_path / "q.jsonl")
    assert counts["query_terms"] == 4 and counts["translated_terms"] == 3
    weighted = read_psq_queries(tmp_path / "q.jsonl")
    assert list(weighted) == ["Q1", "Q2"]
    assert weighted["Q1"][0]["translations"][0][0] == "cat"
    assert weighted["Q2"][1] == {"source": "nyumbani", "translations": [["nyumbani", 1.0]]}
    first = json.loads((tmp_path / "q.jsonl").read_text().splitlines()[0])
    assert first["text"] == "paka mtoni"
    assert word_tokens("Don't STOP") == ["don't", "stop"]
