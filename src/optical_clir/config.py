"""Validate the workflow configuration before any job runs, with one clear message per problem.

The JSON schema (``workflow/schemas/config.schema.yaml``) checks keys and types; the
cross-checks here check what a schema cannot: that names refer to each other and that
input files exist. Relative input paths are resolved against the repository root.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from optical_clir.errors import ConfigError

KNOWN_SYSTEMS = {
    "bm25_en": "BM25 (English queries)",
    "bm25_raw": "BM25 (L queries)",
    "bm25_nmt": "BM25 + NMT",
    "teacher_en": "Teacher (English queries)",
    "teacher_raw": "Teacher zero-shot (L queries)",
    "teacher_nmt": "Teacher + NMT",
    "kd_mse": "KD-MSE student",
    "optical": "OPTICAL student",
}


def _dotted(path: Any) -> str:
    parts = [str(p) for p in path]
    return ".".join(parts) if parts else "(top level)"


def _schema_error(error: jsonschema.ValidationError) -> ConfigError:
    key = _dotted(error.absolute_path)
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        allowed = ", ".join(sorted(error.schema.get("properties", {})))
        name = f"{key}.{extra[0]}" if key != "(top level)" else extra[0]
        return ConfigError(name, f"unknown key (allowed here: {allowed})")
    if error.validator == "required":
        return ConfigError(key, error.message)
    if error.validator == "type":
        return ConfigError(
            key, f"expected {error.validator_value}, got {json.dumps(error.instance)}"
        )
    if error.validator == "enum":
        return ConfigError(
            key, f"{json.dumps(error.instance)} is not one of {error.validator_value}"
        )
    return ConfigError(key, error.message)


def load_schema(schema_path: str | Path) -> dict:
    """Read the YAML JSON-schema file."""
    with open(schema_path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def resolve_path(path: str, root: str | Path) -> Path:
    """Resolve a config path against the repository root unless it is absolute."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else Path(root) / candidate


def validate_config(config: dict, schema: dict, root: str | Path) -> None:
    """Raise :class:`ConfigError` for the first schema violation, broken reference or missing file."""
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(
        validator.iter_errors(config), key=lambda e: (len(e.absolute_path), str(e.path))
    )
    if errors:
        # The deepest, most specific error is the most useful one to show.
        best = jsonschema.exceptions.best_match(errors)
        raise _schema_error(best)
    _check_references(config)
    _check_files(config, root)


def _check_references(config: dict) -> None:
    collections = config["collections"]
    for lang, spec in config["languages"].items():
        coll = spec["collection"]
        if coll not in collections:
            raise ConfigError(
                f"languages.{lang}.collection",
                f"'{coll}' is not a collection (have: {', '.join(collections)})",
            )
        if lang not in collections[coll]["queries"]:
            raise ConfigError(
                f"collections.{coll}.queries", f"has no queries for language '{lang}'"
            )
    evaluation = config["evaluation"]
    systems = evaluation["systems"]
    for i, system in enumerate(systems):
        if system not in KNOWN_SYSTEMS:
            raise ConfigError(
                f"evaluation.systems.{i}",
                f"unknown system '{system}' (known: {', '.join(KNOWN_SYSTEMS)})",
            )
    for i, base in enumerate(evaluation.get("baselines", [])):
        if base["system"] not in systems:
            raise ConfigError(
                f"evaluation.baselines.{i}.system",
                f"'{base['system']}' is not in evaluation.systems",
            )
    nmt = config["nmt"]
    if nmt["table_system"] not in nmt["systems"]:
        raise ConfigError("nmt.table_system", f"'{nmt['table_system']}' is not in nmt.systems")
    for name, spec in nmt["systems"].items():
        needed = "train" if spec["kind"] == "train_small" else "model"
        if needed not in spec:
            raise ConfigError(f"nmt.systems.{name}", f"a {spec['kind']} system needs '{needed}'")
    relative = evaluation.get("relative_to")
    if relative and relative not in systems:
        raise ConfigError("evaluation.relative_to", f"'{relative}' is not in evaluation.systems")


def _check_files(config: dict, root: str | Path) -> None:
    for name, coll in config["collections"].items():
        if coll.get("source", "local") == "local":
            for key in ("docs", "qrels"):
                if key not in coll:
                    raise ConfigError(f"collections.{name}", f"a local collection needs '{key}'")
                _must_exist(f"collections.{name}.{key}", coll[key], root)
        elif "dataset" not in coll:
            raise ConfigError(f"collections.{name}", "an ir_datasets collection needs 'dataset'")
        for lang, spec in coll["queries"].items():
            if isinstance(spec, str):
                _must_exist(f"collections.{name}.queries.{lang}", spec, root)


def _must_exist(key: str, path: str, root: str | Path) -> None:
    resolved = resolve_path(path, root)
    if not resolved.exists():
        raise ConfigError(key, f"file '{path}' does not exist (looked at {resolved})")


def config_hash(config: Any) -> str:
    """A short, stable hash of a JSON-able configuration, printed on tables and model cards."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def git_commit(repo: str | Path) -> str:
    """The checkout's commit (``+dirty`` with uncommitted changes to tracked files), for tables.

    ``unknown`` outside a git checkout (e.g. an unpacked release archive) or without git.
    """
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")
