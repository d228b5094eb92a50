"""The main results table: systems as rows, languages as columns, mean scores with significance marks.

Each column (a query language) is one family of comparisons: every system is tested
against every named baseline over that language's queries, with the paired t-test and the
paired randomization test (``evaluation.test`` chooses the one behind the marks), and the
p-values of the column are corrected together (Holm by default). Each comparison also has
its per-query wins, ties and losses and the mean difference with a paired-bootstrap CI.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from optical_clir.evaluation.bootstrap import bootstrap_mean_ci
from optical_clir.evaluation.significance import (
    TESTS,
    correct,
    paired_randomization_test,
    paired_ttest,
    win_tie_loss,
)
from optical_clir.io import atomic_write_text

logger = logging.getLogger(__name__)

MEASURE_LABELS = {"AP": "MAP", "nDCG@10": "nDCG@10", "R@100": "R@100", "RR@10": "MRR@10"}
TEST_NAMES = {
    "ttest": "paired two-sided t-test",
    "randomization": "paired two-sided randomization test",
}
COMPARISON_COLUMNS = [
    "system",
    "baseline",
    "symbol",
    "mean_difference",
    "diff_low",
    "diff_high",
    "wins",
    "ties",
    "losses",
    "t",
    "p_ttest",
    "p_randomization",
]


@dataclass(frozen=True)
class Baseline:
    """A system that others are tested against, and the symbol that marks a significant difference."""

    system: str
    symbol: str


@dataclass(frozen=True)
class Resampling:
    """Resamples of the randomization test and of the bootstrap CI of each mean difference
    (one ``seed`` for both, so tables are reproducible)."""

    randomization: int = 10000
    bootstrap: int = 10000
    confidence: float = 0.95
    seed: int = 0


def paired_tests_table(
    per_query: dict[str, pd.DataFrame],
    baselines: list[Baseline],
    measure: str = "AP",
    correction: str = "holm",
    alpha: float = 0.05,
    test: str = "ttest",
    resampling: Resampling = Resampling(),
) -> pd.DataFrame:
    """Test every system against every baseline on one language's queries.

    ``per_query`` maps system -> per-query table (same qids). Returns one row per
    (system, baseline): the mean difference and its bootstrap CI (``diff_low``,
    ``diff_high``), per-query wins/ties/losses, t, the raw and adjusted p of both tests
    (``p_ttest``, ``p_randomization``, ``*_adjusted``), ``p`` and ``p_adjusted`` of ``test``,
    and a direction mark (``+`` significantly better, ``-`` significantly worse, empty
    otherwise) by ``test``.
    """
    if test not in TESTS:
        raise ValueError(f"unknown test '{test}', expected one of {list(TESTS)}")
    rows = []
    for system, table in per_query.items():
        for base in baselines:
            if base.system == system or base.system not in per_query:
                continue
            other = per_query[base.system]
            if list(other.index) != list(table.index):
                raise ValueError(
                    f"systems '{system}' and '{base.system}' were evaluated on different queries"
                )
            a, b = table[measure].to_numpy(), other[measure].to_numpy()
            t, p_t = paired_ttest(a, b)
            _, p_r = paired_randomization_test(a, b, resampling.randomization, resampling.seed)
            mean, low, high = bootstrap_mean_ci(
                a - b, resampling.bootstrap, resampling.confidence, resampling.seed
            )
            wins, ties, losses = win_tie_loss(a, b)
            rows.append(
                {
                    "system": system,
                    "baseline": base.system,
                    "symbol": base.symbol,
                    "mean_difference": mean,
                    "diff_low": low,
                    "diff_high": high,
                    "wins": wins,
                    "ties": ties,
                    "losses": losses,
                    "t": t,
                    "p_ttest": p_t,
                    "p_randomization": p_r,
                }
            )
    result = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    for name in TESTS:
        result[f"p_{name}_adjusted"] = (
            correct(list(result[f"p_{name}"]), correction) if len(result) else []
        )
    result["p"] = result[f"p_{test}"]
    result["p_adjusted"] = result[f"p_{test}_adjusted"]
    result["significant"] = result["p_adjusted"] < alpha
    result["direction"] = [
        ("+" if diff > 0 else "-") if sig else ""
        for diff, sig in zip(result["mean_difference"], result["significant"], strict=True)
    ]
    return result


# Per-baseline columns of the main table: column prefix -> column of paired_tests_table.
BASELINE_COLUMNS = {
    "p": "p_adjusted",
    "p_ttest": "p_ttest_adjusted",
    "p_randomization": "p_randomization_adjusted",
    "diff": "mean_difference",
    "diff_low": "diff_low",
    "diff_high": "diff_high",
    "wins": "wins",
    "ties": "ties",
    "losses": "losses",
}


def main_table(
    per_query: dict[str, dict[str, pd.DataFrame]],
    labels: dict[str, str],
    baselines: list[Baseline],
    relative_to: str | None,
    measure: str = "AP",
    correction: str = "holm",
    alpha: float = 0.05,
    relative_floor: float = 0.0,
    test: str = "ttest",
    resampling: Resampling = Resampling(),
) -> pd.DataFrame:
    """Build the long-form main table from ``per_query[language][system]``.

    One row per (language, system): the mean of ``measure``, the number of queries, the
    significance marks against each baseline and the relative change against ``relative_to``
    (NaN where that system's mean is below ``relative_floor``: a change against a near-zero
    baseline says nothing). Per baseline ``x`` (see :data:`BASELINE_COLUMNS`):
    ``p_vs_x`` (adjusted, of ``test``), ``p_ttest_vs_x`` and ``p_randomization_vs_x``
    (adjusted), ``diff_vs_x`` with its bootstrap CI ``diff_low_vs_x``/``diff_high_vs_x``, and
    ``wins_vs_x``/``ties_vs_x``/``losses_vs_x`` over queries; NaN where not tested.
    """
    rows = []
    for language, systems in per_query.items():
        tests = paired_tests_table(systems, baselines, measure, correction, alpha, test, resampling)
        reference = systems.get(relative_to) if relative_to else None
        for system, table in systems.items():
            mean = float(table[measure].mean())
            row = {
                "language": language,
                "system": system,
                "label": labels.get(system, system),
                "measure": MEASURE_LABELS.get(measure, measure),
                "value": mean,
                "n_queries": len(table),
            }
            marks = []
            for base in baselines:
                hit = tests[(tests["system"] == system) & (tests["baseline"] == base.system)]
                for prefix, column in BASELINE_COLUMNS.items():
                    row[f"{prefix}_vs_{base.system}"] = (
                        float(hit[column].iloc[0]) if len(hit) else float("nan")
                    )
                direction = hit["direction"].iloc[0] if len(hit) else ""
                if direction:
                    marks.append(("▲" if direction == "+" else "▼") + base.symbol)
            row["marks"] = " ".join(marks)
            if reference is not None and system != relative_to:
                ref = float(reference[measure].mean())
                row[f"relative_change_vs_{relative_to}"] = (
                    (mean - ref) / ref if ref > 0 and ref >= relative_floor else float("nan")
                )
            rows.append(row)
    frame = pd.DataFrame(rows)
    counts = [c for c in frame.columns if c.split("_vs_")[0] in ("wins", "ties", "losses")]
    return frame.astype({c: "Int64" for c in counts})


def _cell(row: pd.Series, relative_to: str | None) -> str:
    text = f"{row['value']:.3f}"
    if pd.notna(row.get("value_sd", float("nan"))):
        text += f"±{row['value_sd']:.3f}"
    if row["marks"]:
        text += f" {row['marks']}"
    key = f"relative_change_vs_{relative_to}"
    if relative_to and key in row and row["system"] != relative_to:
        text += f" ({100 * row[key]:+.1f}%)" if pd.notna(row[key]) else " (–)"
    return text


def wide_cells(table: pd.DataFrame, relative_to: str | None) -> pd.DataFrame:
    """Pivot the long table into display cells: systems as rows, languages as columns."""
    cells = table.assign(cell=[_cell(row, relative_to) for _, row in table.iterrows()])
    order = list(dict.fromkeys(table["label"]))
    languages = list(dict.fromkeys(table["language"]))
    wide = cells.pivot(index="label", columns="language", values="cell").reindex(order)[languages]
    return wide.fillna("–")


def legend(
    baselines: list[Baseline],
    labels: dict[str, str],
    relative_to: str | None,
    correction: str,
    alpha: float,
    relative_floor: float = 0.0,
    test: str = "ttest",
    resampling: Resampling = Resampling(),
) -> str:
    """One paragraph that says what the marks and percentages in the table mean."""
    marks = "; ".join(f"{b.symbol} = {labels.get(b.system, b.system)}" for b in baselines)
    how = TEST_NAMES[test]
    if test == "randomization":
        how += f", {resampling.randomization} resamples, seed {resampling.seed}"
    text = (
        f"▲x / ▼x: significantly better / worse than baseline x ({how} over queries, "
        f"{correction} correction per language, alpha {alpha}); baselines: {marks}."
    )
    if relative_to:
        text += f" Percentages: relative change against {labels.get(relative_to, relative_to)}"
        text += f" ((–) where it scores below {relative_floor:g})." if relative_floor > 0 else "."
    return text


def write_markdown(wide: pd.DataFrame, path: str | Path, title: str, notes: list[str]) -> None:
    """Write the display table as GitHub-flavoured Markdown with a title and notes."""
    header = "| system | " + " | ".join(wide.columns) + " |"
    rule = "|---|" + "|".join("---" for _ in wide.columns) + "|"
    body = ["| " + label + " | " + " | ".join(row) + " |" for label, row in wide.iterrows()]
    text = "\n".join([f"# {title}", "", header, rule, *body, "", *[f"{n}  " for n in notes]]) + "\n"
    atomic_write_text(path, text)


_TEX_CHARS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "▲": r"$\blacktriangle$",
    "▼": r"$\blacktriangledown$",
    "±": r"$\pm$",
    "–": "--",
    "—": "---",
}


def _tex_escape(text: str) -> str:
    """Plain text -> LaTeX (special characters escaped, the table's symbols as amssymb)."""
    return "".join(_TEX_CHARS.get(char, char) for char in str(text))


def _tex_cell(row: pd.Series, relative_to: str | None, best: bool) -> str:
    value = f"{row['value']:.3f}"
    text = rf"\textbf{{{value}}}" if best else value
    if pd.notna(row.get("value_sd", float("nan"))):
        text += rf"$\pm${row['value_sd']:.3f}"
    if row["marks"]:
        marks = [_tex_escape(mark) for mark in row["marks"].split()]
        text += r"\textsuperscript{" + r"\,".join(marks) + "}"
    key = f"relative_change_vs_{relative_to}"
    if relative_to and key in row and row["system"] != relative_to:
        text += f" ({100 * row[key]:+.1f}\\%)" if pd.notna(row[key]) else " (--)"
    return text


def latex_cells(table: pd.DataFrame, relative_to: str | None) -> pd.DataFrame:
    """Like :func:`wide_cells`, in LaTeX: marks as superscripts, each column's best value
    (as displayed, to 3 decimals) in bold."""
    shown = table["value"].round(3)
    best = shown == shown.groupby(table["language"]).transform("max")
    cells = table.assign(
        cell=[
            _tex_cell(row, relative_to, bool(is_best))
            for (_, row), is_best in zip(table.iterrows(), best, strict=True)
        ]
    )
    order = list(dict.fromkeys(table["label"]))
    languages = list(dict.fromkeys(table["language"]))
    wide = cells.pivot(index="label", columns="language", values="cell").reindex(order)[languages]
    return wide.fillna("--")


def write_latex(
    cells: pd.DataFrame,
    path: str | Path,
    caption: str,
    comments: Sequence[str] = (),
    label: str = "tab:main",
) -> None:
    """Write LaTeX display cells (:func:`latex_cells`) as a booktabs table (needs the
    booktabs and amssymb packages), with ``comments`` as ``%`` lines at the top."""
    cols = "l" + "r" * len(cells.columns)
    lines = [
        *[f"% {line}" for comment in comments for line in str(comment).splitlines()],
        r"\begin{table}",
        r"\centering",
        f"\\begin{{tabular}}{{{cols}}}",
        r"\toprule",
        "System & " + " & ".join(_tex_escape(c) for c in cells.columns) + r" \\",
        r"\midrule",
        *[_tex_escape(label) + " & " + " & ".join(row) + r" \\" for label, row in cells.iterrows()],
        r"\bottomrule",
        r"\end{tabular}",
        f"\\caption{{{_tex_escape(caption)}}}",
        f"\\label{{{label}}}",
        r"\end{table}",
    ]
    atomic_write_text(path, "\n".join(lines) + "\n")


def provenance_lines(
    config_hash: str,
    git_commit: str = "unknown",
    downloads: str | None = None,
    dense_search: str | None = None,
) -> list[str]:
    """Where a table came from: config hash, git commit, the versions of the key packages,
    how the dense runs searched (``dense_search``) and, when the download lock file
    ``downloads`` exists, the revisions of what was downloaded."""
    from importlib import metadata

    from optical_clir.data.artifacts import lock_summary

    versions = []
    for package in (
        "torch",
        "transformers",
        "pyserini",
        "pot",
        "ir-measures",
        "sacrebleu",
        "optical-clir",
    ):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} (not installed)")
    lines = [
        f"Config hash: {config_hash}; git commit: {git_commit}.",
        "Versions: " + ", ".join(versions) + ".",
    ]
    if dense_search:
        lines.append(dense_search)
    summary = lock_summary(downloads) if downloads else None
    if summary:
        lines.append(summary)
    return lines


