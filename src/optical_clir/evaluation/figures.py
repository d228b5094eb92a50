"""Figures of the report: MAP with bootstrap CIs, learning curves, and OT plans as heatmaps.

Every function draws on a stand-alone :class:`matplotlib.figure.Figure` rendered by the Agg
canvas (no pyplot, no display, no global backend switch), writes the PNG and, beside it, the
same figure as PDF (vector, for papers; ``x.png`` -> ``x.pdf``), both atomically, and
returns the PNG's path. The proposed method (OPTICAL, system key ``optical`` and its
variants ``optical+...``) is drawn in :data:`PROPOSED_COLOR`, which no other system gets.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from optical_clir.io import atomic_path

logger = logging.getLogger(__name__)

__all__ = [
    "CURVE_COLUMNS",
    "learning_curve_figure",
    "learning_curve_table",
    "map_ci_figure",
    "ot_heatmap_figure",
]

CURVE_COLUMNS = ("language", "method", "pairs", "seed", "value")
DPI = 150
PROPOSED = "optical"
PROPOSED_COLOR = "#d62728"  # tab:red, left out of the other systems' palette
_REFERENCE_STYLES = ("--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)))


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def pdf_path(png: str | Path) -> Path:
    """Where :func:`_save` puts the PDF of a figure: beside the PNG, same stem."""
    return Path(png).with_suffix(".pdf")


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    with atomic_path(pdf_path(path)) as tmp:
        fig.savefig(tmp, format="pdf")
    logger.info("wrote %s and %s", path, pdf_path(path).name)
    return path


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 9 else "tab20"]
    palette = [c for c in (cmap(i) for i in range(cmap.N)) if to_hex(c) != PROPOSED_COLOR]
    return [palette[i % len(palette)] for i in range(n)]


def is_proposed(key: str) -> bool:
    """The proposed method or one of its variants (``optical``, ``optical+selected``)."""
    return key == PROPOSED or key.startswith(f"{PROPOSED}+")


def _system_colors(keys: Sequence[str]) -> dict[str, Any]:
    """One colour per key: :data:`PROPOSED_COLOR` for the proposed method, the palette
    (without it) for the others, in order."""
    others = iter(_colors(sum(not is_proposed(k) for k in keys)))
    return {k: PROPOSED_COLOR if is_proposed(k) else next(others) for k in keys}


def _order(values: pd.Series) -> list[Any]:
    return list(dict.fromkeys(values))


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks columns {missing}; has {list(frame.columns)}")
    if frame.empty:
        raise ValueError(f"{what} is empty")


# ------------------------------------------------------------------------ MAP with CIs


def map_ci_figure(
    ci: pd.DataFrame,
    path: str | Path,
    measure_label: str = "MAP",
    system_labels: Mapping[str, str] | None = None,
    language_names: Mapping[str, str] | None = None,
    title: str | None = None,
) -> Path:
    """Grouped bars, languages on x and one bar per system, with the bootstrap CI as
    error bars; ``ci`` has the columns of :func:`optical_clir.evaluation.bootstrap.ci_table`
    (``language, system, mean, low, high``; ``n_queries``, ``confidence`` optional).

    Systems and languages keep their order of appearance in ``ci``; a missing
    (language, system) leaves a gap.
    """
    _require(ci, ("language", "system", "mean", "low", "high"), "CI table")
    system_labels = system_labels or {}
    language_names = language_names or {}
    languages = _order(ci["language"])
    systems = _order(ci["system"])
    n_lang, n_sys = len(languages), len(systems)
    group = 0.8
    bar = group / n_sys
    fig = _new_figure(max(6.0, 1.5 + n_lang * (0.4 + 0.32 * n_sys)), 4.8)
    ax = fig.add_subplot()
    colors = _system_colors(systems)
    x0 = np.arange(n_lang, dtype=float)
    for k, system in enumerate(systems):
        rows = ci[ci["system"] == system].set_index("language")
        present = [lang for lang in languages if lang in rows.index]
        xs = x0[[languages.index(lang) for lang in present]] - group / 2 + (k + 0.5) * bar
        mean = rows.loc[present, "mean"].to_numpy(dtype=float)
        low = rows.loc[present, "low"].to_numpy(dtype=float)
        high = rows.loc[present, "high"].to_numpy(dtype=float)
        yerr = np.vstack([np.clip(mean - low, 0, None), np.clip(high - mean, 0, None)])
        ax.bar(
            xs,
            mean,
            width=bar * 0.92,
            color=colors[system],
            edgecolor="black" if is_proposed(system) else "none",
            linewidth=1.0,
            label=system_labels.get(system, system),
            yerr=yerr,
            capsize=max(1.5, 4 - 0.3 * n_sys),
            error_kw={"elinewidth": 1.0, "ecolor": "0.15"},
        )
    ticks = []
    for lang in languages:
        name = language_names.get(lang, lang)
        if "n_queries" in ci.columns:
            counts = set(ci.loc[ci["language"] == lang, "n_queries"])
            if len(counts) == 1:
                name += f"\n(n={int(counts.pop())} queries)"
        ticks.append(name)
    ax.set_xticks(x0, ticks)
    ax.set_xlim(-0.6, n_lang - 0.4)
    level = ci["confidence"].iloc[0] if "confidence" in ci.columns else 0.95
    ax.set_ylabel(f"{measure_label} ({100 * level:g}% bootstrap CI over queries)")
    ax.set_xlabel("query language")
    top = float(np.nanmax(ci["high"].to_numpy(dtype=float)))
    ax.set_ylim(0, top * 1.12 if top > 0 else 1.0)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.set_title(title or f"{measure_label} per language and system")
    ax.legend(title="system", fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


# --------------------------------------------------------------------- learning curves


def _check_curve(curve: pd.DataFrame) -> pd.DataFrame:
    _require(curve, CURVE_COLUMNS, "learning-curve frame")
    keys = ["language", "method", "pairs", "seed"]
    duplicated = curve.duplicated(keys)
    if duplicated.any():
        first = curve[duplicated].iloc[0]
        raise ValueError(f"duplicate learning-curve rows for {dict(first[keys])}")
    return curve


def learning_curve_table(curve: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample sd (NaN for one seed), min, max and ``n_seeds`` of ``value`` per
    (language, method, pairs); languages and methods in order of appearance, pairs rising.

    ``curve`` has columns ``language, method, pairs, seed, value`` (one row per run).
    """
    _check_curve(curve)
    stats = (
        curve.groupby(["language", "method", "pairs"], sort=False)["value"]
        .agg(mean="mean", sd="std", min="min", max="max", n_seeds="count")
        .reset_index()
    )
    lang_rank = {v: i for i, v in enumerate(_order(curve["language"]))}
    method_rank = {v: i for i, v in enumerate(_order(curve["method"]))}
    stats = stats.assign(
        _l=stats["language"].map(lang_rank), _m=stats["method"].map(method_rank)
    ).sort_values(["_l", "_m", "pairs"], kind="stable")
    stats["n_seeds"] = stats["n_seeds"].astype(int)
    return stats.drop(columns=["_l", "_m"]).reset_index(drop=True)


