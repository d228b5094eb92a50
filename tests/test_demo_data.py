"""The shipped demo bitexts: what the build code makes, no query leakage, valid alignments."""

from __future__ import annotations

from pathlib import Path

import pytest

from optical_clir.data.demo import build, pseudolang, swahili

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
