"""translation_quality and the translation table agree with sacrebleu called directly."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from sacrebleu.metrics import BLEU, CHRF

from optical_clir.errors import InputError
from optical_clir.translate.quality import (
    TABLE_COLUMNS,
    quality_row,
    quality_table,
    read_scoring_pairs,
    translation_quality,
    translation_quality_tables,
)

TRANSLATIONS = (
    "q1\tpaka mkubwa\tthe big cat sat on a mat\n"
    "q2\tmaji\t\n"
    "q3\tshule ya watoto\tschool of the children\n"
    "q4\tnyumba\ta house near the river\n"
)
REFERENCES = (
    "q4\tthe house by the river\nq3\tchildren's school\nq1\tthe big cat sat on the mat\nq2\twater\n"
)
HYPS = ["the big cat sat on a mat", "", "school of the children", "a house near the river"]
REFS = ["the big cat sat on the mat", "water", "children's school", "the house by the river"]


def _files(tmp_path: Path) -> tuple[Path, Path]:
    trans, refs = tmp_path / "sw.trans.tsv", tmp_path / "en.tsv"
    trans.write_text(TRANSLATIONS, encoding="utf-8")
    refs.write_text(REFERENCES, encoding="utf-8")
    return trans, refs


def test_scores_equal_sacrebleu_directly(tmp_path):
    trans, refs = _files(tmp_path)
    qids, hyps, refs_read = read_scoring_pairs(trans, refs)
    assert qids == ["q1", "q2", "q3", "q4"]
    assert hyps == HYPS and refs_read == REFS  # the empty hypothesis is kept, aligned by qid
    got = translation_quality(hyps, refs_read)
    metrics = {"BLEU": BLEU(), "chrF": CHRF(), "chrF++": CHRF(word_order=2)}
    for name, metric in metrics.items():
        direct = metric.corpus_score(HYPS, [REFS])
        assert got[name] == pytest.approx(direct.score, abs=1e-12)
        assert got[f"{name}_signature"] == str(metric.get_signature())
    assert got["n_segments"] == 4
    assert "nw:2" in got["chrF++_signature"] and "nw:0" in got["chrF_signature"]
    # Dropping the empty hypothesis would change the score: it is really counted.
    assert got["chrF"] != pytest.approx(CHRF().corpus_score(HYPS[::2], [REFS[::2]]).score)


def test_english_only_translation_file_scores_the_same(tmp_path):
    trans, refs = _files(tmp_path)
    english = tmp_path / "sw.en.tsv"
    english.write_text(
        "".join(f"{q}\t{h}\n" for q, h in zip(["q1", "q2", "q3", "q4"], HYPS, strict=True)),
        encoding="utf-8",
    )
    a, b = quality_row("sw", "nmt", english, refs), quality_row("sw", "nmt", trans, refs)
    assert a.keys() == b.keys()
    for key in a:  # the dev columns are NaN on both sides: no model folder given
        assert a[key] == b[key] or (a[key] != a[key] and b[key] != b[key]), key


def test_missing_reference_names_the_file(tmp_path):
    trans, refs = _files(tmp_path)
    refs.write_text("q1\tthe big cat\nq3\tschool\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        read_scoring_pairs(trans, refs)
    assert info.value.path == str(refs)
    assert "q2" in str(info.value) and "q4" in str(info.value)


def test_tables_written_with_columns(tmp_path, caplog):
    caplog.set_level("INFO")
    trans, refs = _files(tmp_path)
    csv, md = tmp_path / "tables" / "translation.csv", tmp_path / "tables" / "translation.md"
    frame = translation_quality_tables(
        [
            {
                "language": "sw",
                "system": "small-nmt",
                "translation_tsv": trans,
                "reference_tsv": refs,
            },
            {
                "language": "pseudo",
                "system": "small-nmt",
                "translation_tsv": trans,
                "reference_tsv": refs,
            },
        ],
        csv,
        md,
    )
    assert list(frame.columns) == TABLE_COLUMNS
    assert list(frame["language"]) == ["pseudo", "sw"]
    assert f"translation table: 2 systems written to {csv} and {md}" in caplog.text
    back = pd.read_csv(csv)
    assert list(back.columns) == TABLE_COLUMNS
    assert back["n_queries"].tolist() == [4, 4]
    assert back["BLEU"].iloc[0] == pytest.approx(BLEU().corpus_score(HYPS, [REFS]).score)
    text = md.read_text(encoding="utf-8").splitlines()
    assert text[0].startswith("| language | system | n_queries | BLEU | chrF | chrF++")
    assert len(text) == 4 and "\\|" in text[2]  # signatures' pipes are escaped
    with pytest.raises(ValueError, match="lacks columns"):
        quality_table([{"language": "sw"}])


def test_dev_columns_come_from_the_models_dev_scores(tmp_path):
    """README: a small NMT model's dev-bitext BLEU/chrF (its dev_scores.json, as
    train_small_nmt writes it) are the row's dev columns, in the CSV and the Markdown; a
    model folder without the file, or no folder, leaves them empty."""
    trans, refs = _files(tmp_path)
    model = tmp_path / "model"
    model.mkdir()
    record = {"language": "sw", "steps": 40, "dev_pairs": 25, "dev_BLEU": 12.345,
              "dev_chrF": 41.5, "dev_chrF++": 39.0, "dev_loss": 2.5}  # fmt: skip
    (model / "dev_scores.json").write_text(json.dumps(record), encoding="utf-8")
    row = quality_row("sw", "small-nmt", trans, refs, model)
    assert (row["dev_pairs"], row["dev_BLEU"], row["dev_chrF"]) == (25, 12.345, 41.5)
    assert row["BLEU"] == pytest.approx(BLEU().corpus_score(HYPS, [REFS]).score)
    empty = tmp_path / "untrained"
    empty.mkdir()
    for folder in (empty, None):
        other = quality_row("sw", "public", trans, refs, folder)
        assert other["dev_pairs"] == 0
        assert math.isnan(other["dev_BLEU"]) and math.isnan(other["dev_chrF"])

    csv, md = tmp_path / "translation.csv", tmp_path / "translation.md"
    entry = {"language": "sw", "translation_tsv": trans, "reference_tsv": refs}
    translation_quality_tables(
        [{**entry, "system": "small-nmt", "model": model}, {**entry, "system": "public"}], csv, md
    )
    back = pd.read_csv(csv).set_index("system")
    assert back.loc["small-nmt", "dev_BLEU"] == pytest.approx(12.345)
    assert back.loc["small-nmt", "dev_chrF"] == pytest.approx(41.5)
    assert pd.isna(back.loc["public", "dev_BLEU"])
    lines = md.read_text(encoding="utf-8").splitlines()
    cells = {line.split(" | ")[1]: line.split(" | ") for line in lines[2:]}
    dev = lines[0].strip("| ").split(" | ").index("dev_BLEU")
    assert cells["small-nmt"][dev : dev + 2] == ["12.35", "41.50"]
    assert cells["public"][dev : dev + 2] == ["–", "–"]