def seed_average(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Each query's measures averaged over the seeds' runs (all on the same queries)."""
    first = tables[0]
    for other in tables[1:]:
        if list(other.index) != list(first.index):
            raise ValueError("the seeds' runs were evaluated on different queries")
    return sum(tables[1:], first.copy()) / len(tables)


def _seed_spread(
    table: pd.DataFrame,
    seeded: dict[str, dict[str, list[tuple[int, pd.DataFrame]]]],
    names: dict[str, str],
    measure: str,
) -> pd.DataFrame:
    """Add the number of seeds and the standard deviation over seeds of each row's mean."""
    n_seeds, spread = [], []
    by_name = {names[lang]: lang for lang in names}
    for row in table.itertuples():
        runs = seeded[by_name[row.language]][row.system]
        values = pd.Series([float(t[measure].mean()) for _, t in runs])
        n_seeds.append(len(runs) if runs[0][0] is not None else 0)
        spread.append(float(values.std(ddof=1)) if len(values) > 1 else float("nan"))
    return table.assign(n_seeds=n_seeds, value_sd=spread)


def selection_notes(
    selection_paths: list[str], labels: dict[str, str], names: dict[str, str]
) -> list[str]:
    """One line per method whose students were chosen on the dev criterion: the picks."""
    import json

    picks: dict[str, list[str]] = {}
    for path in selection_paths:
        record = json.loads(Path(path).read_text())
        best = next(c for c in record["candidates"] if c["student"] == record["chosen"])
        picks.setdefault(record["method"], []).append(
            f"{names.get(record['language'], record['language'])}: {record['chosen']} "
            f"(dev P@1 {best['p_at_1']:.3f})"
        )
    return [
        f"{labels.get(method, method)}: chosen per language on the dev bitext criterion "
        f"(results/tables/selection.csv): " + "; ".join(items) + "."
        for method, items in picks.items()
    ]


def write_main_tables(
    eval_paths: list[str],
    params: dict,
    outputs: dict[str, str],
    selection_paths: list[str] = (),  # type: ignore[assignment]
) -> pd.DataFrame:
    """Read per-query measures and write the main table, the per-seed table and the means.

    ``params["entries"]`` lists one ``{language, system, seed, path}`` per input (seed is
    None for systems trained once); students have one entry per seed. The main table's
    value is the mean over seeds (with their standard deviation) and its tests compare
    seed-averaged per-query scores; ``seeds.csv`` repeats the tests for each seed alone.
    ``params`` also holds ``languages``, ``language_names``, ``systems``, ``labels``,
    ``measure``, ``baselines``, ``relative_to``, ``correction``, ``alpha``, ``config_hash``
    and ``git_commit``, and optionally ``test`` (``ttest``), ``randomization``
    (``n_resamples``, ``seed``) and ``bootstrap`` (``n_resamples``, ``confidence``: the CI of
    each mean difference); ``outputs`` names the ``md``, ``csv``, ``tex``, ``measures`` and
    ``seeds`` files.
    """
    from optical_clir.evaluation.measures import read_per_query

    entries = params["entries"]
    if [e["path"] for e in entries] != list(eval_paths):
        raise ValueError("the per-query files do not match params['entries'] (order or count)")
    names = params["language_names"]
    seeded: dict[str, dict[str, list[tuple[int | None, pd.DataFrame]]]] = {}
    means = []
    for entry in entries:
        table = read_per_query(entry["path"])
        lang, system, seed = entry["language"], entry["system"], entry["seed"]
        seeded.setdefault(lang, {}).setdefault(system, []).append((seed, table))
        means.append(
            {
                "language": lang,
                "system": system,
                "seed": seed,
                "n_queries": len(table),
                **table.mean().to_dict(),
            }
        )

    baselines = [Baseline(b["system"], b["symbol"]) for b in params["baselines"]]
    randomization = params.get("randomization") or {}
    bootstrap = params.get("bootstrap") or {}
    resampling = Resampling(
        randomization=int(randomization.get("n_resamples", 10000)),
        bootstrap=int(bootstrap.get("n_resamples", 10000)),
        confidence=float(bootstrap.get("confidence", 0.95)),
        seed=int(randomization.get("seed", 0)),
    )
    test = params.get("test", "ttest")
    test_args = (
        params["labels"],
        baselines,
        params["relative_to"],
        params["measure"],
        params["correction"],
        params["alpha"],
        params.get("relative_floor", 0.0),
        test,
        resampling,
    )
    per_query = {
        names[lang]: {
            system: seed_average([t for _, t in runs]) for system, runs in systems.items()
        }
        for lang, systems in seeded.items()
    }
    long = _seed_spread(main_table(per_query, *test_args), seeded, names, params["measure"])
    long.to_csv(outputs["csv"], index=False, float_format="%.6f")
    means_table = pd.DataFrame(means)
    means_table["seed"] = means_table["seed"].astype("Int64")  # empty for systems trained once
    means_table.to_csv(outputs["measures"], index=False, float_format="%.6f")
    per_seed_table(seeded, names, test_args).to_csv(
        outputs["seeds"], index=False, float_format="%.6f"
    )

    wide = wide_cells(long, params["relative_to"])
    measure = MEASURE_LABELS.get(params["measure"], params["measure"])
    max_seeds = int(long["n_seeds"].max()) if len(long) else 0
    notes = [
        f"Cells: {measure} over each language's queries (English documents).",
        legend(
            baselines,
            params["labels"],
            params["relative_to"],
            params["correction"],
            params["alpha"],
            params.get("relative_floor", 0.0),
            test,
            resampling,
        ),
        f"main.csv: per baseline x, the adjusted p-values of both tests (p_ttest_vs_x, "
        f"p_randomization_vs_x), per-query wins/ties/losses and the mean difference with its "
        f"{100 * resampling.confidence:g}% paired-bootstrap CI.",
        *selection_notes(list(selection_paths), params["labels"], names),
    ]
    provenance = provenance_lines(
        params["config_hash"],
        params.get("git_commit", "unknown"),
        params.get("downloads"),
        params.get("dense_search"),
    )
    if params.get("mixed_depth"):
        depths = params["mixed_depth"]
        notes.insert(1, f"Ranking depths differ: BM25 {depths['bm25']}, dense {depths['dense']}.")
    if max_seeds > 1:
        notes.insert(
            1,
            f"Students: mean ± standard deviation over {max_seeds} seeds; their tests use each "
            "query's score averaged over seeds (per-seed tests: seeds.csv).",
        )
    write_markdown(wide, outputs["md"], f"Main results ({measure})", [*notes, *provenance])
    write_latex(latex_cells(long, params["relative_to"]), outputs["tex"], " ".join(notes),
                comments=provenance)  # fmt: skip
    marked = int((long["marks"] != "").sum()) if len(long) else 0
    logger.info(
        "main table: %d systems x %d languages (%s, %d cells with a significant difference) "
        "written to %s", long["system"].nunique(), long["language"].nunique(), test, marked,
        ", ".join(str(outputs[k]) for k in ("md", "csv", "tex", "measures", "seeds")),
    )  # fmt: skip
    return long


def per_seed_table(
    seeded: dict[str, dict[str, list[tuple[int | None, pd.DataFrame]]]],
    names: dict[str, str],
    test_args: tuple,
) -> pd.DataFrame:
    """The main table's rows for seeded systems, once per seed: that seed's run, tested alone.

    Systems trained once (seed None) are the same in every seed's family of comparisons.
    """
    seeds = sorted(
        {
            s
            for systems in seeded.values()
            for runs in systems.values()
            for s, _ in runs
            if s is not None
        }
    )
    seeded_systems = {
        system
        for systems in seeded.values()
        for system, runs in systems.items()
        if runs[0][0] is not None
    }
    frames = []
    for seed in seeds:
        per_query = {}
        for lang, systems in seeded.items():
            chosen = {}
            for system, runs in systems.items():
                match = [t for s, t in runs if s is None or s == seed]
                if match:
                    chosen[system] = match[0]
            per_query[names[lang]] = chosen
        table = main_table(per_query, *test_args)
        frames.append(table[table["system"].isin(seeded_systems)].assign(seed=seed))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