def _human(n: float) -> str:
    """1000 -> '1k', 1500 -> '1.5k', 2000000 -> '2M', 250 -> '250'."""
    for div, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g}{suffix}"
    return f"{n:.3g}"


def learning_curve_figure(
    curve: pd.DataFrame,
    path: str | Path,
    measure_label: str = "MAP",
    method_labels: Mapping[str, str] | None = None,
    language_names: Mapping[str, str] | None = None,
    references: Mapping[str, Mapping[str, float]] | None = None,
    band: str = "minmax",
    title: str | None = None,
) -> Path:
    """One panel per language: ``measure_label`` against the number of training pairs.

    ``curve`` has columns ``language, method, pairs, seed, value``. Each method is a line
    through the mean over seeds, with a shaded band where some point has several seeds
    (``band``: ``"minmax"`` over seeds, ``"sd"`` = mean ± sample sd, or ``"none"``). The
    x axis is logarithmic when a panel's pairs span more than 4x. ``references`` maps
    language -> {label: value} drawn as horizontal lines (e.g. the zero-shot teacher, BM25
    on NMT output).
    """
    if band not in ("minmax", "sd", "none"):
        raise ValueError(f"band must be 'minmax', 'sd' or 'none', got {band!r}")
    stats = learning_curve_table(curve)
    method_labels = method_labels or {}
    language_names = language_names or {}
    references = references or {}
    languages = _order(stats["language"])
    methods = _order(stats["method"])
    colors = _system_colors(methods)
    ref_labels = _order(pd.Series([k for lang in languages for k in references.get(lang, {})]))
    ref_styles = {
        label: _REFERENCE_STYLES[i % len(_REFERENCE_STYLES)] for i, label in enumerate(ref_labels)
    }

    ncols = min(3, len(languages))
    nrows = math.ceil(len(languages) / ncols)
    fig = _new_figure(max(5.5, 4.3 * ncols), 3.6 * nrows + 0.8)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    handles: dict[str, Any] = {}
    for ax in axes.flat[len(languages) :]:
        ax.set_visible(False)
    for ax, lang in zip(axes.flat, languages, strict=False):
        panel = stats[stats["language"] == lang]
        for method in methods:
            rows = panel[panel["method"] == method]
            if rows.empty:
                continue
            x = rows["pairs"].to_numpy(dtype=float)
            (line,) = ax.plot(
                x,
                rows["mean"],
                marker="o",
                markersize=5 if is_proposed(method) else 4,
                linewidth=2.4 if is_proposed(method) else 1.5,
                zorder=3 if is_proposed(method) else 2,
                color=colors[method],
                label=method_labels.get(method, method),
            )
            handles.setdefault(line.get_label(), line)
            if band != "none" and (rows["n_seeds"] > 1).any():
                if band == "minmax":
                    lo, hi = rows["min"], rows["max"]
                else:
                    sd = rows["sd"].fillna(0.0)
                    lo, hi = rows["mean"] - sd, rows["mean"] + sd
                ax.fill_between(x, lo, hi, color=colors[method], alpha=0.2, linewidth=0)
        for label, value in references.get(lang, {}).items():
            ref = ax.axhline(
                float(value), color="0.35", linewidth=1.2, linestyle=ref_styles[label], label=label
            )
            handles.setdefault(label, ref)
        pairs = np.unique(panel["pairs"].to_numpy(dtype=float))
        if pairs.size and pairs.min() > 0 and pairs.max() / pairs.min() > 4:
            ax.set_xscale("log")
            ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_locator(FixedLocator(pairs))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: _human(v)))
        ax.set_title(language_names.get(lang, lang))
        ax.set_xlabel("training pairs (bitext)")
        ax.set_ylabel(measure_label)
        ax.grid(alpha=0.3)
    seeds = int(stats["n_seeds"].max())
    if seeds > 1 and band != "none":
        what = "min–max over seeds" if band == "minmax" else "±1 sd over seeds"
        subtitle = f"lines: mean over up to {seeds} seeds; bands: {what}"
    else:
        subtitle = "one run per point" if seeds == 1 else "lines: mean over seeds"
    fig.suptitle(f"{title or f'{measure_label} against training-set size'}\n({subtitle})")
    fig.legend(
        list(handles.values()),
        list(handles.keys()),
        loc="outside lower center",
        ncols=min(4, len(handles)),
        fontsize="small",
    )
    return _save(fig, path)


