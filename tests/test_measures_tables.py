"""Per-query measures agree with ir_measures; the main table has the right shape and marks."""

from pathlib import Path

import ir_measures
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from optical_clir.evaluation.measures import evaluation_query_ids, per_query_measures
from optical_clir.evaluation.significance import holm, paired_ttest
from optical_clir.evaluation.tables import (
    Baseline,
    main_table,
    paired_tests_table,
    seed_average,
    wide_cells,
    write_main_tables,
)
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
    """Each language (column) is one family: its p-values are Holm-adjusted together, and
    apart from the other languages' (pooling them would multiply by more comparisons)."""
    rng = np.random.default_rng(4)
    n = 25
    base = rng.uniform(0.1, 0.5, n)
    per_query = {}
    # Effects of different sizes per language, so that the families' raw p-values differ.
    for language, shift in (("Swahili", 0.035), ("Somali", 0.05), ("Finnish", 0.02)):
        noise = rng.normal(0, 0.06, (3, n))
        per_query[language] = {
            "x": fake_per_query(base),
            "y": fake_per_query(base + shift + noise[0]),
            "z": fake_per_query(base + 0.5 * shift + noise[1]),
            "w": fake_per_query(base + noise[2]),
        }
    baselines = [Baseline("x", "a"), Baseline("w", "b")]
    long = main_table(per_query, {}, baselines, relative_to=None, correction="holm")

    raw, adjusted = {}, {}
    for language, systems in per_query.items():
        keys = [(s, b.system) for s in systems for b in baselines if s != b.system]
        p = [stats.ttest_rel(systems[s]["AP"], systems[b]["AP"]).pvalue for s, b in keys]
        raw[language] = dict(zip(keys, p, strict=True))
        adjusted[language] = dict(zip(keys, holm(p), strict=True))
        for (system, base_system), want in adjusted[language].items():
            row = long[(long.language == language) & (long.system == system)].iloc[0]
            assert row[f"p_vs_{base_system}"] == pytest.approx(want, rel=1e-9), (language, system)
            marked = "a" if base_system == "x" else "b"
            assert (marked in row["marks"]) == (want < 0.05), (language, system, row["marks"])
    # the families are not pooled: Holm over all three languages would give other p-values
    # and change at least one mark
    pooled_keys = [(lang, k) for lang in raw for k in raw[lang]]
    pooled = dict(zip(pooled_keys, holm([raw[lang][k] for lang, k in pooled_keys]), strict=True))
    assert any(pooled[(lang, k)] != pytest.approx(adjusted[lang][k]) for lang, k in pooled_keys)
    assert any((pooled[(lang, k)] < 0.05) != (adjusted[lang][k] < 0.05) for lang, k in pooled_keys)


def test_bonferroni_multiplies_by_the_comparisons():
    a = fake_per_query([0.1, 0.2, 0.3, 0.4, 0.5])
    b = fake_per_query([0.2, 0.25, 0.45, 0.42, 0.6])
    c = fake_per_query([0.3, 0.2, 0.5, 0.5, 0.5])
    raw = paired_tests_table({"x": a, "y": b, "z": c}, [Baseline("x", "a")], correction="none")
    adjusted = paired_tests_table(
        {"x": a, "y": b, "z": c}, [Baseline("x", "a")], correction="bonferroni"
    )
    assert list(adjusted["p_adjusted"]) == pytest.approx([min(1, 2 * p) for p in raw["p"]])


def test_mismatched_queries_are_an_error():
    with pytest.raises(ValueError, match="different queries"):
        paired_tests_table(
            {"x": fake_per_query([0.1, 0.2]), "y": fake_per_query([0.1, 0.2, 0.3])},
            [Baseline("x", "a")],
        )


def _write_ap(path, values):
    pd.DataFrame(
        {"AP": values}, index=pd.Index([f"q{i}" for i in range(len(values))], name="qid")
    ).to_csv(path, sep="\t")
    return str(path)


