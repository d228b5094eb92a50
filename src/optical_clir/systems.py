"""The systems the workflow compares: one registry for validation, the rules and the tables.

A system is a query side and a retriever over the same English documents. Students are
trained per seed (and can come in variants, see :mod:`optical_clir.variants`); every other
system is built once.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["STUDENT_METHODS", "SYSTEMS", "System", "system"]


@dataclass(frozen=True)
class System:
    """``queries``: ``english`` (the original English query), ``raw`` (the L query as is),
    ``nmt`` (the L query machine-translated), ``psq`` (the L query as probabilistic
    structured query) or ``student`` (the L query through a distilled query encoder);
    ``retriever``: ``bm25`` or ``dense`` (the teacher's document index)."""

    key: str
    label: str
    retriever: str
    queries: str

    @property
    def is_student(self) -> bool:
        """Trained once per seed, on the language's bitext."""
        return self.queries == "student"

    @property
    def needs_english(self) -> bool:
        """Searches with the collection's English queries (empty cell where there are none)."""
        return self.queries == "english"


SYSTEMS: dict[str, System] = {
    s.key: s
    for s in (
        System("bm25_en", "BM25 (English queries)", "bm25", "english"),
        System("bm25_raw", "BM25 (L queries)", "bm25", "raw"),
        System("bm25_nmt", "BM25 + NMT", "bm25", "nmt"),
        System("bm25_psq", "BM25 + PSQ", "bm25", "psq"),
        System("teacher_en", "Teacher (English queries)", "dense", "english"),
        System("teacher_raw", "Teacher zero-shot (L queries)", "dense", "raw"),
        System("teacher_nmt", "Teacher + NMT", "dense", "nmt"),
        System("kd_mse", "KD-MSE student", "dense", "student"),
        System("optical", "OPTICAL student", "dense", "student"),
    )
}

# Distillation methods: the student systems.
STUDENT_METHODS: tuple[str, ...] = tuple(k for k, s in SYSTEMS.items() if s.is_student)


def system(key: str) -> System:
    """The registered system ``key`` (KeyError names the known ones)."""
    try:
        return SYSTEMS[key]
    except KeyError:
        raise KeyError(f"unknown system {key!r}; known: {', '.join(SYSTEMS)}") from None
