"""A small transformer NMT model (low-resource language -> English) trained on the bitext.

For the demo and for languages that no public NMT model covers. Our choice, not the
paper's: a joint subword tokenizer (BPE or unigram) trained on both sides of the training
bitext and a Marian-architecture seq2seq model of a few layers, trained with teacher
forcing and label smoothing through the package's one training loop
(:class:`optical_clir.train.loop.Trainer`: checkpoints, resume, SIGTERM, autocast,
accumulation). What is specific to NMT stays here: the tokenizer, the model, the loss
module and the saved folder, which loads like any Hugging Face model, so
``translate_queries`` uses it unchanged. The dev bitext gives the dev loss during training
and BLEU/chrF (sacrebleu) at the end, in ``dev_scores.json`` and the model card: the
architecture, vocabulary and step budget are chosen on them.

Work folder layout (``output_dir``): ``tokenizer/`` (trained once, reused on resume),
``checkpoints/``, ``metrics.jsonl``, ``train_config.json``, and ``model/`` at the end.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from optical_clir.errors import ConfigError
from optical_clir.io import atomic_write_text, file_sha256
from optical_clir.train.loop import (
    Trainer,
    TrainingArguments,
    fingerprint_inputs,
    set_aside_stale_work,
)

logger = logging.getLogger(__name__)

SPECIAL_TOKENS = {"pad": "<pad>", "bos": "<s>", "eos": "</s>", "unk": "<unk>"}
MODEL_SUBDIR = "model"
TOKENIZER_SUBDIR = "tokenizer"

# The NMT-specific settings of ``nmt.systems.<name>.train`` (the rest are
# TrainingArguments keys); defaults are the schema's.
MODEL_DEFAULTS: dict[str, Any] = {
    "tokenizer": "bpe",
    "vocab_size": 2000,
    "min_frequency": 2,
    "max_length": 64,
    "d_model": 128,
    "encoder_layers": 2,
    "decoder_layers": 2,
    "attention_heads": 4,
    "ffn_dim": 512,
    "dropout": 0.1,
    "label_smoothing": 0.1,
    "num_beams": 4,
}

Pair = tuple[str, str]


def split_config(cfg: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(model settings with defaults, TrainingArguments settings)``; checks the model's."""
    model = {**MODEL_DEFAULTS, **{k: v for k, v in cfg.items() if k in MODEL_DEFAULTS}}
    loop = {k: v for k, v in cfg.items() if k not in MODEL_DEFAULTS}
    for key in ("vocab_size", "max_length", "d_model", "encoder_layers", "decoder_layers",
                "attention_heads", "ffn_dim", "num_beams", "min_frequency"):  # fmt: skip
        if not isinstance(model[key], int) or model[key] < 1:
            raise ConfigError(f"nmt.train.{key}", f"must be a positive integer, not {model[key]!r}")
    if model["d_model"] % model["attention_heads"]:
        raise ConfigError("nmt.train.attention_heads", "must divide d_model")
    if model["tokenizer"] not in ("bpe", "unigram"):
        raise ConfigError(
            "nmt.train.tokenizer", f"must be 'bpe' or 'unigram', not {model['tokenizer']!r}"
        )
    if not 0.0 <= float(model["label_smoothing"]) < 1.0:
        raise ConfigError("nmt.train.label_smoothing", "must be in [0, 1)")
    if not 0.0 <= float(model["dropout"]) < 1.0:
        raise ConfigError("nmt.train.dropout", "must be in [0, 1)")
    return model, loop


