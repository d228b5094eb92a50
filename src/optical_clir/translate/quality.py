"""Translation quality of the query translations: sacrebleu BLEU, chrF and chrF++.

Scores are corpus-level over the queries of one language, with sacrebleu's default settings
and their reproducibility signatures, so the table can be compared with published numbers.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from optical_clir.errors import InputError
from optical_clir.translate._io import atomic_write_text, read_id_tsv

logger = logging.getLogger(__name__)

TABLE_COLUMNS = [
    "language", "system", "n_queries", "BLEU", "chrF", "chrF++",
    "dev_pairs", "dev_BLEU", "dev_chrF", "signatures",
]  # fmt: skip
_METRICS = ("BLEU", "chrF", "chrF++")
_DEV_METRICS = ("dev_BLEU", "dev_chrF")


def translation_quality(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
    """Corpus BLEU, chrF and chrF++ (one reference per segment) with their signatures.

    Empty hypotheses are scored as empty strings, not dropped.
    """
    from sacrebleu.metrics import BLEU, CHRF

    hyps, refs = list(hypotheses), list(references)
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    if not hyps:
        raise ValueError("no segments to score")
    result: dict[str, Any] = {"n_segments": len(hyps)}
    metrics = {"BLEU": BLEU(), "chrF": CHRF(), "chrF++": CHRF(word_order=2)}
    for name, metric in metrics.items():
        result[name] = float(metric.corpus_score(hyps, [refs]).score)
        result[f"{name}_signature"] = str(metric.get_signature())
    return result


def read_scoring_pairs(
    translation_tsv: str | Path, reference_tsv: str | Path
) -> tuple[list[str], list[str], list[str]]:
    """Align translations with English reference queries by qid.

    The translation file is `qid<TAB>source<TAB>translation` (or the English-only
    `qid<TAB>translation`); the reference file is `qid<TAB>text`. Every translated qid must
    have a reference, else `InputError` names the reference file. Returns (qids, hyps, refs)
    in the translation file's order.
    """
    trans_rows = read_id_tsv(translation_tsv, (2, 3), what="translation line")
    widths = {len(fields) for _, fields in trans_rows}
    if len(widths) > 1:
        first = trans_rows[0][1]
        bad = next(n for n, fields in trans_rows if len(fields) != len(first))
        raise InputError(translation_tsv, "mixes 2- and 3-column lines", line=bad)
    refs_by_id = {fields[0]: fields[1] for _, fields in read_id_tsv(reference_tsv, 2)}
    missing = [fields[0] for _, fields in trans_rows if fields[0] not in refs_by_id]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise InputError(
            reference_tsv,
            f"no reference for {len(missing)} translated queries of {translation_tsv}: {shown}",
        )
    extra = len(refs_by_id) - len(trans_rows)
    if extra:
        logger.warning(
            "%s has %d references with no translation in %s; they are not scored",
            reference_tsv,
            extra,
            translation_tsv,
        )
    qids = [fields[0] for _, fields in trans_rows]
    hyps = [fields[-1] for _, fields in trans_rows]
    refs = [refs_by_id[q] for q in qids]
    return qids, hyps, refs


def quality_row(
    language: str,
    system: str,
    translation_tsv: str | Path,
    reference_tsv: str | Path,
    model_dir: str | Path | None = None,
) -> dict[str, Any]:
    """One table row: the scores of one system's translations of one language's queries,
    and, for a model the workflow trained (``model_dir`` with ``dev_scores.json``), its
    scores on the dev bitext (NaN otherwise)."""
    qids, hyps, refs = read_scoring_pairs(translation_tsv, reference_tsv)
    if not qids:
        raise InputError(translation_tsv, "no translations to score")
    scores = translation_quality(hyps, refs)
    dev: dict[str, Any] = {"dev_pairs": 0, **dict.fromkeys(_DEV_METRICS, float("nan"))}
    if model_dir is not None and (Path(model_dir) / "dev_scores.json").is_file():
        record = json.loads((Path(model_dir) / "dev_scores.json").read_text())
        dev = {"dev_pairs": int(record.get("dev_pairs", 0)),
               **{k: float(record.get(k, float("nan"))) for k in _DEV_METRICS}}  # fmt: skip
    return {
        "language": language,
        "system": system,
        "n_queries": len(qids),
        **{name: scores[name] for name in _METRICS},
        **dev,
        "signatures": "; ".join(f"{name}: {scores[f'{name}_signature']}" for name in _METRICS),
    }


def quality_table(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Rows (as from `quality_row`) as a DataFrame with the table's columns, sorted."""
    for i, row in enumerate(rows):
        missing = [c for c in TABLE_COLUMNS if c not in row]
        if missing:
            raise ValueError(f"row {i} lacks columns {missing}")
    frame = pd.DataFrame(
        [{c: row[c] for c in TABLE_COLUMNS} for row in rows], columns=TABLE_COLUMNS
    )
    frame["n_queries"] = frame["n_queries"].astype("int64")
    frame["dev_pairs"] = frame["dev_pairs"].astype("int64")
    for name in (*_METRICS, *_DEV_METRICS):
        frame[name] = frame[name].astype("float64")
    return frame.sort_values(["language", "system"], kind="stable").reset_index(drop=True)


def _md_cell(value: Any) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "–"
    text = f"{value:.2f}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def table_markdown(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table; scores to two decimals, `|` escaped."""
    header = "| " + " | ".join(frame.columns) + " |"
    align = "|" + "|".join(
        "---:" if c in (*_METRICS, *_DEV_METRICS, "n_queries", "dev_pairs") else "---"
        for c in frame.columns
    )
    lines = [header, align + "|"]
    for record in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_md_cell(v) for v in record) + " |")
    return "\n".join(lines) + "\n"


def write_quality_tables(
    rows_or_frame: Sequence[Mapping[str, Any]] | pd.DataFrame,
    csv_path: str | Path,
    md_path: str | Path | None = None,
    notes: Sequence[str] = (),
) -> pd.DataFrame:
    """Write `results/tables/translation.csv` (full precision) and `.md` (with ``notes``
    under the table, e.g. provenance), atomically."""
    frame = (
        rows_or_frame if isinstance(rows_or_frame, pd.DataFrame) else quality_table(rows_or_frame)
    )
    atomic_write_text(csv_path, frame.to_csv(index=False))
    if md_path is not None:
        text = table_markdown(frame)
        if notes:
            text = text.rstrip("\n") + "\n\n" + "".join(f"{n}  \n" for n in notes)
        atomic_write_text(md_path, text)
    written = " and ".join(str(p) for p in (csv_path, md_path) if p is not None)
    logger.info("translation table: %d systems written to %s", len(frame), written)
    return frame


def translation_quality_tables(
    entries: Sequence[Mapping[str, Any]],
    csv_path: str | Path,
    md_path: str | Path | None = None,
    notes: Sequence[str] = (),
) -> pd.DataFrame:
    """Score several (language, system, translation_tsv, reference_tsv) entries and write
    both tables; the entry point for the Snakemake rule."""
    rows = [
        quality_row(
            e["language"], e["system"], e["translation_tsv"], e["reference_tsv"], e.get("model")
        )
        for e in entries
    ]
    return write_quality_tables(rows, csv_path, md_path, notes)
