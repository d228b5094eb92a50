"""Every table and figure job logs what it wrote and where (what a rule log shows)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from optical_clir.evaluation.ablation import write_ablation
from optical_clir.evaluation.report_outputs import write_learning_curve, write_map_ci
from optical_clir.evaluation.selection import write_selection_table
from optical_clir.evaluation.tables import write_main_tables


def _ap(path: Path, values: np.ndarray) -> str:
    index = pd.Index([f"q{i}" for i in range(len(values))], name="qid")
    pd.DataFrame({"AP": values}, index=index).to_csv(path, sep="\t")
    return str(path)


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.INFO)


@pytest.fixture
def entries(tmp_path: Path) -> list[dict]:
    rng = np.random.default_rng(0)
    base = rng.uniform(0.1, 0.5, 12)
    return [
        {"language": "sw", "system": "bm25_nmt", "seed": None,
         "path": _ap(tmp_path / "b.tsv", base)},
        {"language": "sw", "system": "optical", "seed": 1,
         "path": _ap(tmp_path / "o.tsv", base + 0.1)},
    ]  # fmt: skip


def _table_params(entries: list[dict]) -> dict:
    return {
        "entries": entries,
        "language_names": {"sw": "Swahili"},
        "labels": {"bm25_nmt": "BM25 + NMT", "optical": "OPTICAL"},
        "measure": "AP",
        "baselines": [{"system": "bm25_nmt", "symbol": "b"}],
        "relative_to": "bm25_nmt",
        "correction": "holm",
        "alpha": 0.05,
        "randomization": {"n_resamples": 200},
        "bootstrap": {"n_resamples": 200},
        "config_hash": "abc",
    }


def test_main_table_and_map_ci_log_their_outputs(
    tmp_path: Path, entries: list[dict], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    params = _table_params(entries)
    outputs = {k: str(tmp_path / f"main.{k}") for k in ("md", "csv", "tex", "measures", "seeds")}
    write_main_tables([e["path"] for e in entries], params, outputs)
    log = _logged(caplog)
    assert "main table: 2 systems x 1 languages" in log
    assert all(path in log for path in outputs.values())

    caplog.clear()
    png, csv = tmp_path / "map_ci.png", tmp_path / "map_ci.csv"
    write_map_ci(params, {"n_resamples": 200}, png, csv)
    log = _logged(caplog)
    assert "MAP CI: 2 (language, system) intervals" in log
    assert str(png) in log and str(csv) in log and str(png.with_suffix(".pdf")) in log
    assert png.with_suffix(".pdf").is_file()


def test_learning_curve_logs_its_outputs(
    tmp_path: Path, entries: list[dict], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    students = []
    for pairs in (10, 20):
        model = tmp_path / f"student-{pairs}"
        model.mkdir()
        (model / "train_config.json").write_text(json.dumps({"n_train_pairs": pairs}))
        students.append({"language": "sw", "method": "optical", "pairs": pairs, "seed": 1,
                         "eval": entries[1]["path"], "model": str(model)})  # fmt: skip
    params = {"measure": "AP", "language_names": {"sw": "Swahili"}, "labels": {}}
    params |= {"config_hash": "abc"}
    outputs = {k: str(tmp_path / f"curve.{k}") for k in ("csv", "md", "png")}
    write_learning_curve(students, [], params, outputs)
    log = _logged(caplog)
    assert "learning curve: 2 points (2 students)" in log
    assert all(path in log for path in outputs.values()) and "curve.pdf" in log


def _student(tmp_path: Path, name: str, p_at_1: float) -> Path:
    model = tmp_path / name
    model.mkdir()
    record = {"bitext_retrieval": {"p_at_1": p_at_1, "mrr": p_at_1, "pairs": 8},
              "plan": {"row_max_ratio": 3.0}}  # fmt: skip
    (model / "dev_criterion.json").write_text(json.dumps(record))
    return model


def test_selection_and_ablation_tables_log_their_outputs(
    tmp_path: Path, entries: list[dict], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    selection = tmp_path / "selection.json"
    selection.write_text(json.dumps({
        "method": "optical", "language": "sw", "chosen": "optical+epsilon-0.05",
        "candidates": [
            {"student": "optical", "seeds": 1, "p_at_1": 0.5, "mrr": 0.6},
            {"student": "optical+epsilon-0.05", "seeds": 1, "p_at_1": 0.7, "mrr": 0.8},
        ],
    }))  # fmt: skip
    md, csv = tmp_path / "selection.md", tmp_path / "selection.csv"
    write_selection_table([selection], md, csv)
    log = _logged(caplog)
    assert "selection table: 2 candidates, 1 chosen" in log and str(md) in log and str(csv) in log

    caplog.clear()
    zero = tmp_path / "zero.json"
    zero.write_text(json.dumps({"p_at_1": 0.2, "mrr": 0.3}))
    ablation = [
        {"language": "sw", "method": "optical", "student": student, "seed": 1,
         "model": str(_student(tmp_path, student, p)), "eval": path}
        for student, p, path in (("optical", 0.5, entries[0]["path"]),
                                 ("optical+epsilon-0.05", 0.7, entries[1]["path"]))
    ]  # fmt: skip
    outputs = {k: str(tmp_path / f"ablation.{k}") for k in ("md", "csv", "png")}
    params = {"measure": "AP", "correction": "holm", "alpha": 0.05}
    write_ablation(ablation, [{"language": "sw", "path": str(zero)}], params, outputs)
    log = _logged(caplog)
    assert "ablation: 2 students" in log and all(path in log for path in outputs.values())
    assert (tmp_path / "ablation.pdf").is_file()
