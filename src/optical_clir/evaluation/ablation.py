"""The ablation table: OPTICAL's (and KD-MSE's) variants side by side.

Per language and method, every student of the ablation (the default and each one-factor
variant) with its dev criterion (the number that chooses settings), its MAP on the
evaluation queries and, where a gold alignment exists, its OT word-alignment accuracy
(both only reported), and a paired t-test of its per-query scores against the default
(seed-averaged; Holm over the variants of a language and method).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from optical_clir.evaluation.measures import read_per_query
from optical_clir.evaluation.selection import read_dev_criterion
from optical_clir.evaluation.significance import correct, paired_ttest
from optical_clir.io import atomic_path, atomic_write_text
from optical_clir.variants import SEPARATOR

logger = logging.getLogger(__name__)

__all__ = ["ablation_frame", "write_ablation"]

COLUMNS = [
    "language", "method", "student", "change", "seeds", "dev_p_at_1", "dev_mrr", "value",
    "alignment", "plan_row_max_ratio", "difference", "p", "p_adjusted", "significant",
]  # fmt: skip


def _plan_ratio(model_dir: str | Path) -> float:
    record = json.loads((Path(model_dir) / "dev_criterion.json").read_text())
    plan = record.get("plan") or {}
    return float(plan.get("row_max_ratio", float("nan")))


def ablation_frame(
    entries: Sequence[Mapping[str, Any]],
    measure: str = "AP",
    correction: str = "holm",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """One row per (language, method, student); see the module docstring."""
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for entry in entries:
        groups.setdefault((entry["language"], entry["method"], entry["student"]), []).append(entry)
    rows, per_query = [], {}
    for (lang, method, student), runs in groups.items():
        dev = [read_dev_criterion(r["model"]) for r in runs]
        tables = [read_per_query(r["eval"])[measure] for r in runs]
        per_query[(lang, method, student)] = sum(tables[1:], tables[0].copy()) / len(tables)
        aligned = [json.loads(Path(r["alignment"]).read_text())["accuracy"]
                   for r in runs if r.get("alignment")]  # fmt: skip
        rows.append({
            "language": lang,
            "method": method,
            "student": student,
            "change": student.partition(SEPARATOR)[2] or "default",
            "seeds": len(runs),
            "dev_p_at_1": float(np.mean([d["p_at_1"] for d in dev])),
            "dev_mrr": float(np.mean([d["mrr"] for d in dev])),
            "value": float(np.mean([t.mean() for t in tables])),
            "alignment": float(np.mean(aligned)) if aligned else float("nan"),
            "plan_row_max_ratio": float(np.mean([_plan_ratio(r["model"]) for r in runs])),
        })  # fmt: skip
    frame = pd.DataFrame(rows)
    frame["difference"], frame["p"] = np.nan, np.nan
    for i, row in frame.iterrows():
        if row["student"] == row["method"]:
            continue
        mine = per_query[(row["language"], row["method"], row["student"])]
        base = per_query[(row["language"], row["method"], row["method"])]
        if list(mine.index) != list(base.index):
            raise ValueError(
                f"{row['student']} and {row['method']} were evaluated on different queries"
            )
        frame.loc[i, "difference"] = float((mine - base).mean())
        frame.loc[i, "p"] = paired_ttest(mine.to_numpy(), base.to_numpy())[1]
    frame["p_adjusted"] = np.nan
    for _, group in frame.groupby(["language", "method"], sort=False):
        tested = group.index[group["p"].notna()]
        if len(tested):
            frame.loc[tested, "p_adjusted"] = correct(list(frame.loc[tested, "p"]), correction)
    frame["significant"] = frame["p_adjusted"] < alpha
    return frame[COLUMNS]


def _fmt(value: float, digits: int = 3) -> str:
    return "–" if pd.isna(value) else f"{value:.{digits}f}"


def write_ablation(
    entries: Sequence[Mapping[str, Any]],
    references: Sequence[Mapping[str, Any]],
    params: Mapping[str, Any],
    outputs: Mapping[str, str | Path],
    notes: Sequence[str] = (),
) -> pd.DataFrame:
    """The ablation table (CSV, Markdown) and its figure; ``references`` are the zero-shot
    teacher's dev criterion per language (``language``, ``path``)."""
    from optical_clir.evaluation.figures import ablation_figure

    frame = ablation_frame(entries, params["measure"], params["correction"], params["alpha"])
    with atomic_path(outputs["csv"]) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.4f")
    names = params.get("language_names", {})
    zero = {r["language"]: json.loads(Path(r["path"]).read_text()) for r in references}
    lines = [
        "# Ablation: variants of the distillation settings",
        "",
        "| language | method | change from default | dev P@1 | dev MRR | MAP | Δ MAP | p (adj.) | "
        "alignment | plan row max |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for lang in dict.fromkeys(frame["language"]):
        if lang in zero:
            z = zero[lang]
            lines.append(f"| {names.get(lang, lang)} | teacher (zero-shot) | – | {z['p_at_1']:.3f} | "
                         f"{z['mrr']:.3f} | | | | | |")  # fmt: skip
        for r in frame[frame["language"] == lang].itertuples():
            mark = " *" if r.significant else ""
            lines.append(
                f"| {names.get(lang, lang)} | {r.method} | {r.change} | {r.dev_p_at_1:.3f} | "
                f"{r.dev_mrr:.3f} | {r.value:.3f} | {_fmt(r.difference, 3)} | "
                f"{_fmt(r.p_adjusted, 3)}{mark} | {_fmt(r.alignment)} | {_fmt(r.plan_row_max_ratio, 1)} |"
            )
    lines += [
        "",
        "Dev P@1 / MRR: bitext retrieval on the dev bitext (each L sentence, encoded by the "
        "student, retrieves its English translation among all dev English sentences encoded by "
        "the teacher): the criterion that chooses settings. MAP (evaluation queries), the OT "
        "word-alignment accuracy (dev bitext, gold alignment) and the plan's row maximum over "
        "the uniform share are reported only. Δ MAP and p: paired t-test against the method's "
        f"default on seed-averaged per-query scores, {params['correction']} over the variants of "
        f"a language and method; * p < {params['alpha']}.",
        "",
        *[f"{note}  " for note in notes],
    ]
    atomic_write_text(outputs["md"], "\n".join(lines) + "\n")
    ablation_figure(frame, outputs["png"], language_names=names)
    logger.info(
        "ablation: %d students written to %s, %s and %s (figure, PDF beside)",
        len(frame), outputs["md"], outputs["csv"], outputs["png"],
    )  # fmt: skip
    return frame
