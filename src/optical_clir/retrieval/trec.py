"""TREC run files: ``qid Q0 docid rank score tag``."""

from __future__ import annotations

from pathlib import Path

from optical_clir.errors import InputError
from optical_clir.io import atomic_write_text, open_text

Ranking = dict[str, list[tuple[str, float]]]


def write_run(ranking: Ranking, path: str | Path, tag: str) -> None:
    """Write a ranking (per query, docs with scores) sorted by score, ties broken by docid."""
    lines = []
    for qid, scored in ranking.items():
        ordered = sorted(scored, key=lambda item: (-item[1], item[0]))
        for rank, (docid, score) in enumerate(ordered, start=1):
            lines.append(f"{qid} Q0 {docid} {rank} {score:.6f} {tag}\n")
    atomic_write_text(path, "".join(lines))


def read_run(path: str | Path) -> Ranking:
    """Read a TREC run; malformed lines are errors naming the line."""
    ranking: Ranking = {}
    with open_text(path) as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 6:
                raise InputError(
                    path,
                    f"expected 6 fields 'qid Q0 docid rank score tag', got {len(parts)}",
                    line=lineno,
                )
            try:
                score = float(parts[4])
            except ValueError:
                raise InputError(path, f"score '{parts[4]}' is not a number", line=lineno) from None
            ranking.setdefault(parts[0], []).append((parts[2], score))
    return ranking