def train_tokenizer(texts: Sequence[str], cfg: Mapping[str, Any]) -> Any:
    """A joint subword tokenizer as a ``PreTrainedTokenizerFast``: every sequence ends with
    ``</s>``; ``<pad>`` (id 0) is also the decoder start token, as in Marian."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers import trainers as tk_trainers
    from transformers import PreTrainedTokenizerFast

    specials = [SPECIAL_TOKENS[k] for k in ("pad", "bos", "eos", "unk")]
    if cfg["tokenizer"] == "unigram":
        tok = Tokenizer(models.Unigram())
        trainer = tk_trainers.UnigramTrainer(
            vocab_size=cfg["vocab_size"], special_tokens=specials,
            unk_token=SPECIAL_TOKENS["unk"], show_progress=False,
        )  # fmt: skip
    else:
        tok = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk"]))
        trainer = tk_trainers.BpeTrainer(
            vocab_size=cfg["vocab_size"], min_frequency=int(cfg["min_frequency"]),
            special_tokens=specials, show_progress=False,
        )  # fmt: skip
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(list(texts), trainer=trainer)
    eos = SPECIAL_TOKENS["eos"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"$A {eos}", pair=f"$A $B {eos}", special_tokens=[(eos, tok.token_to_id(eos))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=SPECIAL_TOKENS["pad"],
        bos_token=SPECIAL_TOKENS["bos"],
        eos_token=eos,
        unk_token=SPECIAL_TOKENS["unk"],
        model_max_length=int(cfg["max_length"]),
    )


def build_model(tokenizer: Any, cfg: Mapping[str, Any]) -> Any:
    """A small Marian-architecture seq2seq model whose special ids match the tokenizer."""
    from transformers import MarianConfig, MarianMTModel

    ids = {
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "decoder_start_token_id": tokenizer.pad_token_id,
        "forced_eos_token_id": tokenizer.eos_token_id,
    }
    config = MarianConfig(
        vocab_size=len(tokenizer),
        d_model=cfg["d_model"],
        encoder_layers=cfg["encoder_layers"],
        decoder_layers=cfg["decoder_layers"],
        encoder_attention_heads=cfg["attention_heads"],
        decoder_attention_heads=cfg["attention_heads"],
        encoder_ffn_dim=cfg["ffn_dim"],
        decoder_ffn_dim=cfg["ffn_dim"],
        # +2: the decoder start token plus one spare, so max_length new tokens fit.
        max_position_embeddings=cfg["max_length"] + 2,
        dropout=float(cfg["dropout"]),
        scale_embedding=True,
        **ids,
    )
    model = MarianMTModel(config)
    gen = model.generation_config
    for key, value in ids.items():
        setattr(gen, key, value)
    gen.num_beams = int(cfg["num_beams"])
    gen.max_new_tokens = int(cfg["max_length"])
    return model


def encode_pairs(
    tokenizer: Any, pairs: Sequence[Pair], max_length: int
) -> list[tuple[list[int], list[int]]]:
    """Token ids of both sides, truncated to ``max_length`` (keeping the final ``</s>``)."""
    if not pairs:
        return []
    src = tokenizer([s for s, _ in pairs], truncation=True, max_length=max_length)["input_ids"]
    tgt = tokenizer([t for _, t in pairs], truncation=True, max_length=max_length)["input_ids"]
    return list(zip(src, tgt, strict=True))


def collate_seq2seq(
    examples: Sequence[tuple[list[int], list[int]]], pad_id: int, start_id: int
) -> dict[str, torch.Tensor]:
    """Pad a batch; decoder inputs are the labels shifted right behind the start token."""
    n = len(examples)
    s_len = max(len(s) for s, _ in examples)
    t_len = max(len(t) for _, t in examples)
    input_ids = torch.full((n, s_len), pad_id, dtype=torch.long)
    attention = torch.zeros((n, s_len), dtype=torch.long)
    labels = torch.full((n, t_len), -100, dtype=torch.long)
    dec_in = torch.full((n, t_len), pad_id, dtype=torch.long)
    for i, (s, t) in enumerate(examples):
        input_ids[i, : len(s)] = torch.tensor(s)
        attention[i, : len(s)] = 1
        labels[i, : len(t)] = torch.tensor(t)
        dec_in[i, 0] = start_id
        dec_in[i, 1 : len(t)] = torch.tensor(t[:-1])
    return {"input_ids": input_ids, "attention_mask": attention,
            "decoder_input_ids": dec_in, "labels": labels}  # fmt: skip


class Seq2SeqLoss(nn.Module):
    """``forward(batch)`` -> token-level cross-entropy (mean over target tokens) of a
    seq2seq model with teacher forcing; label smoothing in training, none in eval mode."""

    def __init__(self, model: nn.Module, label_smoothing: float = 0.1) -> None:
        super().__init__()
        self.model = model
        self.label_smoothing = float(label_smoothing)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        logits = self.model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            decoder_input_ids=batch["decoder_input_ids"],
        ).logits
        return F.cross_entropy(
            logits.reshape(-1, logits.size(-1)).float(),
            batch["labels"].reshape(-1),
            ignore_index=-100,
            label_smoothing=self.label_smoothing if self.training else 0.0,
        )


def read_pairs(path: str | Path) -> list[Pair]:
    """The bitext reader of distillation (``L<TAB>English`` lines, errors with the line)."""
    from optical_clir.train.distill import read_bitext

    return read_bitext(path)


def translate_pairs(
    model: Any, tokenizer: Any, sources: Sequence[str], num_beams: int, max_length: int
) -> list[str]:
    """Translations of ``sources`` with the model's generation settings (CPU or its device)."""
    from optical_clir.translate.queries import translate_texts

    device = next(model.parameters()).device
    return translate_texts(list(sources), tokenizer, model, device, batch_size=32,
                           num_beams=num_beams, max_length=max_length, progress=False)  # fmt: skip


