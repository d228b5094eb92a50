"""train_small_nmt: a few steps on toy pairs give a model that loads, translates and resumes."""

from __future__ import annotations

import json
import logging
import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from optical_clir.errors import ConfigError, InputError  # noqa: E402
from optical_clir.translate.queries import translate_queries  # noqa: E402
from optical_clir.translate.train_small_nmt import train_small_nmt  # noqa: E402

SW = [
    "mimi",
    "wewe",
    "paka",
    "mbwa",
    "nyumba",
    "shule",
    "maji",
    "chakula",
    "kitabu",
    "mti",
    "kubwa",
    "ndogo",
    "leo",
    "jana",
]
EN = [
    "i",
    "you",
    "cat",
    "dog",
    "house",
    "school",
    "water",
    "food",
    "book",
    "tree",
    "big",
    "small",
    "today",
    "yesterday",
]

TINY = {
    "vocab_size": 80,
    "max_length": 16,
    "d_model": 32,
    "encoder_layers": 1,
    "decoder_layers": 1,
    "attention_heads": 2,
    "ffn_dim": 64,
    "batch_size": 8,
    "max_steps": 6,
    "warmup_steps": 2,
    "eval_every": 3,
    "checkpoint_every": 2,
    "num_beams": 2,
    "progress": False,
}


@pytest.fixture(scope="module")
def bitext(tmp_path_factory) -> Path:
    rng = random.Random(0)
    lines = []
    for _ in range(50):
        idx = [rng.randrange(len(SW)) for _ in range(rng.randint(2, 6))]
        lines.append(" ".join(SW[i] for i in idx) + "\t" + " ".join(EN[i] for i in idx))
    path = tmp_path_factory.mktemp("bitext") / "sw-en.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _params(folder: Path) -> dict[str, torch.Tensor]:
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(folder)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_trained_model_saves_loads_and_translates(bitext, tmp_path):
    out = tmp_path / "nmt"
    summary = train_small_nmt(bitext, out, TINY)
    assert summary["steps"] == 6 and summary["start_step"] == 0
    assert summary["dev_pairs"] >= 1 and summary["final_dev_loss"] > 0
    for name in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json"):
        assert (out / name).is_file(), name
    assert (out / "checkpoints" / "last.pt").is_file()
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [3, 6] and all("dev_loss" in r for r in log)

    tok = transformers.AutoTokenizer.from_pretrained(out)
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(out)
    gen = model.generation_config
    assert model.config.decoder_start_token_id == tok.pad_token_id == gen.decoder_start_token_id
    assert model.config.eos_token_id == tok.eos_token_id == gen.eos_token_id
    assert gen.pad_token_id == tok.pad_token_id
    assert tok("paka mbwa")["input_ids"][-1] == tok.eos_token_id

    queries = tmp_path / "sw.tsv"
    queries.write_text("a\tpaka mbwa\nb\t\nc\tmaji leo kubwa\n", encoding="utf-8")
    rows = translate_queries(
        out,
        queries,
        tmp_path / "en.tsv",
        "sw",
        batch_size=2,
        num_beams=2,
        max_length=10,
        device="cpu",
        progress=False,
    )
    assert [r[0] for r in rows] == ["a", "b", "c"]
    assert rows[1][2] == ""
    assert all(isinstance(r[2], str) for r in rows)


def test_resume_continues_at_saved_step_and_matches_uninterrupted_run(
    bitext, tmp_path, caplog, monkeypatch
):
    import optical_clir.translate.train_small_nmt as nmt

    ckpt = tmp_path / "ckpt"
    cfg = {**TINY, "checkpoint_dir": str(ckpt)}
    real_loss, calls = nmt._loss, {"train": 0}

    def crashing_loss(model, batch, smoothing):
        if model.training:
            calls["train"] += 1
            if calls["train"] == 5:  # step 5 of 6; the last checkpoint is from step 4
                raise RuntimeError("simulated crash")
        return real_loss(model, batch, smoothing)

    monkeypatch.setattr(nmt, "_loss", crashing_loss)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_small_nmt(bitext, tmp_path / "part", cfg)
    monkeypatch.setattr(nmt, "_loss", real_loss)
    assert not (tmp_path / "part" / "config.json").exists()  # no final model after a crash
    state = torch.load(ckpt / "last.pt", map_location="cpu", weights_only=False)
    assert state["step"] == 4
    assert {"model", "optimizer", "scheduler", "torch_rng", "python_rng"} <= set(state)

    with caplog.at_level(logging.INFO, logger="optical_clir.translate.train_small_nmt"):
        resumed = train_small_nmt(bitext, tmp_path / "part", cfg)
    assert resumed["start_step"] == 4 and resumed["steps"] == 6
    assert any("resuming" in r.getMessage() and "step 4" in r.getMessage() for r in caplog.records)

    straight = train_small_nmt(bitext, tmp_path / "straight", TINY)
    assert straight["start_step"] == 0
    a, b = _params(tmp_path / "part"), _params(tmp_path / "straight")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)

    # A finished checkpoint with more max_steps continues training from where it stopped.
    longer = train_small_nmt(bitext, tmp_path / "part", {**cfg, "max_steps": 8})
    assert (longer["start_step"], longer["steps"]) == (6, 8)
    # Changing the model under a checkpoint is refused rather than silently mixed.
    with pytest.raises(ConfigError, match=r"nmt\.d_model"):
        train_small_nmt(bitext, tmp_path / "part", {**cfg, "d_model": 64})


def test_bad_bitext_and_config(bitext, tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("paka\tcat\nmbwa dog\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        train_small_nmt(bad, tmp_path / "x", TINY)
    assert info.value.line == 2
    with pytest.raises(ConfigError, match=r"nmt\.hidden"):
        train_small_nmt(bitext, tmp_path / "x", {**TINY, "hidden": 3})
