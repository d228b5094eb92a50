"""A pseudo-language made deterministically from English, with a gold word alignment.

The demo needs a "low-resource language" whose word alignment to English is known exactly,
so that the optimal-transport token alignment can be checked against a gold standard. The
pseudo-language is English in disguise; `translate` applies, in this order:

1. Tokenisation (`tokenize`). Curly apostrophes become ``'``. A token is a run of letters, a
   clitic (``n't``, ``'s``, ``'re``, ``'ll``, ``'ve``, ``'d``, ``'m``; ``don't`` gives
   ``do`` + ``n't``), a number (digits with inner ``.`` or ``,``), or one other
   non-space character (punctuation, hyphens). These are the English tokens; alignment index
   j counts them from 0.
2. Dropping: the articles ``the``, ``a``, ``an`` (any case) are removed and stay unaligned.
3. Morphology: a word w (lowercased) is analysed as stem + inflectional ``-s`` unless
   len(w) < 4, w ends in ``ss``, ``us`` or ``is``, or w is in `NOT_INFLECTED`. The stem is
   w minus ``ies`` plus ``y`` (``countries`` -> ``country``); w minus ``es`` if w ends in
   ``sses``, ``ches``, ``shes``, ``xes``, ``zes`` or ``oes``; else w minus ``s``. The rule is
   orthographic: plural nouns and third-person verbs alike (``plants``). An inflected word
   becomes the stem's pseudo-word plus the suffix ``zi`` inside the same word.
4. Reordering (our choice): a maximal run of modifiers (words in `MODIFIERS`: common
   adjectives, number words one..thousand, and ``this``, ``these``, ``those``) directly
   followed by a content word (a word not in `MODIFIERS` nor `FUNCTION_WORDS`) moves after
   that word, keeping the modifiers' own order: "three big farms" -> "farms three big".
5. Merging, on the reordered sequence: ``of`` becomes the prefix ``za`` of the next unit
   when that unit is a word; ``'s`` becomes the suffix ``zo`` and ``not``/``n't`` the suffix
   ``zu`` of the previous unit when that unit is a word. A merged pseudo-word is aligned to
   its host English word and to the merged English word. Where no host exists, the word is
   kept as a unit of its own.
6. Substitution: every remaining word's lowercased stem is replaced by its pseudo-word
   (`candidate`, or a lexicon from `build_lexicon` that removes collisions); numbers and
   punctuation are copied unchanged. The pseudo-language is written in lower case.

Pseudo-words are 2 (stem of 1-3 letters), 3 (4-6 letters) or 4 (7+ letters) CV syllables,
consonants ``p t k b d g m n s l r v h f w j``, vowels ``a e i o u`` (``e`` never last),
drawn from SHA-256 of the seed, the attempt number and the stem. The letter ``z`` only occurs
in the affixes ``za``, ``zi``, ``zo`` and ``zu``, so every pseudo token splits back into
prefix, stem and suffixes in one way only.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

SEED = "optical-demo-pseudo-v1"
CONSONANTS = "ptkbdgmnslrvhfwj"
VOWELS = "aeiou"
FINAL_VOWELS = "aiou"
PLURAL_SUFFIX = "zi"
OF_PREFIX = "za"
POSSESSIVE_SUFFIX = "zo"
NEGATION_SUFFIX = "zu"
DROPPED = frozenset({"the", "a", "an"})
NEGATIONS = frozenset({"not", "n't"})

NOT_INFLECTED = frozenset(
    [
        "does",
        "goes",
        "this",
        "was",
        "has",
        "his",
        "hers",
        "its",
        "ours",
        "yours",
        "theirs",
        "yes",
        "always",
        "sometimes",
        "perhaps",
        "besides",
        "news",
        "series",
        "species",
        "means",
        "whereas",
        "towards",
        "afterwards",
        "upwards",
        "downwards",
        "backwards",
        "outwards",
        "forwards",
        "gas",
        "bias",
        "atlas",
        "canvas",
        "christmas",
        "alias",
        "lens",
        "chaos",
        "mathematics",
        "physics",
        "economics",
        "politics",
        "athletics",
        "measles",
        "diabetes",
        "tuberculosis",
    ]
)

NUMBER_WORDS = frozenset(
    [
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "fifteen",
        "twenty",
        "thirty",
        "forty",
        "fifty",
        "sixty",
        "hundred",
        "thousand",
        "first",
        "second",
        "third",
    ]
)
ADJECTIVES = frozenset(
    [
        "big",
        "small",
        "large",
        "little",
        "long",
        "short",
        "tall",
        "high",
        "low",
        "new",
        "old",
        "young",
        "good",
        "bad",
        "best",
        "better",
        "worse",
        "worst",
        "poor",
        "rich",
        "clean",
        "dirty",
        "safe",
        "dangerous",
        "fresh",
        "dry",
        "wet",
        "heavy",
        "light",
        "hot",
        "cold",
        "warm",
        "cool",
        "strong",
        "weak",
        "cheap",
        "expensive",
        "free",
        "local",
        "national",
        "rural",
        "urban",
        "traditional",
        "modern",
        "public",
        "private",
        "main",
        "major",
        "important",
        "popular",
        "famous",
        "common",
        "rare",
        "sick",
        "healthy",
        "green",
        "red",
        "white",
        "black",
        "brown",
        "yellow",
        "ripe",
        "raw",
        "sweet",
        "bitter",
        "deep",
        "shallow",
        "wide",
        "narrow",
        "full",
        "empty",
        "busy",
        "quiet",
        "early",
        "late",
        "annual",
        "seasonal",
        "daily",
        "weekly",
        "monthly",
        "many",
        "few",
        "several",
        "other",
        "same",
        "different",
        "whole",
        "entire",
        "wild",
        "domestic",
        "coastal",
        "northern",
        "southern",
        "eastern",
        "western",
        "central",
        "international",
        "illegal",
        "legal",
        "simple",
        "difficult",
        "easy",
        "hard",
        "serious",
        "severe",
        "mild",
        "natural",
        "organic",
        "fertile",
        "sandy",
        "rainy",
        "sunny",
        "windy",
        "beautiful",
        "happy",
        "proud",
        "commercial",
        "electric",
        "mobile",
        "digital",
        "political",
        "democratic",
        "independent",
        "official",
        "regional",
        "open",
    ]
)
DEMONSTRATIVES = frozenset({"this", "these", "those"})
MODIFIERS = ADJECTIVES | NUMBER_WORDS | DEMONSTRATIVES

FUNCTION_WORDS = frozenset(
    [
        "the",
        "a",
        "an",
        "of",
        "to",
        "in",
        "on",
        "at",
        "by",
        "for",
        "from",
        "with",
        "without",
        "into",
        "onto",
        "about",
        "over",
        "under",
        "after",
        "before",
        "during",
        "through",
        "between",
        "among",
        "across",
        "near",
        "behind",
        "against",
        "until",
        "since",
        "than",
        "as",
        "and",
        "or",
        "but",
        "nor",
        "so",
        "if",
        "because",
        "while",
        "when",
        "where",
        "why",
        "how",
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "that",
        "there",
        "here",
        "then",
        "also",
        "too",
        "very",
        "not",
        "n't",
        "'s",
        "'re",
        "'ll",
        "'ve",
        "'d",
        "'m",
        "be",
        "is",
        "am",
        "are",
        "was",
        "were",
        "been",
        "being",
        "do",
        "does",
        "did",
        "done",
        "have",
        "has",
        "had",
        "having",
        "will",
        "would",
        "shall",
        "should",
        "can",
        "could",
        "may",
        "might",
        "must",
        "i",
        "you",
        "he",
        "she",
        "it",
        "we",
        "they",
        "me",
        "him",
        "her",
        "us",
        "them",
        "my",
        "your",
        "its",
        "our",
        "their",
        "mine",
        "yours",
        "ours",
        "theirs",
        "each",
        "every",
        "all",
        "any",
        "some",
        "no",
        "such",
        "only",
        "just",
        "more",
        "most",
        "less",
        "least",
        "much",
        "own",
    ]
)

_LETTERS = r"[^\W\d_]+"
_TOKEN_RE = re.compile(
    rf"{_LETTERS}(?=n't\b)|n't\b|'(?:s|re|ll|ve|d|m)\b|{_LETTERS}|\d+(?:[.,]\d+)*|[^\w\s]|_",
    re.IGNORECASE,
)


def tokenize(sentence: str) -> list[str]:
    """Split an English sentence into the tokens that alignment indices refer to (step 1)."""
    return _TOKEN_RE.findall(sentence.replace("\u2019", "'").replace("\u2018", "'"))


def _is_word(token: str) -> bool:
    return bool(re.fullmatch(rf"{_LETTERS}|'[a-z]+|n't", token, re.IGNORECASE))


def split_inflection(word: str) -> tuple[str, bool]:
    """Return (stem, inflected) for a lowercased word by the orthographic -s rule (step 3)."""
    w = word.lower()
    if (
        len(w) < 4
        or not w.endswith("s")
        or w.endswith(("ss", "us", "is"))
        or w in NOT_INFLECTED
        or not w.isalpha()
    ):
        return w, False
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y", True
    if w.endswith(("sses", "ches", "shes", "xes", "zes", "oes")):
        return w[:-2], True
    return w[:-1], True


def syllable_count(stem: str) -> int:
    """Number of CV syllables of a stem's pseudo-word: 2, 3 or 4 by the stem's length."""
    n = len(stem)
    return 2 if n <= 3 else 3 if n <= 6 else 4


def candidate(stem: str, attempt: int = 0, seed: str = SEED) -> str:
    """The attempt-th pseudo-word for a lowercased stem: CV syllables drawn from SHA-256."""
    digest = hashlib.sha256(f"{seed}\x1f{attempt}\x1f{stem}".encode()).digest()
    value = int.from_bytes(digest, "big")
    n = syllable_count(stem)
    syllables = []
    for k in range(n):
        value, c = divmod(value, len(CONSONANTS))
        vowels = FINAL_VOWELS if k == n - 1 else VOWELS
        value, v = divmod(value, len(vowels))
        syllables.append(CONSONANTS[c] + vowels[v])
    return "".join(syllables)


def build_lexicon(
    stems: Iterable[str], reserved: Iterable[str] = (), seed: str = SEED
) -> dict[str, str]:
    """Map each stem to a pseudo-word with no collisions and none equal to a reserved word.

    Stems are processed in sorted order; each takes its first `candidate` (attempt 0, 1,
    ...) not already taken and not in `reserved` (the English vocabulary, lowercased), so
    the result depends on the set of stems only, not on their order.
    """
    forbidden = {r.lower() for r in reserved}
    lexicon: dict[str, str] = {}
    for stem in sorted({s.lower() for s in stems}):
        attempt = 0
        form = candidate(stem, attempt, seed)
        while form in forbidden:
            attempt += 1
            form = candidate(stem, attempt, seed)
        forbidden.add(form)
        lexicon[stem] = form
    return lexicon


@dataclass
class _Unit:
    token: str
    kind: str  # "word" or "other"
    sources: list[int]
    stem: str = ""
    inflected: bool = False
    prefix: str = ""
    suffixes: list[str] = field(default_factory=list)


def _units(english_tokens: list[str]) -> list[_Unit]:
    units = []
    for j, token in enumerate(english_tokens):
        low = token.lower()
        if low in DROPPED:
            continue
        if _is_word(token):
            stem, inflected = split_inflection(low)
            units.append(_Unit(low, "word", [j], stem, inflected))
        else:
            units.append(_Unit(token, "other", [j]))
    return units


def _is_content(unit: _Unit) -> bool:
    return unit.kind == "word" and unit.token not in MODIFIERS and unit.token not in FUNCTION_WORDS


def _reorder(units: list[_Unit]) -> list[_Unit]:
    out: list[_Unit] = []
    i = 0
    while i < len(units):
        if units[i].kind == "word" and units[i].token in MODIFIERS:
            k = i
            while k < len(units) and units[k].kind == "word" and units[k].token in MODIFIERS:
                k += 1
            if k < len(units) and _is_content(units[k]):
                out.append(units[k])
                out.extend(units[i:k])
                i = k + 1
                continue
            out.extend(units[i:k])
            i = k
            continue
        out.append(units[i])
        i += 1
    return out


def _merge(units: list[_Unit]) -> list[_Unit]:
    out: list[_Unit] = []
    pending_of: _Unit | None = None
    for unit in units:
        is_word = unit.kind == "word"
        if pending_of is not None:
            if is_word and unit.token not in NEGATIONS and unit.token not in {"of", "'s"}:
                unit.prefix = OF_PREFIX
                unit.sources = sorted(unit.sources + pending_of.sources)
            else:
                out.append(pending_of)
            pending_of = None
        if is_word and unit.token == "of":
            pending_of = unit
            continue
        suffix = {"'s": POSSESSIVE_SUFFIX}.get(unit.token)
        if is_word and unit.token in NEGATIONS:
            suffix = NEGATION_SUFFIX
        if suffix is not None and out and out[-1].kind == "word":
            out[-1].suffixes.append(suffix)
            out[-1].sources = sorted(out[-1].sources + unit.sources)
            continue
        out.append(unit)
    if pending_of is not None:
        out.append(pending_of)
    return out


def translate(
    english_sentence: str, lexicon: Mapping[str, str] | None = None, seed: str = SEED
) -> tuple[list[str], list[str], list[tuple[int, int]]]:
    """Turn English into the pseudo-language; return (pseudo_tokens, english_tokens, alignment).

    The alignment lists pairs (i, j): pseudo token i comes from English token j, sorted;
    dropped articles are unaligned. Stems missing from `lexicon` use `candidate(stem, 0)`.
    """
    english_tokens = tokenize(english_sentence)
    units = _merge(_reorder(_units(english_tokens)))
    pseudo_tokens: list[str] = []
    alignment: list[tuple[int, int]] = []
    for i, unit in enumerate(units):
        if unit.kind == "word":
            base = lexicon.get(unit.stem) if lexicon is not None else None
            form = base if base is not None else candidate(unit.stem, 0, seed)
            if unit.inflected:
                form += PLURAL_SUFFIX
            form = unit.prefix + form + "".join(unit.suffixes)
        else:
            form = unit.token
        pseudo_tokens.append(form)
        alignment.extend((i, j) for j in unit.sources)
    return pseudo_tokens, english_tokens, sorted(alignment)


def stems_of(english_sentences: Iterable[str]) -> set[str]:
    """All stems (step 3) of the words that `translate` substitutes in these sentences."""
    stems = set()
    for sentence in english_sentences:
        for token in tokenize(sentence):
            low = token.lower()
            if _is_word(token) and low not in DROPPED:
                stems.add(split_inflection(low)[0])
    return stems
