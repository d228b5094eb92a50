"""Properties of the pseudo-language generator (optical_clir.data.demo.pseudolang)."""

from __future__ import annotations

import re

import pytest

from optical_clir.data.demo import pseudolang as pl

SENTENCES = [
    "Farmers plant maize during the rainy season.",
    "The teacher's old books are not cheap.",
    "Many children of the village don't drink clean water.",
    "In 2019, three big ships arrived at Mombasa port!",
]


def test_deterministic() -> None:
    for sentence in SENTENCES:
        assert pl.translate(sentence) == pl.translate(sentence)
    assert pl.candidate("maize") == pl.candidate("maize")
    assert pl.candidate("maize", seed="other") != pl.candidate("maize")


def test_worked_example_by_hand() -> None:
    # "The farmers of the village do n't plant three big farms ."
    #   drop The, the; farms -> farm+zi; "three big farms" -> "farms three big";
    #   "of" prefixes village (za-), "n't" suffixes do (-zu).
    pseudo, english, alignment = pl.translate(
        "The farmers of the village don't plant three big farms."
    )
    c = pl.candidate
    assert english == [
        "The", "farmers", "of", "the", "village", "do", "n't",
        "plant", "three", "big", "farms", ".",
    ]  # fmt: skip
    assert pseudo == [
        c("farmer") + "zi",
        "za" + c("village"),
        c("do") + "zu",
        c("plant"),
        c("farm") + "zi",
        c("three"),
        c("big"),
        ".",
    ]
    assert alignment == [
        (0, 1), (1, 2), (1, 4), (2, 5), (2, 6), (3, 7), (4, 10), (5, 8), (6, 9), (7, 11)
    ]  # fmt: skip


def test_alignment_valid() -> None:
    for sentence in SENTENCES:
        pseudo, english, alignment = pl.translate(sentence)
        assert alignment == sorted(set(alignment))
        assert all(0 <= i < len(pseudo) and 0 <= j < len(english) for i, j in alignment)
        assert {i for i, _ in alignment} == set(range(len(pseudo)))  # every pseudo word aligned
        js = [j for _, j in alignment]
        assert len(js) == len(set(js))  # an English word feeds at most one pseudo word
        dropped = set(range(len(english))) - set(js)
        assert all(english[j].lower() in pl.DROPPED for j in dropped)


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("farmers", ("farmer", True)),
        ("countries", ("country", True)),
        ("churches", ("church", True)),
        ("potatoes", ("potato", True)),
        ("grass", ("grass", False)),
        ("bus", ("bus", False)),
        ("this", ("this", False)),
        ("analysis", ("analysis", False)),
    ],
)
def test_split_inflection(word: str, expected: tuple[str, bool]) -> None:
    assert pl.split_inflection(word) == expected


def test_word_shape() -> None:
    for stem in ["a", "maize", "vaccination", "the"]:
        form = pl.candidate(stem)
        assert re.fullmatch(r"(?:[ptkbdgmnslrvhfwj][aeiou])+", form)
        assert len(form) == 2 * pl.syllable_count(stem)
        assert form[-1] != "e" and "z" not in form


def test_lexicon_no_collisions_and_reserved() -> None:
    stems = ["maize", "farmer", "tea", "coffee", "x", "y", "z"]
    candidate_of_tea = pl.candidate("tea")
    lexicon = pl.build_lexicon(stems, reserved=[candidate_of_tea])
    assert len(set(lexicon.values())) == len(lexicon)
    assert lexicon["tea"] != candidate_of_tea
    assert pl.build_lexicon(reversed(stems), reserved=[candidate_of_tea]) == lexicon
