"""OT word-alignment evaluation (evaluation/ot_alignment.py) with a tiny saved encoder."""

from __future__ import annotations

import csv
import json
import math
import os
import random
import shutil
from pathlib import Path

import pytest
import torch

from optical_clir.errors import InputError
from optical_clir.evaluation.ot_alignment import (
    evaluate_alignment,
    read_pharaoh,
    write_alignment_table,
)
from optical_clir.evaluation.ot_plans import token_words, training_plans
from optical_clir.models.encoder import TokenEncoder
from optical_clir.models.tiny import ACTIONS, ANIMALS, PLACES, save_tiny_encoder
from optical_clir.train.distill import DistillationModule, collate_pairs

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RESULT_KEYS = {
    "encoder",
    "language",
    "seed",
    "pairs",
    "aligned_words",
    "correct",
    "accuracy",
    "chance_accuracy",
    "truncated_words",
    "loss",
}


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny saved TokenEncoder (2-layer BERT, 16-d projection)."""
    return save_tiny_encoder(tmp_path_factory.mktemp("align_teacher"), seed=1, dim=16)


def _sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [
            rng.choice(["the", "a", "this"]),
            rng.choice(["big", "small", "old", "red"]),
            rng.choice(ANIMALS),
            rng.choice(ACTIONS),
            rng.choice(["in", "on", "at"]),
            rng.choice(PLACES),
        ]
        out.append(" ".join(words[: rng.randint(3, 6)]))
    return out


def _identity_files(tmp_path: Path, n: int = 12) -> tuple[Path, Path, list[str]]:
    """Bitext whose source side equals its English side, and the gold alignment i-i."""
    sentences = _sentences(n, seed=0)
    pairs = tmp_path / "dev.tsv"
    pairs.write_text("".join(f"{s}\t{s}\n" for s in sentences))
    gold = tmp_path / "dev.align"
    gold.write_text(
        "".join(" ".join(f"{i}-{i}" for i in range(len(s.split()))) + "\n" for s in sentences)
    )
    return pairs, gold, sentences


# ------------------------------------------------------------------------------ read_pharaoh


def test_read_pharaoh_good_file(tmp_path: Path) -> None:
    path = tmp_path / "a.align"
    path.write_text("0-0 1-2 2-1\n\n3-10  0-1\n")
    assert read_pharaoh(path) == [[(0, 0), (1, 2), (2, 1)], [], [(3, 10), (0, 1)]]


@pytest.mark.parametrize("bad", ["a-b", "3", "1-", "-2", "1-2-3", "1:2"])
def test_read_pharaoh_bad_link_reports_its_line(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "a.align"
    path.write_text(f"0-0 1-1\n\n2-2 {bad} 3-3\n")
    with pytest.raises(InputError) as info:
        read_pharaoh(path)
    assert info.value.line == 3
    assert f"'{bad}'" in str(info.value)
    assert f"{path}:3" in str(info.value)


# ----------------------------------------------------------------- plans and word indices


def test_token_words_map_tokens_to_whitespace_words() -> None:
    text = "do n't stop , farmers"
    # [CLS] do n ' t stop , farmers [SEP]: offsets as a BERT fast tokenizer gives them
    offsets = [(0, 0), (0, 2), (3, 4), (4, 5), (5, 6), (7, 11), (12, 13), (14, 21), (0, 0)]
    assert token_words(text, offsets) == [None, 0, 1, 1, 1, 2, 3, 4, None]


def test_training_plans_are_the_plans_training_computes(teacher_dir: Path) -> None:
    encoder = TokenEncoder.from_pretrained(teacher_dir, device="cpu")
    pairs = [(s, s) for s in _sentences(7, seed=3)]
    loss_cfg = {"epsilon": 0.1, "special_tokens": "no_mass"}
    plans = training_plans(encoder, encoder, pairs, loss_cfg, batch_size=3)
    module = DistillationModule(encoder, encoder, "optical", loss_cfg).eval()
    with torch.no_grad():
        full = module.plan_result(collate_pairs(pairs)).plan
    assert [p.source for p in plans] == [s for s, _ in pairs]
    for k, p in enumerate(plans):
        n, m = p.plan.shape
        assert n == len(p.student_tokens) == len(p.student_offsets) == len(p.student_mass)
        assert m == len(p.teacher_tokens)
        assert torch.allclose(torch.from_numpy(p.plan), full[k, :n, :m].double(), atol=1e-6)
        assert p.student_special[0] and p.student_special[-1]  # [CLS] ... [SEP]
        assert not p.student_mass[0] and p.plan[0].sum() == 0  # no mass on [CLS]


# ------------------------------------------------------------------------ evaluate_alignment


def test_identity_alignment_is_recovered_well_above_chance(
    teacher_dir: Path, tmp_path: Path
) -> None:
    pairs, gold, sentences = _identity_files(tmp_path)
    loss_cfg = {"epsilon": 0.1, "epsilon_mode": "relative"}
    out = tmp_path / "res" / "teacher.json"
    result = evaluate_alignment(
        teacher_dir,
        teacher_dir,
        pairs,
        gold,
        loss_cfg,
        out,
        encoder_name="teacher",
        language="pseudo",
        batch_size=5,  # several batches, the last one partial
    )
    assert json.loads(out.read_text()) == result
    assert set(result) == RESULT_KEYS
    n_words = sum(len(s.split()) for s in sentences)
    assert result["encoder"] == "teacher" and result["language"] == "pseudo"
    assert result["pairs"] == len(sentences)
    assert result["aligned_words"] == n_words
    assert result["truncated_words"] == 0
    assert result["loss"] == loss_cfg
    # uniform guess: one gold target per source word, 1/len(sentence) each
    assert result["chance_accuracy"] == pytest.approx(len(sentences) / n_words)
    # identical token sets: each token's own copy costs 0, so the plan finds it
    assert result["accuracy"] == result["correct"] / n_words
    assert result["accuracy"] > 0.9
    assert result["accuracy"] > 3 * result["chance_accuracy"]

    # a student in another folder with the same weights gives the same result
    student = shutil.copytree(teacher_dir, tmp_path / "student")
    again = evaluate_alignment(
        student, teacher_dir, pairs, gold, loss_cfg, tmp_path / "s.json", batch_size=32
    )
    assert again["correct"] == result["correct"]
    assert again["chance_accuracy"] == pytest.approx(result["chance_accuracy"])


def test_wrong_gold_is_scored_as_wrong(teacher_dir: Path, tmp_path: Path) -> None:
    """Gold that pairs each word with the next one: the identity plan gets (almost) none."""
    pairs, _, sentences = _identity_files(tmp_path)
    gold = tmp_path / "shifted.align"
    gold.write_text(
        "".join(
            " ".join(f"{i}-{(i + 1) % len(s.split())}" for i in range(len(s.split()))) + "\n"
            for s in sentences
        )
    )
    result = evaluate_alignment(
        teacher_dir, teacher_dir, pairs, gold, {"epsilon": 0.1}, tmp_path / "r.json"
    )
    assert result["accuracy"] < 0.1


def test_words_beyond_the_training_length_are_left_out_and_counted(
    tmp_path: Path,
) -> None:
    short = save_tiny_encoder(tmp_path / "short", seed=1, dim=16, query_max_length=5)
    pairs, gold, sentences = _identity_files(tmp_path)
    result = evaluate_alignment(short, short, pairs, gold, {}, tmp_path / "r.json")
    # query_max_length 5 keeps [CLS] + 3 words + [SEP]
    cut = sum(max(0, len(s.split()) - 3) for s in sentences)
    assert result["truncated_words"] == cut > 0
    assert result["aligned_words"] == sum(len(s.split()) for s in sentences) - cut
    assert result["accuracy"] > 0.9


def test_gold_with_another_number_of_lines_is_an_input_error(
    teacher_dir: Path, tmp_path: Path
) -> None:
    pairs, gold, _ = _identity_files(tmp_path)
    short = tmp_path / "short.align"
    short.write_text("".join(gold.read_text().splitlines(keepends=True)[:-1]))
    out = tmp_path / "r.json"
    with pytest.raises(InputError, match=r"has 11 lines but .* has 12 pairs") as info:
        evaluate_alignment(teacher_dir, teacher_dir, pairs, short, {}, out)
    assert info.value.path == str(short)
    assert not out.exists()


# --------------------------------------------------------------------- write_alignment_table


def test_write_alignment_table_has_one_row_per_encoder_mean_over_seeds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    rows = [
        ("pseudo", "teacher", 10, 40, 0.5, 0.25, 13),
        ("pseudo", "optical", 10, 40, 0.875, 0.25, 13),
        ("pseudo", "optical", 10, 40, 0.625, 0.25, 14),
        ("sw", "kd_mse", 3, 0, math.nan, math.nan, 13),
    ]
    paths = []
    for k, (lang, enc, n, words, acc, chance, seed) in enumerate(rows):
        path = tmp_path / f"r{k}.json"
        path.write_text(
            json.dumps(
                {
                    "encoder": enc,
                    "language": lang,
                    "seed": seed,
                    "pairs": n,
                    "aligned_words": words,
                    "correct": 0,
                    "accuracy": acc,
                    "chance_accuracy": chance,
                    "truncated_words": 0,
                    "loss": {},
                }
            )
        )
        paths.append(path)
    md, csv_path = tmp_path / "t" / "align.md", tmp_path / "t" / "align.csv"
    md.parent.mkdir()
    table = write_alignment_table(paths, md, csv_path)
    assert f"alignment table: 3 rows written to {md} and {csv_path}" in caplog.text
    assert list(table.columns) == [
        "language",
        "encoder",
        "pairs",
        "aligned_words",
        "accuracy",
        "accuracy_sd",
        "seeds",
        "chance_accuracy",
    ]
    assert len(table) == 3

    with open(csv_path, newline="") as fh:
        records = list(csv.DictReader(fh))
    assert [r["encoder"] for r in records] == ["teacher", "optical", "kd_mse"]
    assert records[1]["accuracy"] == "0.7500" and records[1]["chance_accuracy"] == "0.2500"
    assert records[1]["accuracy_sd"] == f"{0.25 / math.sqrt(2):.4f}" and records[1]["seeds"] == "2"
    assert records[1]["aligned_words"] == "40"

    lines = md.read_text().splitlines()
    body = [line for line in lines if line.startswith("| ") and "---" not in line]
    assert body[0].startswith("| language | query encoder |")
    assert body[1:] == [
        "| pseudo | teacher | 10 | 40 | 0.500 | 0.250 |",
        "| pseudo | optical | 10 | 40 | 0.750 ± 0.177 (2 seeds) | 0.250 |",
        "| sw | kd_mse | 3 | 0 | nan | nan |",
    ]
