"""Translate low-resource queries into English with any Hugging Face seq2seq model.

This is the translate-then-search baseline: each query is translated with a public NMT model
(Marian OPUS-MT, NLLB, M2M-100, mBART-50) or with a small model from `optical_clir.translate.small_nmt`, and
the English text is handed to the monolingual retrievers (BM25, dense).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from optical_clir.errors import ConfigError
from optical_clir.translate._io import clean_field, read_id_tsv, write_tsv

logger = logging.getLogger(__name__)

# Upper bound on source length when neither tokenizer nor model states one.
_FALLBACK_MAX_INPUT = 1024


def read_queries(path: str | Path) -> list[tuple[str, str]]:
    """Read a `qid<TAB>text` queries file; malformed lines raise `InputError` with the line."""
    return [(fields[0], fields[1]) for _, fields in read_id_tsv(path, 2, what="query line")]


def resolve_device(device: str = "auto") -> torch.device:
    """Map "auto" to the first CUDA GPU when one is visible, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """Pick the inference dtype: "auto" is bf16 on a bf16-capable GPU, else float32.

    Our choice, not the paper's: fp16 is only used when asked for explicitly, because some
    seq2seq checkpoints overflow in fp16 and bf16 has fp32's range; on the CPU "auto" is fp32.
    """
    names = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if dtype not in names:
        raise ConfigError(
            "translate.dtype", f"must be auto or one of {sorted(names)}, not {dtype!r}"
        )
    return names[dtype]


