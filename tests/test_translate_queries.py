"""translate_queries on a tiny random Marian model and a word-level tokenizer built here."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from optical_clir.errors import ConfigError, InputError  # noqa: E402
from optical_clir.translate.queries import (  # noqa: E402
    resolve_lang_codes,
    translate_queries,
    translate_queries_from_config,
    write_english_queries,
)

WORDS = [
    "habari",
    "ya",
    "asubuhi",
    "paka",
    "mbwa",
    "nyumba",
    "shule",
    "maji",
    "the",
    "cat",
    "dog",
    "house",
    "school",
    "water",
    "good",
]


def _build_tiny_model(folder: Path) -> Path:
    """Word-level tokenizer + 1-layer Marian model with random weights, saved to `folder`."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "swh_Latn": 4, "eng_Latn": 5}
    for w in WORDS:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", 2)]
    )
    hf_tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=32,
    )
    config = transformers.MarianConfig(
        vocab_size=len(hf_tok),
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_position_embeddings=34,
        pad_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=0,
        forced_eos_token_id=2,
    )
    torch.manual_seed(0)
    model = transformers.MarianMTModel(config)
    model.save_pretrained(folder)
    hf_tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return _build_tiny_model(tmp_path_factory.mktemp("tiny_marian"))


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _read_rows(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]


QUERIES = (
    "q3\thabari ya asubuhi paka mbwa nyumba\n"
    "q1\tpaka\n"
    "q2\t   \n"
    "q10\tmaji shule\n"
    "q4\tnyumba ya mbwa\n"
)


def test_every_qid_once_in_order_and_empty_query_warns(tiny_model, tmp_path, caplog):
    queries = _write(tmp_path / "sw.tsv", QUERIES)
    out, english = tmp_path / "out" / "sw.tsv", tmp_path / "out" / "sw.en.tsv"
    with caplog.at_level(logging.WARNING, logger="optical_clir.translate.queries"):
        rows = translate_queries(
            tiny_model,
            queries,
            out,
            "sw",
            "en",
            batch_size=2,
            num_beams=2,
            max_length=8,
            device="cpu",
            english_tsv=english,
            progress=False,
        )
    expected_ids = ["q3", "q1", "q2", "q10", "q4"]
    written = _read_rows(out)
    assert [r[0] for r in written] == expected_ids
    assert all(len(r) == 3 for r in written)
    assert [r[1] for r in written][:2] == ["habari ya asubuhi paka mbwa nyumba", "paka"]
    assert written[2][1:] == ["", ""]  # the empty query: no source text, no translation
    assert all(r[2] for i, r in enumerate(written) if i != 2)  # the random model says something
    assert [tuple(r) for r in written] == rows
    assert _read_rows(english) == [[r[0], r[2]] for r in written]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("'q2'" in m and str(queries) in m and "empty" in m for m in warnings)
    assert not list(out.parent.glob(".*.tmp"))  # atomic writes leave no temporaries


def test_length_sorted_batches_come_back_in_input_order(tiny_model, tmp_path):
    queries = _write(tmp_path / "sw.tsv", QUERIES)
    one = translate_queries(
        tiny_model,
        queries,
        tmp_path / "a.tsv",
        "sw",
        batch_size=1,
        num_beams=1,
        max_length=8,
        device="cpu",
        progress=False,
    )
    many = translate_queries(
        tiny_model,
        queries,
        tmp_path / "b.tsv",
        "sw",
        batch_size=3,
        num_beams=1,
        max_length=8,
        device="cpu",
        progress=False,
    )
    assert one == many


def test_english_only_file_from_translation_file(tiny_model, tmp_path):
    queries = _write(tmp_path / "sw.tsv", QUERIES)
    out = tmp_path / "sw.trans.tsv"
    rows = translate_queries(
        tiny_model,
        queries,
        out,
        "sw",
        batch_size=4,
        num_beams=1,
        max_length=6,
        device="cpu",
        progress=False,
    )
    n = write_english_queries(out, tmp_path / "en.tsv")
    assert n == 5
    assert _read_rows(tmp_path / "en.tsv") == [[q, t] for q, _, t in rows]


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("q1\tpaka\nq2 no tab here\n", 2, "no tab"),
        ("q1\tpaka\n\tmbwa\n", 2, "empty id"),
        ("q1\tpaka\nq2\tmbwa\nq1\tmaji\n", 3, "duplicate id 'q1' (first seen on line 1)"),
        ("q1\tpaka\textra\n", 1, "found 3"),
        ("q1\tpaka\n\nq2\tmbwa\n", 2, "no tab"),
    ],
)
def test_malformed_queries_raise_with_line(tiny_model, tmp_path, text, line, needle):
    queries = _write(tmp_path / "bad.tsv", text)
    out = tmp_path / "out.tsv"
    with pytest.raises(InputError) as info:
        translate_queries(tiny_model, queries, out, "sw", device="cpu", progress=False)
    assert info.value.line == line
    assert info.value.path == str(queries)
    assert needle in str(info.value)
    assert not out.exists()


def test_lang_codes_resolve_to_forced_bos(tiny_model):
    tok = transformers.AutoTokenizer.from_pretrained(tiny_model)
    assert resolve_lang_codes(tok, "sw", "en", None) == (None, None)
    src, bos = resolve_lang_codes(tok, "sw", "en", {"sw": "swh_Latn", "en": "eng_Latn"})
    assert (src, bos) == ("swh_Latn", 5)
    with pytest.raises(ConfigError, match=r"lang_codes\.en"):
        resolve_lang_codes(tok, "sw", "en", {"sw": "swh_Latn"})
    with pytest.raises(ConfigError, match="not a token"):
        resolve_lang_codes(tok, "sw", "en", {"sw": "swh_Latn", "en": "zzz_Latn"})


def test_forced_bos_token_starts_every_translation(tiny_model, tmp_path):
    queries = _write(tmp_path / "sw.tsv", "q1\tpaka mbwa\nq2\tmaji\n")
    tok = transformers.AutoTokenizer.from_pretrained(tiny_model)
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(tiny_model)
    enc = tok(["paka mbwa"], return_tensors="pt")
    generated = model.generate(**enc, forced_bos_token_id=5, max_new_tokens=4, num_beams=1)
    assert generated[0, 1].item() == 5  # position 0 is the decoder start token
    rows = translate_queries_from_config(
        {
            "model": {"sw": str(tiny_model)},
            "lang_codes": {"sw": "swh_Latn", "en": "eng_Latn"},
            "num_beams": 1,
            "max_length": 4,
            "device": "cpu",
            "progress": False,
        },
        queries,
        tmp_path / "out.tsv",
        "sw",
    )
    assert [r[0] for r in rows] == ["q1", "q2"]
    with pytest.raises(ConfigError, match=r"translate\.beams"):
        translate_queries_from_config({"model": "x", "beams": 2}, queries, tmp_path / "o", "sw")
