"""Train a small transformer NMT model (low-resource language -> English) from a bitext.

For the demo and for languages that no public NMT model covers. Our choice, not the
paper's: a joint subword tokenizer (unigram or BPE) trained on both sides of the bitext and a
Marian-architecture seq2seq model of a few layers, trained with teacher forcing. The output
folder loads like any Hugging Face model, so `translate_queries` uses it unchanged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from optical_clir.errors import ConfigError, InputError
from optical_clir.translate._io import atomic_write, atomic_write_text

logger = logging.getLogger(__name__)

SPECIAL_TOKENS = {"pad": "<pad>", "bos": "<s>", "eos": "</s>", "unk": "<unk>"}

# Defaults sized for the demo (~1,500 pairs, 2 CPU cores, about 1-2 minutes).
NMT_DEFAULTS: dict[str, Any] = {
    "seed": 13,
    # tokenizer
    # "bpe" or "unigram", joint over both sides. Our choice: BPE, because the tokenizers
    # UnigramTrainer falls back to near-character pieces on small corpora.
    "tokenizer": "bpe",
    "vocab_size": 2000,
    "min_frequency": 2,  # BPE only
    "max_length": 64,  # subword tokens per side (also the position table size)
    # model (Marian architecture, sinusoidal positions, shared embeddings)
    "d_model": 128,
    "encoder_layers": 2,
    "decoder_layers": 2,
    "attention_heads": 4,
    "ffn_dim": 512,
    "dropout": 0.1,
    # optimisation
    "batch_size": 32,
    "max_steps": 400,
    "learning_rate": 1e-3,
    "warmup_steps": 40,
    "weight_decay": 0.01,
    "grad_clip": 1.0,
    "label_smoothing": 0.1,
    # evaluation and checkpoints
    "dev_fraction": 0.05,  # held-out pairs for the dev loss (at least 1 when > 0)
    "eval_every": 100,
    "checkpoint_every": 100,
    "checkpoint_dir": None,  # default: <out_dir>/checkpoints
    # saved generation defaults
    "num_beams": 4,
    # "cpu" (default: small models, reproducible), "cuda" or "auto" (GPU when visible).
    "device": "cpu",
    # torch CPU threads while training (restored afterwards); None leaves torch's setting.
    # Our choice: 1, because matrices this small gain little from threads, one thread is
    # far faster on a shared (oversubscribed) machine, and a fixed count keeps CPU results
    # reproducible.
    "num_threads": 1,
    "progress": True,
}

# Keys that may change between a checkpoint and a resumed run without breaking it.
_RESUMABLE_CHANGES = {
    "max_steps",
    "eval_every",
    "checkpoint_every",
    "checkpoint_dir",
    "num_beams",
    "num_threads",
    "progress",
    "device",
}


def merge_config(cfg: Mapping[str, Any] | None) -> dict[str, Any]:
    """Fill defaults and validate; an unknown key (a typo) raises `ConfigError`."""
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - set(NMT_DEFAULTS))
    if unknown:
        raise ConfigError(f"nmt.{unknown[0]}", f"unknown key; known keys: {sorted(NMT_DEFAULTS)}")
    merged = {**NMT_DEFAULTS, **cfg}
    positive = [
        "vocab_size",
        "max_length",
        "d_model",
        "encoder_layers",
        "decoder_layers",
        "attention_heads",
        "ffn_dim",
        "batch_size",
        "max_steps",
        "eval_every",
        "checkpoint_every",
        "num_beams",
    ]
    for key in positive:
        if not isinstance(merged[key], int) or merged[key] < 1:
            raise ConfigError(f"nmt.{key}", f"must be a positive integer, not {merged[key]!r}")
    if merged["d_model"] % merged["attention_heads"]:
        raise ConfigError("nmt.attention_heads", "must divide d_model")
    if merged["device"] not in ("cpu", "cuda", "auto") and not str(merged["device"]).startswith(
        "cuda:"
    ):
        raise ConfigError("nmt.device", f"must be cpu, cuda[:n] or auto, not {merged['device']!r}")
    if merged["tokenizer"] not in ("unigram", "bpe"):
        raise ConfigError(
            "nmt.tokenizer", f"must be 'unigram' or 'bpe', not {merged['tokenizer']!r}"
        )
    if not 0.0 <= float(merged["dev_fraction"]) < 0.5:
        raise ConfigError("nmt.dev_fraction", "must be in [0, 0.5)")
    if not 0.0 <= float(merged["label_smoothing"]) < 1.0:
        raise ConfigError("nmt.label_smoothing", "must be in [0, 1)")
    if float(merged["learning_rate"]) <= 0:
        raise ConfigError("nmt.learning_rate", "must be positive")
    if int(merged["warmup_steps"]) < 0:
        raise ConfigError("nmt.warmup_steps", "must be >= 0")
    return merged


def read_bitext(path: str | Path) -> list[tuple[str, str]]:
    """Read `source<TAB>english` pairs; malformed lines raise, pairs with an empty side are
    skipped with one warning (they teach nothing)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file does not exist")
    pairs: list[tuple[str, str]] = []
    skipped: list[int] = []
    with path.open(encoding="utf-8-sig") as handle:
        for n, raw in enumerate(handle, start=1):
            fields = raw.rstrip("\n").rstrip("\r").split("\t")
            if len(fields) != 2:
                raise InputError(
                    path,
                    f"expected 2 tab-separated fields (source, english), found {len(fields)}",
                    n,
                )
            src, tgt = fields[0].strip(), fields[1].strip()
            if not src or not tgt:
                skipped.append(n)
                continue
            pairs.append((src, tgt))
    if skipped:
        logger.warning(
            "%s: skipped %d pairs with an empty side (first on line %d)",
            path,
            len(skipped),
            skipped[0],
        )
    if len(pairs) < 2:
        raise InputError(path, f"need at least 2 usable pairs to train, found {len(pairs)}")
    return pairs


