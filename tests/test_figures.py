"""Figures (evaluation/figures.py) and the OT-plan examples behind the heatmap (ot_heatmap.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib import image as mpimg

from optical_clir.evaluation.bootstrap import ci_table
from optical_clir.evaluation.figures import (
    PROPOSED_COLOR,
    learning_curve_figure,
    learning_curve_table,
    map_ci_figure,
    ot_heatmap_figure,
)
from optical_clir.evaluation.ot_heatmap import ot_plan_examples, write_ot_heatmap
from optical_clir.models.encoder import TokenEncoder
from optical_clir.models.tiny import save_tiny_encoder
from optical_clir.train.distill import DistillationModule

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LOSS = {"cost": "cosine", "marginals": "uniform", "epsilon": 0.1, "epsilon_mode": "relative"}
PAIRS = [
    ("the small cat sleeps in the house", "a cat sleeps"),
    ("dog runs", "the big dog runs on the road to the farm"),
    ("zebra eats", "the fox eats"),  # 'zebra' is not in the toy vocabulary: [UNK]
    ("a bird", "a bird sings"),
]


def proposed_pixels(pixels: np.ndarray) -> int:
    """How many pixels are drawn in the proposed method's colour."""
    rgb = np.array([int(PROPOSED_COLOR[i : i + 2], 16) for i in (1, 3, 5)]) / 255
    return int((np.abs(pixels[..., :3] - rgb).max(axis=-1) < 0.02).sum())