def load_translation_model(
    model_dir_or_id: str | Path,
    device: str = "auto",
    dtype: str = "auto",
    revision: str | None = None,
) -> tuple[Any, Any, torch.device]:
    """Load tokenizer and seq2seq model (hub id at `revision`, or local folder), in eval
    mode on `device`. Offline (`HF_HUB_OFFLINE`), a Hub model missing from the cache is an
    error that names it and `snakemake download`."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    kwargs = {"revision": revision} if revision else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir_or_id), **kwargs)
        model = AutoModelForSeq2SeqLM.from_pretrained(
            str(model_dir_or_id), dtype=torch_dtype, **kwargs
        )
    except OSError as error:
        from optical_clir.data.artifacts import hub_offline, offline_error

        if hub_offline() and not Path(model_dir_or_id).exists():
            raise offline_error(str(model_dir_or_id), error) from error
        raise
    model.to(dev)
    model.eval()
    return tokenizer, model, dev


def resolve_lang_codes(
    tokenizer: Any,
    src_lang: str,
    tgt_lang: str,
    lang_codes: Mapping[str, str] | None,
) -> tuple[str | None, int | None]:
    """Return (model source code, forced BOS id of the target code) for multilingual models.

    With no `lang_codes` (Marian OPUS-MT: one model per direction) both are None. With a
    mapping such as {"sw": "swh_Latn", "en": "eng_Latn"} (NLLB) or {"sw": "sw", "en": "en"}
    (M2M-100, whose tokenizer has `get_lang_id`), the target code must be a known token.
    """
    if not lang_codes:
        return None, None
    for lang in (src_lang, tgt_lang):
        if lang not in lang_codes:
            raise ConfigError(
                f"lang_codes.{lang}",
                f"no model language code for {lang!r}; the mapping has {sorted(lang_codes)}",
            )
    src_code, tgt_code = lang_codes[src_lang], lang_codes[tgt_lang]
    if hasattr(tokenizer, "get_lang_id"):  # M2M-100 style: code "en" -> token "__en__"
        try:
            tgt_id = tokenizer.get_lang_id(tgt_code)
        except KeyError as err:
            raise ConfigError(
                f"lang_codes.{tgt_lang}", f"the tokenizer has no language {tgt_code!r}"
            ) from err
    else:
        tgt_id = tokenizer.convert_tokens_to_ids(tgt_code)
    unk = getattr(tokenizer, "unk_token_id", None)
    if tgt_id is None or (unk is not None and tgt_id == unk):
        raise ConfigError(
            f"lang_codes.{tgt_lang}", f"{tgt_code!r} is not a token of this model's vocabulary"
        )
    return src_code, int(tgt_id)


def _max_input_length(tokenizer: Any, model: Any) -> int:
    """Longest source the model accepts: the smaller of tokenizer and position limits."""
    limits = [_FALLBACK_MAX_INPUT]
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < 10**9:
        limits.append(tok_max)
    pos_max = getattr(model.config, "max_position_embeddings", None)
    if isinstance(pos_max, int) and pos_max > 0:
        limits.append(pos_max)
    return min(limits)


def translate_texts(
    texts: Sequence[str],
    tokenizer: Any,
    model: Any,
    device: torch.device,
    batch_size: int = 16,
    num_beams: int = 4,
    max_length: int = 128,
    forced_bos_token_id: int | None = None,
    progress: bool = True,
) -> list[str]:
    """Translate non-empty texts in length-sorted batches; results come back in input order.

    `max_length` bounds the number of generated tokens (and the source tokens); beam search
    is deterministic (no sampling).
    """
    if batch_size < 1:
        raise ConfigError("translate.batch_size", f"must be >= 1, not {batch_size}")
    if num_beams < 1:
        raise ConfigError("translate.num_beams", f"must be >= 1, not {num_beams}")
    if max_length < 1:
        raise ConfigError("translate.max_length", f"must be >= 1, not {max_length}")
    if not texts:
        return []
    max_in = min(_max_input_length(tokenizer, model), max_length)
    max_new = max_length
    pos_max = getattr(model.config, "max_position_embeddings", None)
    if isinstance(pos_max, int) and max_new > pos_max - 1:
        # Decoder positions beyond the table would crash models with learned/fixed tables.
        logger.warning(
            "max_length %d exceeds the model's %d positions; generating at most %d tokens",
            max_length,
            pos_max,
            pos_max - 1,
        )
        max_new = pos_max - 1
    lengths = [len(ids) for ids in tokenizer(list(texts), truncation=False)["input_ids"]]
    n_long = sum(n > max_in for n in lengths)
    if n_long:
        logger.warning("%d queries are longer than %d tokens and are truncated", n_long, max_in)
    # Longest first: similar lengths share a batch (less padding), and memory errors show early.
    order = sorted(range(len(texts)), key=lambda i: (-lengths[i], i))
    out: list[str | None] = [None] * len(texts)
    gen_kwargs: dict[str, Any] = {
        "num_beams": num_beams,
        "do_sample": False,
        "max_new_tokens": max_new,
    }
    if forced_bos_token_id is not None:
        gen_kwargs["forced_bos_token_id"] = forced_bos_token_id
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    bar = tqdm(batches, desc="translate", unit="batch", disable=not progress)
    with torch.inference_mode():
        for batch in bar:
            enc = tokenizer(
                [texts[i] for i in batch],
                padding=True,
                truncation=True,
                max_length=max_in,
                return_tensors="pt",
            ).to(device)
            generated = model.generate(**enc, **gen_kwargs)
            decoded = tokenizer.batch_decode(generated, skip_special_tokens=True)
            for i, text in zip(batch, decoded, strict=True):
                out[i] = text.strip()
    return [t if t is not None else "" for t in out]


def translate_queries(
    model_dir_or_id: str | Path,
    queries_tsv: str | Path,
    out_tsv: str | Path,
    src_lang: str,
    tgt_lang: str = "en",
    batch_size: int = 16,
    num_beams: int = 4,
    max_length: int = 128,
    device: str = "auto",
    lang_codes: Mapping[str, str] | None = None,
    english_tsv: str | Path | None = None,
    dtype: str = "auto",
    progress: bool = True,
    revision: str | None = None,
) -> list[tuple[str, str, str]]:
    """Translate a queries TSV; write `qid<TAB>source<TAB>translation` in input order.

    Every query id appears exactly once. Empty or whitespace-only queries are not sent to
    the model: they get an empty translation and a warning. When `english_tsv` is given, the
    `qid<TAB>translation` file the retrievers read is written too. Both writes are atomic.
    """
    queries = read_queries(queries_tsv)
    tokenizer, model, dev = load_translation_model(
        model_dir_or_id, device=device, dtype=dtype, revision=revision
    )
    src_code, forced_bos = resolve_lang_codes(tokenizer, src_lang, tgt_lang, lang_codes)
    if src_code is not None:
        if hasattr(tokenizer, "src_lang"):
            tokenizer.src_lang = src_code
        else:
            logger.warning(
                "tokenizer of %s has no src_lang; only the target code %r is used",
                model_dir_or_id,
                lang_codes[tgt_lang],
            )
    todo: list[int] = []
    for i, (qid, text) in enumerate(queries):
        if text.strip():
            todo.append(i)
        else:
            logger.warning(
                "query %r in %s is empty: not translated, its translation is empty",
                qid,
                queries_tsv,
            )
    logger.info(
        "translating %d queries (%s -> %s) from %s with %s on %s",
        len(todo),
        src_lang,
        tgt_lang,
        queries_tsv,
        model_dir_or_id,
        dev,
    )
    translated = translate_texts(
        [queries[i][1].strip() for i in todo],
        tokenizer,
        model,
        dev,
        batch_size=batch_size,
        num_beams=num_beams,
        max_length=max_length,
        forced_bos_token_id=forced_bos,
        progress=progress,
    )
    translations = [""] * len(queries)
    for i, text in zip(todo, translated, strict=True):
        translations[i] = text
    rows = [
        (qid, clean_field(src), clean_field(tr))
        for (qid, src), tr in zip(queries, translations, strict=True)
    ]
    write_tsv(out_tsv, rows)
    if english_tsv is not None:
        write_tsv(english_tsv, [(qid, tr) for qid, _, tr in rows])
    return rows


def write_english_queries(translation_tsv: str | Path, out_tsv: str | Path) -> int:
    """Turn a `qid<TAB>source<TAB>translation` file into the `qid<TAB>text` English queries.

    Returns the number of queries written; the order of the input is kept.
    """
    rows = read_id_tsv(translation_tsv, 3, what="translation line")
    write_tsv(out_tsv, [(fields[0], fields[2]) for _, fields in rows])
    return len(rows)


def translate_queries_from_config(
    cfg: Mapping[str, Any],
    queries_tsv: str | Path,
    out_tsv: str | Path,
    src_lang: str,
    english_tsv: str | Path | None = None,
) -> list[tuple[str, str, str]]:
    """Config-dict front end for Snakemake scripts; see `TRANSLATE_DEFAULTS` for the keys.

    `model` may be one id/folder for every language or a mapping language -> id/folder.
    """
    unknown = set(cfg) - set(TRANSLATE_DEFAULTS)
    if unknown:
        raise ConfigError(f"translate.{sorted(unknown)[0]}", "unknown key")
    merged = {**TRANSLATE_DEFAULTS, **cfg}
    model = merged["model"]
    if isinstance(model, Mapping):
        if src_lang not in model:
            raise ConfigError(f"translate.model.{src_lang}", "no model for this language")
        model = model[src_lang]
    if not model:
        raise ConfigError("translate.model", "a model id or folder is required")
    return translate_queries(
        model,
        queries_tsv,
        out_tsv,
        src_lang=src_lang,
        tgt_lang=merged["tgt_lang"],
        batch_size=int(merged["batch_size"]),
        num_beams=int(merged["num_beams"]),
        max_length=int(merged["max_length"]),
        device=merged["device"],
        lang_codes=merged["lang_codes"],
        english_tsv=english_tsv,
        dtype=merged["dtype"],
        progress=bool(merged["progress"]),
        revision=merged["revision"],
    )


TRANSLATE_DEFAULTS: dict[str, Any] = {
    "model": None,  # hub id or local folder, or {lang: id_or_folder}
    "tgt_lang": "en",
    "batch_size": 16,
    "num_beams": 4,
    "max_length": 128,
    "device": "auto",
    "dtype": "auto",
    "lang_codes": None,  # e.g. {"sw": "swh_Latn", "en": "eng_Latn"} for NLLB
    "progress": True,
    "revision": None,  # Hub commit of a hub-id model (None: the default branch)
}