def train_tokenizer(texts: Sequence[str], cfg: Mapping[str, Any]) -> Any:
    """Train a joint subword tokenizer and wrap it as a `PreTrainedTokenizerFast`.

    Every encoded sequence ends with `</s>`; `<pad>` (id 0) is also the decoder start token,
    as in Marian.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers import trainers as tk_trainers
    from transformers import PreTrainedTokenizerFast

    specials = [SPECIAL_TOKENS[k] for k in ("pad", "bos", "eos", "unk")]
    if cfg["tokenizer"] == "unigram":
        tok = Tokenizer(models.Unigram())
        trainer = tk_trainers.UnigramTrainer(
            vocab_size=cfg["vocab_size"],
            special_tokens=specials,
            unk_token=SPECIAL_TOKENS["unk"],
            show_progress=False,
        )
    else:
        tok = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk"]))
        trainer = tk_trainers.BpeTrainer(
            vocab_size=cfg["vocab_size"],
            min_frequency=int(cfg["min_frequency"]),
            special_tokens=specials,
            show_progress=False,
        )
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(list(texts), trainer=trainer)
    eos = SPECIAL_TOKENS["eos"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"$A {eos}", pair=f"$A $B {eos}", special_tokens=[(eos, tok.token_to_id(eos))]
    )
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=SPECIAL_TOKENS["pad"],
        bos_token=SPECIAL_TOKENS["bos"],
        eos_token=SPECIAL_TOKENS["eos"],
        unk_token=SPECIAL_TOKENS["unk"],
        model_max_length=int(cfg["max_length"]),
    )
    return hf_tok


def build_model(tokenizer: Any, cfg: Mapping[str, Any]) -> Any:
    """A small Marian-architecture seq2seq model whose special ids match the tokenizer."""
    from transformers import MarianConfig, MarianMTModel

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
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
        forced_eos_token_id=tokenizer.eos_token_id,
    )
    model = MarianMTModel(config)
    gen = model.generation_config
    gen.decoder_start_token_id = tokenizer.pad_token_id
    gen.pad_token_id = tokenizer.pad_token_id
    gen.eos_token_id = tokenizer.eos_token_id
    gen.bos_token_id = tokenizer.bos_token_id
    gen.forced_eos_token_id = tokenizer.eos_token_id
    gen.num_beams = int(cfg["num_beams"])
    gen.max_new_tokens = int(cfg["max_length"])
    return model


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _split_dev(
    pairs: list[tuple[str, str]], fraction: float, seed: int
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Seeded random dev split (at least one pair when `fraction` > 0)."""
    if fraction <= 0:
        return pairs, []
    idx = list(range(len(pairs)))
    random.Random(seed).shuffle(idx)
    n_dev = min(max(1, round(fraction * len(pairs))), len(pairs) - 1)
    dev = sorted(idx[:n_dev])
    train = sorted(idx[n_dev:])
    return [pairs[i] for i in train], [pairs[i] for i in dev]


def _encode(tokenizer: Any, pairs: Sequence[tuple[str, str]], max_length: int):
    """Token ids of both sides, truncated to `max_length` (keeping the final `</s>`)."""
    src = tokenizer([s for s, _ in pairs], truncation=True, max_length=max_length)["input_ids"]
    tgt = tokenizer([t for _, t in pairs], truncation=True, max_length=max_length)["input_ids"]
    return list(zip(src, tgt, strict=True))