def assert_pdf(png: Path) -> None:
    """The vector copy beside the PNG."""
    pdf = png.with_suffix(".pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 1000
    assert not [p for p in png.parent.iterdir() if p.name.startswith(f".{pdf.name}")]


def assert_png(path: Path, min_side: int = 300) -> np.ndarray:
    """A real PNG that matplotlib reads back, of a useful size and not blank."""
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = mpimg.imread(path)
    assert pixels.ndim == 3 and min(pixels.shape[:2]) >= min_side
    assert float(pixels[..., :3].std()) > 0.01
    # written atomically: no temporary file left beside it
    assert not [p for p in path.parent.iterdir() if p.name.startswith(f".{path.name}")]
    return pixels


# ------------------------------------------------------------------------------ MAP + CI


def _ci() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for lang, n in (("sw", 30), ("so", 20)):
        for k, system in enumerate(("bm25_nmt", "teacher", "optical")):
            if lang == "so" and system == "teacher":
                continue  # a gap in the figure
            for seed in (0, 1) if system == "optical" else (0,):
                for q in range(n):
                    value = float(np.clip(rng.beta(1, 3) + 0.05 * k, 0, 1))
                    rows.append((lang, system, seed, f"q{q}", "AP", value))
    frame = pd.DataFrame(
        rows, columns=["language", "system", "seed", "query_id", "measure", "value"]
    )
    return ci_table(frame, "AP", n_resamples=500)


def test_map_ci_figure_writes_a_png(tmp_path: Path) -> None:
    ci = _ci()
    assert len(ci) == 5
    out = map_ci_figure(
        ci,
        tmp_path / "figs" / "map_ci.png",
        system_labels={"bm25_nmt": "BM25 + NMT", "optical": "OPTICAL"},
        language_names={"sw": "Swahili", "so": "Somali"},
    )
    assert out == tmp_path / "figs" / "map_ci.png"
    pixels = assert_png(out)
    assert pixels.shape[1] >= 900  # 6 inches at 150 dpi
    assert_pdf(out)
    # OPTICAL's bars (and legend patch) stand out in their own colour; no other bar has it
    assert proposed_pixels(pixels) > 500
    others = map_ci_figure(ci[ci["system"] != "optical"], tmp_path / "others.png")
    assert proposed_pixels(assert_png(others)) == 0


def test_map_ci_figure_needs_the_interval_columns(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="lacks columns"):
        map_ci_figure(_ci().drop(columns="low"), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


# ---------------------------------------------------------------------- learning curves


def _curve(seeds: tuple[int, ...], pairs: tuple[int, ...]) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = []
    for lang in ("sw", "so"):
        for method, gain in (("optical", 0.04), ("kd_mse", 0.02)):
            for n in pairs:
                for seed in seeds:
                    value = 0.2 + gain * np.log10(n) + rng.normal(0, 0.01)
                    rows.append((lang, method, n, seed, value))
    return pd.DataFrame(rows, columns=["language", "method", "pairs", "seed", "value"])


def test_learning_curve_table_stats() -> None:
    curve = pd.DataFrame(
        {
            "language": ["sw"] * 5,
            "method": ["optical"] * 5,
            "pairs": [1000, 1000, 1000, 100, 10],
            "seed": [0, 1, 2, 0, 0],
            "value": [0.3, 0.4, 0.5, 0.2, 0.1],
        }
    )
    table = learning_curve_table(curve)
    assert table["pairs"].tolist() == [10, 100, 1000]
    assert table["n_seeds"].tolist() == [1, 1, 3]
    assert table["mean"].tolist() == pytest.approx([0.1, 0.2, 0.4])
    assert table["sd"].iloc[2] == pytest.approx(0.1) and table["sd"].iloc[:2].isna().all()
    assert table[["min", "max"]].iloc[2].tolist() == [0.3, 0.5]
    with pytest.raises(ValueError, match="duplicate"):
        learning_curve_table(pd.concat([curve, curve.iloc[:1]]))


@pytest.mark.parametrize(
    ("seeds", "pairs", "band"),
    [((0, 1, 2), (100, 1000, 10000), "minmax"), ((0,), (500, 1000, 1500), "sd")],
)
def test_learning_curve_figure_writes_a_png(
    tmp_path: Path, seeds: tuple[int, ...], pairs: tuple[int, ...], band: str
) -> None:
    out = learning_curve_figure(
        _curve(seeds, pairs),
        tmp_path / "curve.png",
        method_labels={"optical": "OPTICAL", "kd_mse": "KD-MSE"},
        language_names={"sw": "Swahili"},
        references={
            "sw": {"zero-shot teacher": 0.25, "BM25 + NMT": 0.3},
            "so": {"zero-shot teacher": 0.22},
        },
        band=band,
    )
    pixels = assert_png(out)
    assert_pdf(out)
    assert proposed_pixels(pixels) > 200  # the OPTICAL line, in its colour
    kd_only = _curve(seeds, pairs).query("method != 'optical'")
    assert proposed_pixels(assert_png(learning_curve_figure(kd_only, tmp_path / "kd.png"))) == 0
    with pytest.raises(ValueError, match="band"):
        learning_curve_figure(_curve(seeds, pairs), tmp_path / "bad.png", band="iqr")


# ------------------------------------------------------------------------ OT heatmaps


def test_ot_heatmap_figure_handles_large_and_small_plans(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    big = rng.random((40, 38))
    examples = [
        {
            "plan": big / big.sum(),
            "student_tokens": [f"s{i}" for i in range(40)],
            "teacher_tokens": [f"t{j}" for j in range(38)],
            "title": "40 x 38",
        },
        {
            "plan": np.full((3, 5), 1 / 15),
            "student_tokens": ["[CLS]", "paka", "[SEP]"],
            "teacher_tokens": ["[CLS]", "the", "cat", "##s", "[SEP]"],
            "student_special": [True, False, True],
            "teacher_special": [True, False, False, False, True],
            "title": "3 x 5",
        },
    ]
    assert_png(ot_heatmap_figure(examples, tmp_path / "heat.png", title="OT plans"))
    bad = [{**examples[1], "student_tokens": ["a", "b"]}]
    with pytest.raises(ValueError, match="does not match the tokens"):
        ot_heatmap_figure(bad, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="no examples"):
        ot_heatmap_figure([], tmp_path / "bad.png")


@pytest.fixture(scope="module")
def encoders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two tiny saved TokenEncoders on the same toy vocabulary: (student, teacher)."""
    teacher = save_tiny_encoder(tmp_path_factory.mktemp("heat_teacher"), seed=1, dim=16)
    student = save_tiny_encoder(tmp_path_factory.mktemp("heat_student"), seed=2, dim=16)
    return student, teacher


def test_ot_plan_examples_match_training_and_the_tokenizer(encoders: tuple[Path, Path]) -> None:
    student = TokenEncoder.from_pretrained(encoders[0], device="cpu")
    teacher = TokenEncoder.from_pretrained(encoders[1], device="cpu")
    examples = ot_plan_examples(student, teacher, PAIRS, LOSS, n_examples=3)
    assert len(examples) == 3
    module = DistillationModule(student, teacher, "optical", LOSS)
    for (src, en), ex in zip(PAIRS, examples, strict=False):
        # the tokens are the tokenizer's own, special tokens included (they carry mass in training)
        s_ids = student.tokenizer(src)["input_ids"]
        t_ids = teacher.tokenizer(en)["input_ids"]
        assert ex["student_tokens"] == student.tokenizer.convert_ids_to_tokens(s_ids)
        assert ex["teacher_tokens"] == teacher.tokenizer.convert_ids_to_tokens(t_ids)
        assert ex["student_tokens"][0] == "[CLS]" and ex["student_tokens"][-1] == "[SEP]"
        assert ex["student_special"] == [t in ("[CLS]", "[SEP]") for t in ex["student_tokens"]]
        assert ex["teacher_special"] == [t in ("[CLS]", "[SEP]") for t in ex["teacher_tokens"]]
        assert (ex["student_text"], ex["teacher_text"]) == (src, en)
        plan = ex["plan"]
        n, m = len(s_ids), len(t_ids)
        assert plan.shape == (n, m) and (plan >= 0).all()
        # uniform marginals over the real tokens (padding dropped)
        assert plan.sum(axis=1) == pytest.approx(np.full(n, 1 / n), abs=1e-4)
        assert plan.sum(axis=0) == pytest.approx(np.full(m, 1 / m), abs=1e-6)
        # the plan training computes for this pair alone (no padding in a batch of one)
        with torch.no_grad():
            alone = module.plan_result({"source": [src], "english": [en]}).plan
        # (to the solver tolerance: a batch iterates until its slowest example converges)
        assert plan == pytest.approx(alone[0].double().numpy(), abs=1e-5)
    assert "[UNK]" in examples[2]["student_tokens"]


def test_ot_plan_examples_truncate_like_training(encoders: tuple[Path, Path]) -> None:
    student = TokenEncoder.from_pretrained(encoders[0], device="cpu")
    teacher = TokenEncoder.from_pretrained(encoders[1], device="cpu")
    student.config.query_max_length = 5  # training's max_length is the student's
    (ex,) = ot_plan_examples(student, teacher, PAIRS[1:], LOSS, n_examples=1)
    assert ex["teacher_tokens"] == ["[CLS]", "the", "big", "dog", "[SEP]"]
    assert ex["plan"].shape == (4, 5)
    with pytest.raises(ValueError):
        ot_plan_examples(student, teacher, PAIRS, LOSS, n_examples=0)


def test_write_ot_heatmap_writes_png_and_json(encoders: tuple[Path, Path], tmp_path: Path) -> None:
    bitext = tmp_path / "bitext"
    bitext.mkdir()
    (bitext / "dev.tsv").write_text("".join(f"{s}\t{e}\n" for s, e in PAIRS))
    out = write_ot_heatmap(
        encoders[0], encoders[1], bitext, LOSS, tmp_path / "fig" / "sw.png", n_examples=3
    )
    assert out == tmp_path / "fig" / "sw.png"
    assert_png(out)
    record = json.loads((tmp_path / "fig" / "sw.json").read_text())
    assert record["loss"] == LOSS and record["bitext"] == str(bitext / "dev.tsv")
    assert len(record["examples"]) == 3
    for ex in record["examples"]:
        plan = np.asarray(ex["plan"])
        assert plan.shape == (len(ex["student_tokens"]), len(ex["teacher_tokens"]))
        assert plan.sum() == pytest.approx(1.0, abs=1e-4)
    # the zero-shot teacher against itself
    write_ot_heatmap(encoders[1], encoders[1], bitext, LOSS, tmp_path / "t.png", n_examples=1)
    assert len(json.loads((tmp_path / "t.json").read_text())["examples"]) == 1


def test_write_map_ci_on_a_known_table(tmp_path: Path) -> None:
    """The MAP-CI job (report_outputs.write_map_ci) on per-query files whose intervals are
    known: a constant system (a point), two queries scoring 0 and 1 (resample means 0, 0.5
    or 1: the 95% interval is [0, 1]) and a system of two seeds (averaged per query first)."""
    from optical_clir.evaluation.measures import write_per_query
    from optical_clir.evaluation.report_outputs import write_map_ci

    def per_query(ap: list[float], path: Path) -> str:
        # another measure in the file, with other values, that must not be used
        table = pd.DataFrame(
            {"AP": ap, "nDCG@10": [0.9] * len(ap)},
            index=pd.Index([f"q{i}" for i in range(len(ap))], name="qid"),
        )
        write_per_query(table, path)
        return str(path)

    entries = [
        {"language": "sw", "system": "bm25_nmt", "seed": None,
         "path": per_query([0.25, 0.25], tmp_path / "sw_bm25.tsv")},
        {"language": "sw", "system": "teacher_raw", "seed": None,
         "path": per_query([0.0, 1.0], tmp_path / "sw_teacher.tsv")},
        {"language": "sw", "system": "optical", "seed": 1,
         "path": per_query([0.2, 0.4], tmp_path / "sw_optical_1.tsv")},
        {"language": "sw", "system": "optical", "seed": 2,
         "path": per_query([0.4, 0.6], tmp_path / "sw_optical_2.tsv")},
        {"language": "pseudo", "system": "bm25_nmt", "seed": None,
         "path": per_query([0.5, 0.5, 0.5], tmp_path / "ps_bm25.tsv")},
    ]  # fmt: skip
    params = {
        "measure": "AP",
        "entries": entries,
        "labels": {"bm25_nmt": "BM25 + NMT", "teacher_raw": "Teacher", "optical": "OPTICAL"},
        "language_names": {"sw": "Swahili", "pseudo": "Pseudo"},
    }
    png, csv = tmp_path / "fig" / "map_ci.png", tmp_path / "tables" / "map_ci.csv"
    returned = write_map_ci(params, {"n_resamples": 2000, "confidence": 0.95}, png, csv)

    table = pd.read_csv(csv)
    assert list(table.columns) == [
        "language", "system", "measure", "mean", "low", "high", "n_queries", "n_seeds",
        "confidence",
    ]  # fmt: skip
    rows = {(r.language, r.system): r for r in table.itertuples()}
    assert list(rows) == [("sw", "bm25_nmt"), ("sw", "teacher_raw"), ("sw", "optical"),
                          ("pseudo", "bm25_nmt")]  # fmt: skip
    expected = {  # mean, low, high, queries, seeds
        ("sw", "bm25_nmt"): (0.25, 0.25, 0.25, 2, 1),
        ("sw", "teacher_raw"): (0.5, 0.0, 1.0, 2, 1),
        ("sw", "optical"): (0.4, 0.3, 0.5, 2, 2),
        ("pseudo", "bm25_nmt"): (0.5, 0.5, 0.5, 3, 1),
    }
    for key, (mean, low, high, queries, seeds) in expected.items():
        row = rows[key]
        assert (row.mean, row.low, row.high) == pytest.approx((mean, low, high), abs=1e-9), key
        assert (row.n_queries, row.n_seeds) == (queries, seeds), key
        assert row.measure == "AP" and row.confidence == 0.95
    assert returned[["mean", "low", "high"]].to_numpy() == pytest.approx(
        table[["mean", "low", "high"]].to_numpy()
    )
    assert_png(png)