def dev_scores(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Corpus BLEU, chrF and chrF++ (sacrebleu) of dev translations."""
    from optical_clir.translate.quality import translation_quality

    scores = translation_quality(list(hypotheses), list(references))
    return {f"dev_{k}": float(scores[k]) for k in ("BLEU", "chrF", "chrF++")}


def train_small_nmt(
    train_bitext: str | Path,
    dev_bitext: str | Path | None,
    output_dir: str | Path,
    cfg: Mapping[str, Any],
    language: str = "",
    config_key: str = "nmt.train",
) -> Path:
    """Train tokenizer and model on ``L<TAB>English`` pairs; return ``output_dir/model``.

    ``cfg``: :data:`MODEL_DEFAULTS` keys plus :class:`TrainingArguments` keys. Resumes from
    the checkpoints in ``output_dir`` of the same settings and bitext; the tokenizer trained
    on the first run is reused with them (and set aside with them when either changed).
    """
    output_dir = Path(output_dir)
    model_cfg, loop_cfg = split_config(cfg)
    loop_cfg["output_dir"] = str(output_dir)
    args = TrainingArguments.from_dict(loop_cfg)
    train = read_pairs(train_bitext)
    dev = read_pairs(dev_bitext) if dev_bitext else []
    check_bitext_size(len(train), model_cfg["vocab_size"], f"{config_key}.vocab_size")
    from transformers import AutoTokenizer

    is_main = int(os.environ.get("RANK", "0")) == 0
    fingerprint = {
        "task": "nmt",
        "model": model_cfg,
        "train_bitext_sha256": file_sha256(train_bitext),
    }
    if is_main:  # the tokenizer is trained on the bitext: stale with the checkpoints
        inputs = fingerprint_inputs(args, fingerprint, len(train))
        set_aside_stale_work(output_dir, inputs, extra=(TOKENIZER_SUBDIR,))
    tok_dir = output_dir / TOKENIZER_SUBDIR
    if (tok_dir / "tokenizer.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    else:
        tokenizer = train_tokenizer([text for pair in train for text in pair], model_cfg)
        tokenizer.save_pretrained(tok_dir)
    if len(tokenizer) < model_cfg["vocab_size"] // 2:
        logger.warning(
            "%s: the tokenizer has %d tokens, fewer than half of vocab_size %d: the bitext "
            "is small for this vocabulary", train_bitext, len(tokenizer), model_cfg["vocab_size"],
        )  # fmt: skip
    torch.manual_seed(args.seed)  # the model's initialisation
    model = build_model(tokenizer, model_cfg)
    module = Seq2SeqLoss(model, model_cfg["label_smoothing"])
    pad_id, start_id = tokenizer.pad_token_id, model.config.decoder_start_token_id
    max_length = int(model_cfg["max_length"])
    train_data = encode_pairs(tokenizer, train, max_length)
    dev_data = encode_pairs(tokenizer, dev, max_length)

    def collate(examples: list[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
        return collate_seq2seq(examples, pad_id, start_id)

    @torch.no_grad()
    def eval_fn(m: nn.Module) -> dict[str, float]:
        device = next(m.parameters()).device
        total = tokens = 0.0
        for i in range(0, len(dev_data), args.batch_size):
            batch = {k: v.to(device) for k, v in collate(dev_data[i : i + args.batch_size]).items()}
            n = float((batch["labels"] != -100).sum())
            total += float(m(batch)) * n
            tokens += n
        return {"dev_loss": total / max(tokens, 1.0)}

    if is_main:
        effective = {"language": language, "model": model_cfg, "train": args.to_dict(),
                     "n_train_pairs": len(train), "n_dev_pairs": len(dev),
                     "bitext": {"train": str(train_bitext), "dev": str(dev_bitext)}}  # fmt: skip
        output_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            output_dir / "train_config.json", json.dumps(effective, indent=2, default=str) + "\n"
        )
    lengths = [len(src) + len(tgt) for src, tgt in train_data] if args.group_by_length else None
    trainer = Trainer(
        module, args, train_data, collate, eval_fn=eval_fn if dev_data else None,
        lengths=lengths, fingerprint=fingerprint,
    )  # fmt: skip
    result = trainer.train()

    model_dir = output_dir / MODEL_SUBDIR
    if is_main:
        model.eval()
        scores: dict[str, Any] = {}
        if dev:
            hypotheses = translate_pairs(model, tokenizer, [s for s, _ in dev],
                                         model_cfg["num_beams"], max_length)  # fmt: skip
            scores = {**dev_scores(hypotheses, [e for _, e in dev]), **eval_fn(module.eval())}
        model.to("cpu").save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
        record = {"language": language, "steps": result.step, "dev_pairs": len(dev), **scores}
        atomic_write_text(model_dir / "dev_scores.json", json.dumps(record, indent=2) + "\n")
        resumed = (
            f" (resumed from step {result.resumed_from})" if result.resumed_from is not None else ""
        )
        shown = ", ".join(f"{k} {v:.2f}" for k, v in scores.items() if isinstance(v, float))
        card = nmt_front_matter(language) + "\n".join([
            f"# Small NMT model, '{language}' -> English",
            "",
            f"Marian-architecture transformer trained from scratch on {len(train)} pairs of "
            f"`{train_bitext}` (tokenizer: {model_cfg['tokenizer']}, {len(tokenizer)} tokens); "
            "the bitext's terms of use apply to the weights. Loads with "
            "`transformers.AutoModelForSeq2SeqLM` and `AutoTokenizer`.",
            "",
            f"- optimizer steps: {result.step}{resumed}; final training loss: {result.last_loss}",
            f"- dev bitext ({len(dev)} pairs): {shown or 'none'}",
            f"- architecture: d_model {model_cfg['d_model']}, {model_cfg['encoder_layers']}+"
            f"{model_cfg['decoder_layers']} layers, {model_cfg['attention_heads']} heads, "
            f"ffn {model_cfg['ffn_dim']}, dropout {model_cfg['dropout']}",
            f"- seed: {args.seed}",
            "",
        ])  # fmt: skip
        atomic_write_text(model_dir / "README.md", card)
        logger.info("NMT model saved to %s (dev %s)", model_dir, shown)
    return model_dir


def nmt_front_matter(language: str) -> str:
    """Hub front matter of a small NMT model: trained from scratch, so no base model, and no
    licence of its own beyond the bitext's (``other``)."""
    from optical_clir.models.card import UNKNOWN_LICENSE, front_matter, language_codes

    return front_matter({
        "language": language_codes(language, "en"),
        "license": UNKNOWN_LICENSE,
        "tags": ["translation", "marian", "optical-clir"],
        "library_name": "transformers",
        "pipeline_tag": "translation",
    })  # fmt: skip


def check_bitext_size(n_pairs: int, vocab_size: int, key: str) -> None:
    """A bitext far too small for the vocabulary is a config error (the BPE merges and
    embeddings would be learnt from a handful of occurrences)."""
    if n_pairs * 4 < vocab_size:
        raise ConfigError(key, f"vocab_size {vocab_size} is too large for {n_pairs} training pairs "
                          f"(at most {n_pairs * 4}); lower it")  # fmt: skip


__all__ = [
    "MODEL_DEFAULTS",
    "Seq2SeqLoss",
    "build_model",
    "check_bitext_size",
    "collate_seq2seq",
    "encode_pairs",
    "split_config",
    "train_small_nmt",
    "train_tokenizer",
]