def _collate(examples, pad_id: int, start_id: int) -> dict[str, torch.Tensor]:
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
    return {
        "input_ids": input_ids,
        "attention_mask": attention,
        "decoder_input_ids": dec_in,
        "labels": labels,
    }


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


def _loss(model: Any, batch: dict[str, torch.Tensor], smoothing: float) -> tuple[torch.Tensor, int]:
    """Token-level cross-entropy (mean over non-pad target tokens) and the token count."""
    logits = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        decoder_input_ids=batch["decoder_input_ids"],
    ).logits
    labels = batch["labels"]
    loss = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)),
        labels.reshape(-1),
        ignore_index=-100,
        label_smoothing=smoothing,
    )
    return loss, int((labels != -100).sum())


def _batch_order(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The batches of one epoch: a permutation seeded by (seed, epoch), so a resumed run sees
    exactly the batches an uninterrupted run would."""
    gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
    perm = torch.randperm(n, generator=gen).tolist()
    return [perm[i : i + batch_size] for i in range(0, n, batch_size)]


@torch.no_grad()
def _dev_loss(
    model: Any, dev, pad_id: int, start_id: int, batch_size: int, device: torch.device
) -> float:
    """Mean token cross-entropy (no label smoothing) on the dev pairs."""
    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    for i in range(0, len(dev), batch_size):
        batch = _to(_collate(dev[i : i + batch_size], pad_id, start_id), device)
        loss, n_tok = _loss(model, batch, 0.0)
        total += float(loss) * n_tok
        tokens += n_tok
    model.train(was_training)
    return total / max(tokens, 1)


def _lr_lambda(warmup: int, total: int):
    """Linear warmup to the peak rate, then linear decay to zero at `total` steps."""

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def _save_pretrained_atomic(model: Any, tokenizer: Any, out_dir: Path) -> None:
    """save_pretrained into a temporary folder, then move each file into `out_dir`."""
    tmp = out_dir / ".final.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    # config.json last: a folder with a config is taken to be a complete model.
    names = sorted(p.name for p in tmp.iterdir())
    names.sort(key=lambda name: name == "config.json")
    for name in names:
        (tmp / name).replace(out_dir / name)
    tmp.rmdir()


def train_small_nmt(
    bitext_tsv: str | Path, out_dir: str | Path, cfg: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Train tokenizer + small seq2seq model on `source<TAB>english` pairs; save to `out_dir`.

    Resumes from `<checkpoint_dir>/last.pt` when present (same data and model config
    required). Returns a summary (steps, losses, timings) that is also written to
    `<out_dir>/training_summary.json`; per-evaluation losses go to `train_log.jsonl`.
    """
    cfg = merge_config(cfg)
    bitext_tsv, out_dir = Path(bitext_tsv), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir = Path(cfg["checkpoint_dir"]) if cfg["checkpoint_dir"] else out_dir / "checkpoints"
    ckpt_path = ckpt_dir / "last.pt"
    tok_dir = ckpt_dir / "tokenizer"
    seed = int(cfg["seed"])

    pairs = read_bitext(bitext_tsv)
    data_hash = _sha256(bitext_tsv)
    train_pairs, dev_pairs = _split_dev(pairs, float(cfg["dev_fraction"]), seed)

    from transformers import AutoTokenizer

    resume: dict[str, Any] | None = None
    if ckpt_path.is_file():
        resume = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if resume["data_sha256"] != data_hash:
            raise InputError(
                bitext_tsv,
                f"differs from the bitext the checkpoint {ckpt_path} was trained on; "
                "delete the checkpoint folder to start afresh",
            )
        for key, old in resume["cfg"].items():
            if key not in _RESUMABLE_CHANGES and cfg.get(key) != old:
                raise ConfigError(
                    f"nmt.{key}",
                    f"is {cfg.get(key)!r} but the checkpoint {ckpt_path} used {old!r}; "
                    "restore it or delete the checkpoint folder",
                )
        tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    else:
        tokenizer = train_tokenizer([t for pair in train_pairs for t in pair], cfg)
        shutil.rmtree(tok_dir, ignore_errors=True)
        tok_dir.mkdir(parents=True, exist_ok=True)
        tokenizer.save_pretrained(tok_dir)

    from optical_clir.translate.queries import resolve_device

    device = resolve_device(cfg["device"])
    torch.manual_seed(seed)
    random.seed(seed)
    model = build_model(tokenizer, cfg)
    model.to(device)
    pad_id, start_id = tokenizer.pad_token_id, model.config.decoder_start_token_id
    max_steps = int(cfg["max_steps"])
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or "norm" in n.lower()]
    decay = [p for n, p in model.named_parameters() if not (p.ndim < 2 or "norm" in n.lower())]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": float(cfg["weight_decay"])},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=float(cfg["learning_rate"]),
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_lambda(int(cfg["warmup_steps"]), max_steps)
    )
    step = 0
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        # The schedule keeps this run's lambda (built from the current max_steps, which may
        # have grown since); load_state_dict restores only the step counter and rates.
        scheduler.load_state_dict(resume["scheduler"])
        step = int(resume["step"])
        torch.set_rng_state(resume["torch_rng"])
        if device.type == "cuda" and resume.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(resume["cuda_rng"], device)
        random.setstate(resume["python_rng"])
        logger.info("resuming from %s at step %d", ckpt_path, step)

    train_data = _encode(tokenizer, train_pairs, int(cfg["max_length"]))
    dev_data = _encode(tokenizer, dev_pairs, int(cfg["max_length"]))
    batch_size = int(cfg["batch_size"])
    batches_per_epoch = math.ceil(len(train_data) / batch_size)
    smoothing = float(cfg["label_smoothing"])
    log_path = out_dir / "train_log.jsonl"
    history: list[dict[str, Any]] = list(resume.get("history", [])) if resume else []
    start_step = step
    logger.info(
        "training %d params on %d pairs (%d dev), %d steps from step %d",
        sum(p.numel() for p in model.parameters()),
        len(train_data),
        len(dev_data),
        max_steps,
        step,
    )

    def save_checkpoint() -> None:
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "step": step,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "python_rng": random.getstate(),
            "cfg": dict(cfg),
            "data_sha256": data_hash,
            "history": history,
        }
        _save_checkpoint(ckpt_path, state)

    old_threads = torch.get_num_threads()
    if cfg["num_threads"]:
        torch.set_num_threads(int(cfg["num_threads"]))
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    model.train()
    t0 = time.perf_counter()
    tokens_seen = 0
    last_loss = float("nan")
    bar = tqdm(
        total=max_steps, initial=step, desc="train nmt", unit="step", disable=not cfg["progress"]
    )
    try:
        while step < max_steps:
            epoch, within = divmod(step, batches_per_epoch)
            batch_idx = _batch_order(len(train_data), batch_size, seed, epoch)[within]
            batch = _to(_collate([train_data[i] for i in batch_idx], pad_id, start_id), device)
            loss, n_tok = _loss(model, batch, smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg["grad_clip"]:
                torch.nn.utils.clip_grad_norm_(model.parameters(), float(cfg["grad_clip"]))
            optimizer.step()
            scheduler.step()
            step += 1
            tokens_seen += n_tok
            last_loss = loss.item()
            elapsed = time.perf_counter() - t0
            bar.update(1)
            bar.set_postfix(loss=f"{last_loss:.3f}", tok_s=f"{tokens_seen / elapsed:.0f}")
            if step % int(cfg["eval_every"]) == 0 or step == max_steps:
                record = {"step": step, "train_loss": last_loss, "lr": scheduler.get_last_lr()[0]}
                if dev_data:
                    record["dev_loss"] = _dev_loss(
                        model, dev_data, pad_id, start_id, batch_size, device
                    )
                history.append(record)
                logger.info("step %d: %s", step, record)
            if step % int(cfg["checkpoint_every"]) == 0 or step == max_steps:
                save_checkpoint()
    finally:
        bar.close()
        torch.use_deterministic_algorithms(was_deterministic, warn_only=was_warn_only)
        torch.set_num_threads(old_threads)

    train_seconds = time.perf_counter() - t0
    if step > max_steps:
        logger.warning(
            "checkpoint is at step %d, past max_steps %d; saving it as is", step, max_steps
        )
    model.eval()
    model.to("cpu")
    _save_pretrained_atomic(model, tokenizer, out_dir)
    atomic_write_text(log_path, "".join(json.dumps(r) + "\n" for r in history))
    summary = {
        "start_step": start_step,
        "steps": step,
        "train_pairs": len(train_data),
        "dev_pairs": len(dev_data),
        "vocab_size": len(tokenizer),
        "parameters": sum(p.numel() for p in model.parameters()),
        "final_train_loss": last_loss if step > start_step else None,
        "final_dev_loss": history[-1].get("dev_loss") if history else None,
        "train_seconds": round(train_seconds, 3),
        "tokens_per_second": round(tokens_seen / train_seconds, 1) if tokens_seen else None,
        "config": cfg,
    }
    atomic_write_text(out_dir / "training_summary.json", json.dumps(summary, indent=2) + "\n")
    logger.info("saved NMT model to %s (%s)", out_dir, summary)
    return summary
