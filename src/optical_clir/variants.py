"""Student variants: one-factor changes of a method's settings, for ablation and selection.

A variant list (``ablation.<method>`` or ``distill.select.<method>`` in the config) maps a
setting to the values to try, one factor at a time from the method's default::

    optical: {epsilon: [0.05, 0.2], epsilon_mode: [absolute], learning_rate: [5.0e-4]}

gives the students ``optical+epsilon-0.05``, ``optical+epsilon-0.2``,
``optical+epsilon_mode-absolute`` and ``optical+learning_rate-0.0005``; the default is
``optical`` itself. A student's name is its folder name, so a variant's settings always
travel with its path. Loss keys go to ``distill.loss``, the rest to ``distill.train``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from optical_clir.errors import ConfigError
from optical_clir.losses.settings import LOSS_KEYS
from optical_clir.systems import STUDENT_METHODS

__all__ = [
    "LOSS_SETTINGS",
    "SELECTED",
    "choose_student",
    "parse_student",
    "resolve_student",
    "student_job_params",
    "student_name",
    "student_settings",
    "variant_names",
]

# distill.loss keys (the rest of a variant's keys are distill.train keys).
LOSS_SETTINGS: tuple[str, ...] = (*LOSS_KEYS, "special_tokens")
SEPARATOR = "+"
# The suffix of a method's student chosen on the dev criterion among its candidates.
SELECTED = "+selected"
_VALUE = re.compile(r"^[A-Za-z0-9_.\-]+$")


def _value_text(value: Any) -> str:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    if isinstance(value, float):
        text = repr(value)
    if not _VALUE.match(text):
        raise ConfigError(
            "ablation", f"value {value!r} cannot name a variant (letters, digits, _ . -)"
        )
    return text


def student_name(method: str, key: str | None = None, value: Any = None) -> str:
    """``method`` for the default, ``method+key-value`` for a one-factor variant."""
    return method if key is None else f"{method}{SEPARATOR}{key}-{_value_text(value)}"


def variant_names(method: str, grid: Mapping[str, Sequence[Any]]) -> list[str]:
    """The default and every one-factor variant of ``grid``, in config order."""
    return [student_name(method)] + [
        student_name(method, key, value) for key, values in grid.items() for value in values
    ]


def parse_student(
    name: str, grids: Sequence[Mapping[str, Mapping[str, Sequence[Any]]]]
) -> tuple[str, dict[str, Any]]:
    """``(method, {setting: value})`` of a student name, looked up in the variant ``grids``
    (``{method: {key: [values]}}``); an unknown name is a ConfigError."""
    method, _, rest = name.partition(SEPARATOR)
    if method not in STUDENT_METHODS:
        raise ConfigError("distill.methods", f"{name!r} is not a student of {STUDENT_METHODS}")
    if not rest:
        return method, {}
    for grid in grids:
        for key, values in grid.get(method, {}).items():
            for value in values:
                if student_name(method, key, value) == name:
                    return method, {key: value}
    raise ConfigError("ablation", f"no variant named {name!r} in the configuration")


def student_settings(
    distill: Mapping[str, Any], method: str, change: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(loss, train)`` settings of a student: ``distill.loss`` and ``distill.train``,
    then ``distill.method_overrides.<method>``, then the variant's one change."""
    overrides = distill.get("method_overrides", {}).get(method, {})
    loss = {**distill.get("loss", {}), **overrides.get("loss", {})}
    train = {**distill.get("train", {}), **overrides.get("train", {})}
    for key, value in change.items():
        (loss if key in LOSS_SETTINGS else train)[key] = value
    return loss, train


def choose_student(scores: Mapping[str, Sequence[Mapping[str, float]]]) -> str:
    """The candidate with the best dev criterion: mean bitext-retrieval P@1 over its seeds,
    then mean MRR; a tie keeps the earlier candidate (the default comes first)."""
    if not scores:
        raise ValueError("no candidates to choose from")

    def key(item: tuple[int, str]) -> tuple[float, float, int]:
        index, name = item
        runs = scores[name]
        p1 = sum(r["p_at_1"] for r in runs) / len(runs)
        mrr = sum(r["mrr"] for r in runs) / len(runs)
        return (p1, mrr, -index)

    return max(enumerate(scores), key=key)[1]


def student_job_params(
    distill: Mapping[str, Any],
    grids: Sequence[Mapping[str, Mapping[str, Sequence[Any]]]],
    student: str,
    language: str,
    seed: int,
    pairs: int | None,
    candidates: Sequence[str] = (),
) -> dict[str, Any]:
    """What a ``distill_student`` job needs, and nothing more (so that Snakemake reruns a
    student only when its own settings change): the settings of the student, or, for a
    ``+selected`` student, of each of its ``candidates``."""
    names = list(candidates) if student.endswith(SELECTED) else [student]
    settings = {}
    for name in names:
        method, change = parse_student(name, grids)
        loss, train = student_settings(distill, method, change)
        settings[name] = {"method": method, "loss": loss, "train": train}
    return {"student": student, "language": language, "seed": int(seed), "pairs": pairs,
            "settings": settings}  # fmt: skip


def resolve_student(
    params: Mapping[str, Any], selection: Mapping[str, Any] | None = None
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """``(method, loss, train)`` of the student a ``distill_student`` job trains, from
    :func:`student_job_params`: a ``+selected`` student takes the settings of the candidate
    ``selection["chosen"]``; the job's seed and bitext subset are applied."""
    name = str(params["student"])
    if name.endswith(SELECTED):
        if selection is None:
            raise ValueError(f"{name}: the student needs the selection of its candidates")
        name = str(selection["chosen"])
    if name not in params["settings"]:
        raise ValueError(f"{name!r} is not a candidate of {params['student']!r}")
    chosen = params["settings"][name]
    loss, train = dict(chosen["loss"]), dict(chosen["train"])
    train["seed"] = int(params["seed"])
    if params.get("pairs") is not None:
        train["max_train_pairs"] = int(params["pairs"])
    return str(chosen["method"]), loss, train
