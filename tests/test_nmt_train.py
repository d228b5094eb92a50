"""The small NMT model: trained through the shared Trainer, it loads, translates and resumes."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from optical_clir.errors import ConfigError, InputError  # noqa: E402
from optical_clir.train.loop import list_checkpoints  # noqa: E402
from optical_clir.translate import small_nmt  # noqa: E402
from optical_clir.translate.queries import translate_queries  # noqa: E402
from optical_clir.translate.small_nmt import train_small_nmt  # noqa: E402

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
    "log_every": 1,
    "num_beams": 2,
    "progress_bar": False,
    "device": "cpu",
    "seed": 3,
}


def _write_pairs(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        idx = [rng.randrange(len(SW)) for _ in range(rng.randint(2, 6))]
        lines.append(" ".join(SW[i] for i in idx) + "\t" + " ".join(EN[i] for i in idx))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def bitext(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("bitext")
    return _write_pairs(root / "train.tsv", 50, 0), _write_pairs(root / "dev.tsv", 8, 1)


def _params(folder: Path) -> dict[str, torch.Tensor]:
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(folder)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _metrics(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def test_trained_model_saves_loads_and_translates(bitext, tmp_path):
    out = tmp_path / "nmt"
    model_dir = train_small_nmt(*bitext, out, TINY, language="sw")
    assert model_dir == out / "model"
    for name in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                 "dev_scores.json", "README.md"):  # fmt: skip
        assert (model_dir / name).is_file(), name
    assert [s for s, _ in list_checkpoints(out)][-1] == 6
    records = _metrics(out)
    assert [r["step"] for r in records if "loss" in r] == list(range(1, 7))
    assert [r["step"] for r in records if r.get("event") == "eval"] == [3, 6]
    scores = json.loads((model_dir / "dev_scores.json").read_text())
    assert scores["dev_pairs"] == 8 and scores["steps"] == 6
    assert 0 <= scores["dev_chrF"] <= 100 and scores["dev_loss"] > 0
    assert f"{scores['dev_chrF']:.2f}" in (model_dir / "README.md").read_text()

    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(model_dir)
    gen = model.generation_config
    assert model.config.decoder_start_token_id == tok.pad_token_id == gen.decoder_start_token_id
    assert model.config.eos_token_id == tok.eos_token_id == gen.eos_token_id
    assert tok("paka mbwa")["input_ids"][-1] == tok.eos_token_id

    queries = tmp_path / "sw.tsv"
    queries.write_text("a\tpaka mbwa\nb\t\nc\tmaji leo kubwa\n", encoding="utf-8")
    rows = translate_queries(model_dir, queries, tmp_path / "en.tsv", "sw", batch_size=2,
                             num_beams=2, max_length=10, device="cpu", progress=False)  # fmt: skip
    assert [r[0] for r in rows] == ["a", "b", "c"] and rows[1][2] == ""


class _StopAt:
    """A Trainer callback that sends this process SIGTERM after a given step (preemption)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def __call__(self, step: int, record: dict) -> None:
        if step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_checkpoint_then_resume_equals_an_uninterrupted_run(bitext, tmp_path, monkeypatch):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("the Trainer handles SIGTERM only in the main thread")
    real_trainer = small_nmt.Trainer

    def preempted(*a, **kw):
        return real_trainer(*a, callbacks=[_StopAt(3)], **kw)

    out = tmp_path / "part"
    with monkeypatch.context() as mp:
        mp.setattr(small_nmt, "Trainer", preempted)
        with pytest.raises(SystemExit) as info:
            train_small_nmt(*bitext, out, TINY)
    assert info.value.code == 143
    assert not (out / "model").exists()
    assert list_checkpoints(out)[-1][0] == 3
    resumed = train_small_nmt(*bitext, out, TINY)
    records = _metrics(out)
    assert [r["step"] for r in records if r.get("event") == "resume"] == [3]
    assert [r["step"] for r in records if "loss" in r] == list(range(1, 7))
    assert "resumed from step 3" in (resumed / "README.md").read_text()

    straight = train_small_nmt(*bitext, tmp_path / "straight", TINY)
    a, b = _params(resumed), _params(straight)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_bad_bitext_small_bitext_and_unknown_keys(bitext, tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("paka\tcat\nmbwa dog\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        train_small_nmt(bad, None, tmp_path / "x", TINY)
    assert info.value.line == 2
    with pytest.raises(ConfigError) as info:
        train_small_nmt(bitext[0], None, tmp_path / "y", {**TINY, "vocab_size": 4000},
                        config_key="nmt.systems.small.train")  # fmt: skip
    assert info.value.key == "nmt.systems.small.train.vocab_size"
    assert "50 training pairs" in str(info.value)
    with pytest.raises(ConfigError, match=r"train\.hidden"):
        train_small_nmt(*bitext, tmp_path / "z", {**TINY, "hidden": 3})


def test_other_bitext_retrains_tokenizer_and_model_from_scratch(tmp_path):
    """The tokenizer and checkpoints of a run on other pairs are set aside, not reused."""
    train, dev = _write_pairs(tmp_path / "train.tsv", 50, 0), _write_pairs(tmp_path / "d.tsv", 8, 1)
    out = tmp_path / "nmt"
    first = _params(train_small_nmt(train, dev, out, TINY))
    old_vocab = (out / "tokenizer" / "tokenizer.json").read_text()
    _write_pairs(train, 50, 7)  # the same number of pairs, other sentences
    second = _params(train_small_nmt(train, dev, out, TINY))
    records = _metrics(out)
    assert [r["event"] for r in records if "event" in r] == ["start", "eval", "eval"]  # no resume
    assert [r["step"] for r in records if "loss" in r] == list(range(1, 7))
    (stale,) = out.glob("stale-*")
    assert (stale / "tokenizer" / "tokenizer.json").read_text() == old_vocab
    assert (stale / "checkpoints").is_dir()
    assert any(not torch.equal(first[k], second[k]) for k in first)
