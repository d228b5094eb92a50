"""The workflow's figure jobs: read per-query measures, compute, write figure and table.

The maths (bootstrap, curves) and the drawing live in :mod:`bootstrap` and :mod:`figures`;
this module only gathers the inputs the rules name and writes the outputs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from optical_clir.evaluation.bootstrap import ci_table, read_per_query_long
from optical_clir.evaluation.figures import (
    learning_curve_figure,
    learning_curve_table,
    map_ci_figure,
    pdf_path,
)
from optical_clir.evaluation.measures import read_per_query
from optical_clir.evaluation.tables import MEASURE_LABELS, provenance_lines
from optical_clir.io import atomic_path, atomic_write_text

logger = logging.getLogger(__name__)


def write_map_ci(
    params: Mapping[str, Any], bootstrap: Mapping[str, Any], png: str | Path, csv: str | Path
) -> pd.DataFrame:
    """The MAP-with-confidence-interval figure and its numbers, from the main table's inputs."""
    measure = params["measure"]
    per_query = read_per_query_long(
        {
            # a system trained once has seed None: -1 keeps it a group key
            (e["language"], e["system"], -1 if e["seed"] is None else e["seed"]): e["path"]
            for e in params["entries"]
        }
    )
    ci = ci_table(
        per_query,
        measure,
        n_resamples=int(bootstrap.get("n_resamples", 10000)),
        confidence=float(bootstrap.get("confidence", 0.95)),
    )
    with atomic_path(csv) as tmp:
        ci.to_csv(tmp, index=False, float_format="%.6f")
    map_ci_figure(
        ci,
        png,
        measure_label=MEASURE_LABELS.get(measure, measure),
        system_labels=params["labels"],
        language_names=params["language_names"],
    )
    logger.info(
        "MAP CI: %d (language, system) intervals written to %s and %s (PDF: %s)",
        len(ci), csv, png, pdf_path(png),
    )  # fmt: skip
    return ci


def _trained_pairs(model_dir: str | Path) -> int:
    """How many bitext pairs a student was trained on (its train_config.json)."""
    path = Path(model_dir) / "train_config.json"
    config = json.loads(path.read_text())
    if "n_train_pairs" not in config:
        raise ValueError(f"{path}: no 'n_train_pairs' (a student trained by an older version?)")
    return int(config["n_train_pairs"])


def write_learning_curve(
    entries: Sequence[Mapping[str, Any]],
    references: Sequence[Mapping[str, Any]],
    params: Mapping[str, Any],
    outputs: Mapping[str, str | Path],
) -> pd.DataFrame:
    """MAP against the number of training pairs per language and method: figure and tables.

    ``entries``: one per student, with ``language``, ``method``, ``pairs`` (``all`` or N),
    ``seed``, ``eval`` (per-query file) and ``model`` (its folder, for the pairs it really
    used: a subset larger than the bitext trains on all of it).
    """
    measure = params["measure"]
    rows = []
    for entry in entries:
        rows.append(
            {
                "language": entry["language"],
                "method": entry["method"],
                "pairs": _trained_pairs(entry["model"]),
                "requested": str(entry["pairs"]),
                "seed": int(entry["seed"]),
                "value": float(read_per_query(entry["eval"])[measure].mean()),
            }
        )
    curve = pd.DataFrame(rows)
    lines: dict[str, dict[str, float]] = {}
    for ref in references:
        value = float(read_per_query(ref["path"])[measure].mean())
        label = params["labels"].get(ref["system"], ref["system"])
        lines.setdefault(ref["language"], {})[label] = value

    table = learning_curve_table(curve)
    with atomic_path(outputs["csv"]) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6f")
    names = params["language_names"]
    label = MEASURE_LABELS.get(measure, measure)
    learning_curve_figure(
        curve.assign(language=curve["language"].map(names)),
        outputs["png"],
        references={names[lang]: refs for lang, refs in lines.items()},
        measure_label=label,
        method_labels=params["labels"],
    )
    atomic_write_text(outputs["md"], _learning_curve_markdown(table, names, label, params))
    logger.info(
        "learning curve: %d points (%d students) written to %s, %s and %s (PDF: %s)",
        len(table), len(curve), outputs["csv"], outputs["md"], outputs["png"],
        pdf_path(outputs["png"]),
    )  # fmt: skip
    return table


def _learning_curve_markdown(
    table: pd.DataFrame, names: Mapping[str, str], label: str, params: Mapping[str, Any]
) -> str:
    header = f"| language | method | training pairs | {label} mean | sd | seeds |"
    body = [
        f"| {names.get(r.language, r.language)} | {r.method} | {r.pairs} | {r.mean:.3f} | "
        + (f"{r.sd:.3f}" if pd.notna(r.sd) else "–")
        + f" | {r.n_seeds} |"
        for r in table.itertuples()
    ]
    notes = [
        f"Students distilled on the first N pairs of each language's training bitext; {label} "
        "over the language's queries; mean and standard deviation over seeds.",
        *provenance_lines(
            params["config_hash"],
            params.get("git_commit", "unknown"),
            params.get("downloads"),
            params.get("dense_search"),
        ),
    ]
    return (
        "\n".join(
            [
                f"# Learning curve ({label})",
                "",
                header,
                "|---|---|---|---|---|---|",
                *body,
                "",
                *[f"{note}  " for note in notes],
            ]
        )
        + "\n"
    )