def test_seeded_students_mean_sd_and_per_seed_tests(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.uniform(0.1, 0.4, 30)
    seed_a, seed_b = base + 0.30, base + 0.02 + rng.normal(0, 0.01, 30)
    entries = [
        {"language": "sw", "system": "bm25_nmt", "seed": None, "path": _write_ap(tmp_path / "b.tsv", base)},
        {"language": "sw", "system": "optical", "seed": 1, "path": _write_ap(tmp_path / "o1.tsv", seed_a)},
        {"language": "sw", "system": "optical", "seed": 2, "path": _write_ap(tmp_path / "o2.tsv", seed_b)},
    ]  # fmt: skip
    params = {
        "entries": entries,
        "language_names": {"sw": "Swahili"},
        "labels": {"bm25_nmt": "BM25 + NMT", "optical": "OPTICAL"},
        "measure": "AP",
        "baselines": [{"system": "bm25_nmt", "symbol": "b"}],
        "relative_to": "bm25_nmt",
        "correction": "holm",
        "alpha": 0.05,
        "config_hash": "abc",
        "git_commit": "0123456789ab",
    }
    outputs = {k: str(tmp_path / f"out.{k}") for k in ("md", "csv", "tex", "measures", "seeds")}
    long = write_main_tables([e["path"] for e in entries], params, outputs)
    optical = long[long["system"] == "optical"].iloc[0]
    means = [seed_a.mean(), seed_b.mean()]
    assert optical["value"] == pytest.approx(np.mean(means))
    assert optical["value_sd"] == pytest.approx(np.std(means, ddof=1))
    assert optical["n_seeds"] == 2
    assert long[long["system"] == "bm25_nmt"].iloc[0]["n_seeds"] == 0

    seeds = pd.read_csv(outputs["seeds"])
    assert list(seeds["seed"]) == [1, 2]
    for seed, values in ((1, seed_a), (2, seed_b)):
        row = seeds[seeds["seed"] == seed].iloc[0]
        assert row["value"] == pytest.approx(values.mean(), abs=1e-6)
        assert row["p_vs_bm25_nmt"] == pytest.approx(paired_ttest(values, base)[1], rel=1e-4)
    md = Path(outputs["md"]).read_text()
    assert f"{optical['value']:.3f}±{optical['value_sd']:.3f}" in md
    assert "git commit: 0123456789ab" in md and "over 2 seeds" in md

    with pytest.raises(ValueError, match="do not match"):
        write_main_tables([e["path"] for e in entries][::-1], params, outputs)


def test_seeds_on_different_queries_are_an_error():
    a = pd.DataFrame({"AP": [0.1, 0.2]}, index=pd.Index(["q1", "q2"], name="qid"))
    b = pd.DataFrame({"AP": [0.1, 0.2]}, index=pd.Index(["q1", "q3"], name="qid"))
    with pytest.raises(ValueError, match="different queries"):
        seed_average([a, b])


def test_learning_curve_needs_the_pairs_each_student_used(tmp_path):
    from optical_clir.evaluation.report_outputs import write_learning_curve

    model = tmp_path / "student"
    model.mkdir()
    (model / "train_config.json").write_text('{"method": "optical"}')
    entry = {"language": "sw", "method": "optical", "pairs": 16, "seed": 13}
    entry |= {"eval": _write_ap(tmp_path / "e.tsv", [0.5]), "model": str(model)}
    params = {"measure": "AP", "language_names": {"sw": "Swahili"}, "labels": {}}
    params |= {"config_hash": "abc"}
    outputs = {k: str(tmp_path / f"curve.{k}") for k in ("csv", "md", "png")}
    with pytest.raises(ValueError, match=r"train_config\.json: no 'n_train_pairs'"):
        write_learning_curve([entry], [], params, outputs)
    assert not any((tmp_path / f"curve.{k}").exists() for k in ("csv", "md", "png"))


def _two_system_params(tmp_path, test="ttest"):
    rng = np.random.default_rng(1)
    base = rng.uniform(0.1, 0.5, 40)
    better = np.clip(base + 0.05 + rng.normal(0, 0.05, 40), 0, 1)
    better[:5] = base[:5]  # five ties
    entries = [
        {"language": "sw", "system": "bm25_nmt", "seed": None, "path": _write_ap(tmp_path / "b.tsv", base)},
        {"language": "sw", "system": "optical", "seed": None, "path": _write_ap(tmp_path / "o.tsv", better)},
        {"language": "so", "system": "bm25_nmt", "seed": None, "path": _write_ap(tmp_path / "b2.tsv", better)},
        {"language": "so", "system": "optical", "seed": None, "path": _write_ap(tmp_path / "o2.tsv", base)},
    ]  # fmt: skip
    params = {
        "entries": entries,
        "language_names": {"sw": "Swahili", "so": "Somali"},
        "labels": {"bm25_nmt": "BM25 + NMT", "optical": "OPTICAL_x"},
        "measure": "AP",
        "baselines": [{"system": "bm25_nmt", "symbol": "b"}],
        "relative_to": "bm25_nmt",
        "correction": "holm",
        "alpha": 0.05,
        "test": test,
        "randomization": {"n_resamples": 2000, "seed": 3},
        "bootstrap": {"n_resamples": 2000, "confidence": 0.9},
        "config_hash": "abc",
        "git_commit": "0123456789ab",
    }
    outputs = {k: str(tmp_path / f"main.{k}") for k in ("md", "csv", "tex", "measures", "seeds")}
    return base, better, params, outputs


@pytest.mark.parametrize("test", ["ttest", "randomization"])
def test_main_csv_has_both_tests_counts_and_ci(tmp_path, test):
    from optical_clir.evaluation.bootstrap import bootstrap_mean_ci
    from optical_clir.evaluation.significance import paired_randomization_test

    base, better, params, outputs = _two_system_params(tmp_path, test)
    write_main_tables([e["path"] for e in params["entries"]], params, outputs)
    main = pd.read_csv(outputs["csv"])
    row = main[(main["language"] == "Swahili") & (main["system"] == "optical")].iloc[0]
    # one comparison per column: Holm leaves the p-values as they are
    p_t = paired_ttest(better, base)[1]
    p_r = paired_randomization_test(better, base, 2000, 3)[1]
    assert row["p_ttest_vs_bm25_nmt"] == pytest.approx(p_t, rel=1e-4, abs=1e-6)
    assert row["p_randomization_vs_bm25_nmt"] == pytest.approx(p_r, abs=1e-6)
    assert row["p_vs_bm25_nmt"] == pytest.approx(p_t if test == "ttest" else p_r, abs=1e-6)
    diff = better - base
    assert (row["wins_vs_bm25_nmt"], row["ties_vs_bm25_nmt"], row["losses_vs_bm25_nmt"]) == (
        int((diff > 0).sum()), 5, int((diff < 0).sum()),
    )  # fmt: skip
    mean, low, high = bootstrap_mean_ci(diff, 2000, 0.9, 3)
    assert row["diff_vs_bm25_nmt"] == pytest.approx(mean, abs=1e-6)
    assert (row["diff_low_vs_bm25_nmt"], row["diff_high_vs_bm25_nmt"]) == (
        pytest.approx(low, abs=1e-6), pytest.approx(high, abs=1e-6),
    )  # fmt: skip
    assert low < mean < high and row["marks"] == "▲b"
    reverse = main[(main["language"] == "Somali") & (main["system"] == "optical")].iloc[0]
    assert reverse["marks"] == "▼b" and reverse["diff_high_vs_bm25_nmt"] < 0
    assert pd.isna(main[main["system"] == "bm25_nmt"]["wins_vs_bm25_nmt"]).all()
    legend_test = "randomization test, 2000 resamples" if test != "ttest" else "t-test"
    assert legend_test in Path(outputs["md"]).read_text()


def test_main_tex_marks_bold_label_and_provenance(tmp_path):
    _, _, params, outputs = _two_system_params(tmp_path)
    write_main_tables([e["path"] for e in params["entries"]], params, outputs)
    tex = Path(outputs["tex"]).read_text()
    assert tex.isascii()  # pdflatex needs no unicode mapping
    lines = tex.splitlines()
    assert lines[0].startswith("% Config hash: abc; git commit: 0123456789ab")
    assert lines[1].startswith("% Versions: ")
    assert r"\label{tab:main}" in tex and "Config hash" not in tex.split(r"\begin{table}")[1]
    optical = next(line for line in lines if line.startswith(r"OPTICAL\_x &"))
    sw, so = (c.strip().removesuffix("\\\\").strip() for c in optical.split("&")[1:])
    # Swahili: OPTICAL is best (bold) and significantly better than baseline b
    assert sw.startswith(r"\textbf{") and r"\textsuperscript{$\blacktriangle$b}" in sw
    assert so.startswith("0.") and r"\textsuperscript{$\blacktriangledown$b}" in so
    assert r"\%)" in sw
    bm25 = next(line for line in lines if line.startswith("BM25 + NMT &"))
    assert bm25.split("&")[2].strip().startswith(r"\textbf{")  # Somali's best


def test_main_tex_compiles_with_pdflatex(tmp_path):
    import shutil
    import subprocess

    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not on PATH")
    _, _, params, outputs = _two_system_params(tmp_path)
    write_main_tables([e["path"] for e in params["entries"]], params, outputs)
    doc = tmp_path / "doc.tex"
    doc.write_text(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage{amssymb}\n"
        "\\begin{document}\n\\input{main.tex}\n\\end{document}\n"
    )
    done = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000
    assert "Overfull" not in done.stdout and "Missing character" not in done.stdout


def test_relative_change_is_a_dash_where_the_reference_is_below_the_floor():
    """README: "(–)" where the relative_to system scores below evaluation.relative_floor
    (a change against a near-zero MAP says nothing); floor 0 keeps the percentage."""
    rng = np.random.default_rng(5)
    near_zero = rng.uniform(0.0, 0.06, 30)  # mean about 0.03
    systems = {"bm25_nmt": fake_per_query(near_zero), "optical": fake_per_query(near_zero + 0.2)}
    ref = near_zero.mean()
    assert 0 < ref < 0.05
    args = ({"Swahili": systems}, {}, [Baseline("bm25_nmt", "b")], "bm25_nmt")
    floored = main_table(*args, relative_floor=0.05)
    optical = floored[floored["system"] == "optical"].iloc[0]
    assert np.isnan(optical["relative_change_vs_bm25_nmt"])
    cells = wide_cells(floored, "bm25_nmt")["Swahili"]
    assert cells["optical"].endswith(" (–)") and "%" not in cells["optical"]
    assert "(" not in cells["bm25_nmt"]  # the reference itself has no relative change

    unfloored = main_table(*args, relative_floor=0.0)
    optical = unfloored[unfloored["system"] == "optical"].iloc[0]
    change = (near_zero + 0.2).mean() / ref - 1
    assert optical["relative_change_vs_bm25_nmt"] == pytest.approx(change)
    cell = wide_cells(unfloored, "bm25_nmt")["Swahili"]["optical"]
    assert cell.endswith(f" ({100 * change:+.1f}%)")


def test_main_md_dashes_cells_below_the_floor_and_says_why(tmp_path):
    """Through write_main_tables: with relative_floor above both languages' reference MAP,
    every OPTICAL cell of main.md ends in "(–)" and the legend names the floor."""
    base, better, params, outputs = _two_system_params(tmp_path)
    assert max(base.mean(), better.mean()) < 0.5
    write_main_tables(
        [e["path"] for e in params["entries"]], {**params, "relative_floor": 0.5}, outputs
    )
    md = Path(outputs["md"]).read_text()
    row = next(line for line in md.splitlines() if line.startswith("| OPTICAL_x |"))
    assert [c.strip().endswith("(–)") for c in row.strip("|").split("|")[1:]] == [True, True]
    assert "((–) where it scores below 0.5)" in md
    assert pd.read_csv(outputs["csv"])["relative_change_vs_bm25_nmt"].isna().all()


def test_main_md_states_mixed_ranking_depths(tmp_path):
    """evaluation.mixed_depth: true lets BM25 and dense systems rank to different depths;
    main.md then says so (the workflow passes both depths), and says nothing otherwise."""
    _, _, params, outputs = _two_system_params(tmp_path)
    write_main_tables([e["path"] for e in params["entries"]], params, outputs)
    assert "depths differ" not in Path(outputs["md"]).read_text()
    mixed = {**params, "mixed_depth": {"bm25": 1000, "dense": 100}}
    write_main_tables([e["path"] for e in params["entries"]], mixed, outputs)
    md = Path(outputs["md"]).read_text()
    assert "Ranking depths differ: BM25 1000, dense 100." in md
    assert "depths differ: BM25 1000, dense 100" in Path(outputs["tex"]).read_text()
