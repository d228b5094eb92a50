"""Per-query measures agree with ir_measures; the main table has the right shape and marks."""

import ir_measures
import numpy as np
import pandas as pd
import pytest

from optical_clir.evaluation.measures import evaluation_query_ids, per_query_measures
from optical_clir.evaluation.tables import Baseline, main_table, paired_ttest_table, wide_cells
from optical_clir.retrieval.trec import read_run, write_run

QRELS = "q1 0 d1 2\nq1 0 d2 1\nq2 0 d3 1\nq3 0 d4 2\nq3 0 d5 0\n"


@pytest.fixture
def files(tmp_path):
    (tmp_path / "qrels.txt").write_text(QRELS)
    (tmp_path / "queries.tsv").write_text("q1\ta\nq2\tb\nq3\tc\nq4\td\n")
    ranking = {
        "q1": [("d2", 3.0), ("d9", 2.0), ("d1", 1.0)],
        "q2": [("d8", 5.0), ("d3", 4.0)],
        "q3": [("d5", 2.0), ("d4", 1.5)],
    }
    write_run(ranking, tmp_path / "run.trec", tag="t")
    return tmp_path


def test_run_round_trip(files):
    assert read_run(files / "run.trec")["q1"] == [("d2", 3.0), ("d9", 2.0), ("d1", 1.0)]
    assert (files / "run.trec").read_text().splitlines()[0] == "q1 Q0 d2 1 3.000000 t"


def test_mean_equals_ir_measures(files):
    qids = evaluation_query_ids(files / "queries.tsv", files / "qrels.txt")
    assert qids == ["q1", "q2", "q3"]  # q4 has no judgments
    table = per_query_measures(files / "run.trec", files / "qrels.txt", qids)
    direct = ir_measures.calc_aggregate(
        [ir_measures.AP, ir_measures.nDCG @ 10, ir_measures.R @ 100, ir_measures.RR @ 10],
        ir_measures.read_trec_qrels(str(files / "qrels.txt")),
        ir_measures.read_trec_run(str(files / "run.trec")),
    )
    assert table["AP"].mean() == pytest.approx(direct[ir_measures.AP], abs=1e-12)
    assert table["nDCG@10"].mean() == pytest.approx(direct[ir_measures.nDCG @ 10], abs=1e-12)
    assert table["RR@10"].mean() == pytest.approx(direct[ir_measures.RR @ 10], abs=1e-12)
    # Hand check: q1 AP = (1/1 + 2/3) / 2, q2 AP = 1/2, q3 AP = 1/2 (d5 is judged 0).
    assert table.loc["q1", "AP"] == pytest.approx((1 + 2 / 3) / 2)
    assert table.loc["q3", "AP"] == pytest.approx(0.5)


def test_unanswered_query_scores_zero(files):
    write_run({"q1": [("d1", 1.0)]}, files / "partial.trec", tag="p")
    table = per_query_measures(files / "partial.trec", files / "qrels.txt", ["q1", "q2", "q3"])
    assert list(table["AP"]) == [0.5, 0.0, 0.0]


def fake_per_query(values):
    return pd.DataFrame(
        {"AP": values}, index=pd.Index([f"q{i}" for i in range(len(values))], name="qid")
    )


def test_main_table_marks_and_relative_change():
    rng = np.random.default_rng(0)
    base = rng.random(30) * 0.3
    systems = {
        "bm25_raw": fake_per_query(base),
        "bm25_en": fake_per_query(base + 0.3 + rng.normal(0, 0.02, 30)),
        "teacher_raw": fake_per_query(base + rng.normal(0, 0.05, 30)),
    }
    per_query = {"Swahili": systems, "Pseudo": {k: v * 0.5 for k, v in systems.items()}}
    labels = {"bm25_raw": "BM25 raw", "bm25_en": "BM25 en", "teacher_raw": "Teacher"}
    baselines = [Baseline("bm25_raw", "a")]
    long = main_table(per_query, labels, baselines, relative_to="bm25_raw")
    assert len(long) == 6
    en = long[(long.language == "Swahili") & (long.system == "bm25_en")].iloc[0]
    assert en["marks"] == "▲a"
    assert en["relative_change_vs_bm25_raw"] == pytest.approx(
        systems["bm25_en"]["AP"].mean() / systems["bm25_raw"]["AP"].mean() - 1
    )
    wide = wide_cells(long, "bm25_raw")
    assert list(wide.columns) == ["Swahili", "Pseudo"]
    assert list(wide.index) == ["BM25 raw", "BM25 en", "Teacher"]
    assert wide.loc["BM25 en", "Swahili"].startswith(f"{systems['bm25_en']['AP'].mean():.3f} ▲a (+")


def test_holm_is_applied_per_language():
    a = fake_per_query([0.1, 0.2, 0.3, 0.4, 0.5])
    b = fake_per_query([0.2, 0.25, 0.45, 0.42, 0.6])
    c = fake_per_query([0.3, 0.2, 0.5, 0.5, 0.5])
    raw = paired_ttest_table({"x": a, "y": b, "z": c}, [Baseline("x", "a")], correction="none")
    adjusted = paired_ttest_table(
        {"x": a, "y": b, "z": c}, [Baseline("x", "a")], correction="bonferroni"
    )
    assert list(adjusted["p_adjusted"]) == pytest.approx([min(1, 2 * p) for p in raw["p"]])


def test_mismatched_queries_are_an_error():
    with pytest.raises(ValueError, match="different queries"):
        paired_ttest_table(
            {"x": fake_per_query([0.1, 0.2]), "y": fake_per_query([0.1, 0.2, 0.3])},
            [Baseline("x", "a")],
        )
