"""Tiny BERT backbones with a WordPiece tokenizer built from a word list (tests, smoke runs).

Nothing is downloaded: the tokenizer is built with the ``tokenizers`` library and the model
from a ``BertConfig``, with random weights from the given seed.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

TOY_WORDS = [
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "is",
    "on",
    "with",
    "for",
    "by",
    "at",
    "from",
    "it",
    "this",
    "that",
    "was",
    "are",
    "be",
    "as",
    "cat",
    "dog",
    "bird",
    "fish",
    "horse",
    "cow",
    "lion",
    "tiger",
    "mouse",
    "snake",
    "frog",
    "bear",
    "wolf",
    "fox",
    "deer",
    "goat",
    "red",
    "blue",
    "green",
    "black",
    "white",
    "small",
    "big",
    "fast",
    "slow",
    "old",
    "young",
    "happy",
    "sad",
    "runs",
    "sits",
    "eats",
    "sleeps",
    "swims",
    "flies",
    "jumps",
    "walks",
    "sings",
    "hides",
    "river",
    "tree",
    "house",
    "farm",
    "forest",
    "field",
    "lake",
    "hill",
    "road",
    "garden",
    "what",
    "where",
    "who",
    "how",
    "why",
    "does",
    "do",
    "can",
]


def build_tokenizer(words: Iterable[str] = TOY_WORDS) -> Any:
    """A lower-casing WordPiece tokenizer over ``words`` (+ BERT specials), HF-compatible."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {}
    for token in (*SPECIALS, *words):
        vocab.setdefault(token, len(vocab))
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    cls_id, sep_id = vocab["[CLS]"], vocab["[SEP]"]
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def build_tiny_bert(vocab_size: int, seed: int = 0, hidden_size: int = 32) -> Any:
    """A 2-layer BERT with random weights drawn from ``seed``."""
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=64,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return BertModel(config)


def save_tiny_backbone(
    directory: str | Path, seed: int = 0, words: Iterable[str] = TOY_WORDS
) -> Path:
    """Write a tiny backbone (model + tokenizer) as a plain HF folder; return it."""
    directory = Path(directory)
    tokenizer = build_tokenizer(words)
    model = build_tiny_bert(len(tokenizer), seed)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def save_tiny_encoder(directory: str | Path, seed: int = 0, **encoder_cfg: Any) -> Path:
    """Write a saved :class:`TokenEncoder` on a tiny backbone (``directory/bb``), its projection
    drawn from ``seed``; returns ``directory/teacher``, a folder that ``from_pretrained`` loads."""
    from optical_clir.models.encoder import EncoderConfig, TokenEncoder

    directory = Path(directory)
    backbone = save_tiny_backbone(directory / "bb", seed=seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        encoder = TokenEncoder(EncoderConfig(backbone=str(backbone), **encoder_cfg))
    return encoder.save_pretrained(directory / "teacher")


ANIMALS = ("cat", "dog", "bird", "fish", "horse", "cow", "lion", "tiger")
ACTIONS = ("runs", "sits", "eats", "sleeps", "swims", "flies", "jumps", "walks")
PLACES = ("river", "tree", "house", "farm", "forest", "field", "lake", "hill")


def write_toy_triples(path: str | Path, n: int, seed: int = 0) -> Path:
    """A learnable toy retrieval task over :data:`TOY_WORDS`: the positive passage mentions
    the query's animal, the negative another animal."""
    import random

    rng = random.Random(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(n):
            a, b = rng.sample(ANIMALS, 2)
            q = f"where does the {a} {rng.choice(ACTIONS)}"
            pos = f"the {a} {rng.choice(ACTIONS)} in the {rng.choice(PLACES)}"
            neg = f"the {b} {rng.choice(ACTIONS)} in the {rng.choice(PLACES)}"
            fh.write(f"{q}\t{pos}\t{neg}\n")
    return path
