"""Build (or, with --check, verify) the demo bitexts and pseudo-language queries.

Writes under the demo folder (default: data/demo of the repository):
  queries/pseudo.tsv       the English evaluation queries in the pseudo-language
  bitext/sw-en.tsv         Swahili-English pairs from `swahili.generate`
  bitext/pseudo-en.tsv     pseudo-English pairs; the English side is tokenised, space-joined
  bitext/pseudo-en.align   gold alignment, Pharaoh "i-j" per pair, same order

Run: python -m optical_clir.data.demo.build [--check] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import tempfile
from pathlib import Path

from optical_clir.data.demo import pseudolang, swahili
from optical_clir.errors import InputError

logger = logging.getLogger(__name__)

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[4] / "data" / "demo"
MIN_PAIRS = 1500
MIN_WORDS, MAX_WORDS = 3, 60
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(A-Z0-9])")


def read_queries(path: Path) -> list[tuple[str, str]]:
    """Read a `qid<TAB>text` query file."""
    queries = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0] or not parts[1].strip():
            raise InputError(path, "expected 'qid<TAB>text'", line=n)
        queries.append((parts[0], parts[1].strip()))
    return queries


def split_sentences(text: str) -> list[str]:
    """Split passage text into sentences at . ! ? followed by space and a capital or digit."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def read_passage_sentences(path: Path) -> list[str]:
    """Sentences of all passages in a docs.jsonl file, in file order; [] if the file is absent."""
    if not path.exists():
        logger.warning("%s not found: the pseudo bitext uses the Swahili bitext only", path)
        return []
    sentences = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
            text = doc["text"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise InputError(path, f"not a document object: {err}", line=n) from err
        sentences.extend(split_sentences(text))
    return sentences


def build_sw_en(queries: list[str]) -> list[tuple[str, str]]:
    """The Swahili bitext; raises ValueError if a pair equals or contains an evaluation query."""
    pairs = swahili.generate()
    for sw, en in pairs:
        for side in (sw, en):
            hit = swahili.contains_query(side, queries)
            if hit is not None:
                raise ValueError(f"Swahili bitext pair {sw!r} / {en!r} contains query {hit!r}")
    if len(pairs) < MIN_PAIRS:
        raise ValueError(f"only {len(pairs)} Swahili pairs, need {MIN_PAIRS}")
    return pairs


def build_outputs(data_dir: Path) -> dict[str, str]:
    """Compute every output file's text (relative path -> content) from the inputs."""
    en_queries = read_queries(data_dir / "queries" / "en.tsv")
    sw_queries = read_queries(data_dir / "queries" / "sw.tsv")
    all_queries = [q for _, q in en_queries] + [q for _, q in sw_queries]
    sw_en = build_sw_en(all_queries)

    english: list[str] = []
    seen: set[str] = set()
    dropped = 0
    candidates = read_passage_sentences(data_dir / "docs.jsonl") + [en for _, en in sw_en]
    for sentence in candidates:
        key = swahili.normalise(sentence)
        if key in seen or not MIN_WORDS <= len(pseudolang.tokenize(sentence)) <= MAX_WORDS:
            continue
        if swahili.contains_query(sentence, all_queries) is not None:
            dropped += 1
            continue
        seen.add(key)
        english.append(sentence)
    if dropped:
        logger.info("left out %d English sentences that contain an evaluation query", dropped)

    texts = english + [q for _, q in en_queries]
    reserved = {t.lower() for s in texts for t in pseudolang.tokenize(s)}
    lexicon = pseudolang.build_lexicon(pseudolang.stems_of(texts), reserved)

    pseudo_queries = []
    for qid, text in en_queries:
        tokens, _, _ = pseudolang.translate(text, lexicon)
        pseudo_queries.append((qid, " ".join(tokens)))
    bitext_lines, align_lines = [], []
    for sentence in english:
        tokens, en_tokens, alignment = pseudolang.translate(sentence, lexicon)
        pseudo = " ".join(tokens)
        if swahili.contains_query(pseudo, [q for _, q in pseudo_queries]) is not None:
            raise ValueError(f"pseudo sentence {pseudo!r} contains a pseudo evaluation query")
        bitext_lines.append(f"{pseudo}\t{' '.join(en_tokens)}")
        align_lines.append(" ".join(f"{i}-{j}" for i, j in alignment))
    if len(bitext_lines) < MIN_PAIRS:
        raise ValueError(f"only {len(bitext_lines)} pseudo pairs, need {MIN_PAIRS}")

    def lines(rows: list[str]) -> str:
        return "".join(f"{row}\n" for row in rows)

    return {
        "queries/pseudo.tsv": lines([f"{qid}\t{text}" for qid, text in pseudo_queries]),
        "bitext/sw-en.tsv": lines([f"{sw}\t{en}" for sw, en in sw_en]),
        "bitext/pseudo-en.tsv": lines(bitext_lines),
        "bitext/pseudo-en.align": lines(align_lines),
    }


def write_atomic(path: Path, text: str) -> None:
    """Write text to path through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check(data_dir: Path) -> list[str]:
    """Relative paths of the output files that are missing or differ from what the code makes."""
    outputs = build_outputs(data_dir)
    stale = []
    for rel, text in outputs.items():
        path = data_dir / rel
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            stale.append(rel)
    return stale


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--check", action="store_true", help="fail if shipped files differ")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.check:
        stale = check(args.data_dir)
        if stale:
            print(f"out of date (re-run the build): {', '.join(stale)}", file=sys.stderr)
            return 1
        print("demo bitexts are up to date")
        return 0
    for rel, text in build_outputs(args.data_dir).items():
        write_atomic(args.data_dir / rel, text)
        logger.info("wrote %s (%d lines)", args.data_dir / rel, text.count("\n"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