# ------------------------------------------------------------------------- OT heatmaps


def _check_example(k: int, example: Mapping[str, Any]) -> np.ndarray:
    for key in ("plan", "student_tokens", "teacher_tokens"):
        if key not in example:
            raise ValueError(f"example {k} lacks {key!r}")
    plan = np.asarray(example["plan"], dtype=float)
    shape = (len(example["student_tokens"]), len(example["teacher_tokens"]))
    if plan.ndim != 2 or plan.shape != shape:
        raise ValueError(
            f"example {k}: plan shape {plan.shape} does not match the tokens "
            f"({shape[0]} student x {shape[1]} teacher)"
        )
    return plan


def ot_heatmap_figure(
    examples: Sequence[Mapping[str, Any]],
    path: str | Path,
    title: str | None = None,
    student_axis: str = "student tokens (query language)",
    teacher_axis: str = "teacher tokens (English)",
) -> Path:
    """One heatmap per example of its OT plan, student tokens as rows, teacher tokens as
    columns (labels rotated), each with a colour bar of the transport mass.

    An example is ``{"plan": [n, m] array, "student_tokens": [n], "teacher_tokens": [m],
    "title": str}``; optional ``"student_special"`` / ``"teacher_special"`` (``[bool]``)
    draw the special tokens' labels in grey italics. Sized for up to ~40 x 40 tokens.
    """
    if not examples:
        raise ValueError("no examples to draw")
    plans = [_check_example(k, ex) for k, ex in enumerate(examples)]
    n_max = max(p.shape[0] for p in plans)
    m_max = max(p.shape[1] for p in plans)
    cell = 0.2 if max(n_max, m_max) > 20 else 0.26
    panel_w = max(3.6, m_max * cell + 2.6)
    panel_h = max(3.0, n_max * cell + 2.0)
    ncols = max(1, min(len(plans), int(18 // panel_w)))
    nrows = math.ceil(len(plans) / ncols)
    fig = _new_figure(panel_w * ncols, panel_h * nrows + (0.5 if title else 0.0))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat[len(plans) :]:
        ax.set_visible(False)
    fontsize = 8 if max(n_max, m_max) <= 20 else 6
    for k, (ax, example, plan) in enumerate(zip(axes.flat, examples, plans, strict=False)):
        # Colour scale from the word-token cells: the [CLS]-[CLS] cell often carries many
        # times their mass and would flatten everything else to one colour (it saturates).
        rows = ~np.asarray(example.get("student_special") or [False] * plan.shape[0], bool)
        cols = ~np.asarray(example.get("teacher_special") or [False] * plan.shape[1], bool)
        words = plan[np.ix_(rows, cols)] if rows.any() and cols.any() else plan
        vmax = float(words.max()) if words.size and words.max() > 0 else None
        image = ax.imshow(
            plan, cmap="viridis", aspect="auto", interpolation="nearest", vmin=0, vmax=vmax
        )
        ax.set_xticks(
            range(plan.shape[1]),
            [str(t) for t in example["teacher_tokens"]],
            rotation=70,
            ha="right",
            rotation_mode="anchor",
            fontsize=fontsize,
        )
        ax.set_yticks(
            range(plan.shape[0]), [str(t) for t in example["student_tokens"]], fontsize=fontsize
        )
        for labels, key in (
            (ax.get_xticklabels(), "teacher_special"),
            (ax.get_yticklabels(), "student_special"),
        ):
            for label, special in zip(labels, example.get(key) or [], strict=False):
                if special:
                    label.set_color("0.45")
                    label.set_fontstyle("italic")
        ax.set_xlabel(teacher_axis)
        ax.set_ylabel(student_axis)
        ax.set_title(str(example.get("title", f"example {k + 1}")), fontsize=10)
        bar = fig.colorbar(image, ax=ax, shrink=0.85)
        bar.set_label("transport mass", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


# ------------------------------------------------------------------------------ ablation


def ablation_figure(
    frame: pd.DataFrame, path: str | Path, language_names: Mapping[str, str] | None = None
) -> Path:
    """Per language, each ablation student's dev criterion (P@1) next to its MAP: the first
    chooses settings, the second only reports; the default of each method is hatched."""
    _require(frame, ("language", "student", "method", "dev_p_at_1", "value"), "ablation table")
    language_names = language_names or {}
    languages = _order(frame["language"])
    height = max(3.0, 0.32 * frame.groupby("language").size().max() + 1.4)
    fig = _new_figure(5.2 * len(languages), height)
    axes = fig.subplots(1, len(languages), squeeze=False)[0]
    colors = _colors(2)
    for ax, lang in zip(axes, languages, strict=True):
        rows = frame[frame["language"] == lang]
        y = np.arange(len(rows), dtype=float)
        for k, (column, label) in enumerate(
            (("dev_p_at_1", "dev P@1 (chooses)"), ("value", "MAP (reports)"))
        ):
            bars = ax.barh(
                y + (k - 0.5) * 0.38, rows[column], height=0.36, color=colors[k], label=label
            )
            for bar, is_default in zip(bars, rows["student"] == rows["method"], strict=True):
                if is_default:
                    bar.set_hatch("//")
        ax.set_yticks(y, list(rows["student"]), fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.grid(axis="x", alpha=0.3)
        ax.set_title(language_names.get(lang, lang))
    axes[-1].legend(fontsize="small", loc="lower right")
    return _save(fig, path)
