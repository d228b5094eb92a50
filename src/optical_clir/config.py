"""Validate the workflow configuration before any job runs, with one clear message per problem.

The JSON schema (``workflow/schemas/config.schema.yaml``) checks keys and types; the
cross-checks here check what a schema cannot: that names refer to each other and that
input files exist. Relative input paths are resolved against the repository root.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from optical_clir.errors import ConfigError
from optical_clir.systems import SYSTEMS

# The local files each kind of bitext source reads (besides an optional ``align``).
LOCAL_BITEXT_FILES = {"local_tsv": ("path",), "moses": ("src", "en")}
# Names that become parts of paths (collections, languages, NMT systems).
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def _with_defaults(validator_class: Any) -> Any:
    """A validator class that also fills in the schema's ``default`` values (in place), so
    that the schema is the one place where the configuration's defaults are written."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator: Any, properties: Any, instance: Any, schema: Any) -> Any:
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_DefaultingValidator = _with_defaults(jsonschema.Draft202012Validator)


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


def _first_error(validator: Any, instance: Any, prefix: str = "") -> ConfigError | None:
    errors = list(validator.iter_errors(instance))
    if not errors:
        return None
    # The deepest, most specific error is the most useful one to show.
    error = _schema_error(jsonschema.exceptions.best_match(errors))
    if prefix:
        key = error.key if error.key != "(top level)" else ""
        return ConfigError(f"{prefix}.{key}".rstrip("."), error.problem)
    return error


def validate_config(config: dict, schema: dict, root: str | Path) -> None:
    """Fill in the schema's defaults, then raise :class:`ConfigError` for the first schema
    violation, broken reference or missing file."""
    error = _first_error(_DefaultingValidator(schema), config)
    if error is not None:
        raise error
    _check_names(config)
    _check_references(config)
    _check_measures(config["evaluation"])
    _check_bitext(config)
    _check_students(config, schema)
    _check_files(config, root)


def check_duplicate_keys(paths: Iterable[str | Path]) -> None:
    """Refuse a configuration file that gives a key twice in one mapping, which YAML loaders
    (Snakemake's too) accept silently, keeping the last value. Raises :class:`ConfigError`
    naming the file, the dotted key and both lines."""
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            try:
                root = yaml.compose(handle, Loader=yaml.SafeLoader)
            except yaml.YAMLError as error:
                raise ConfigError(
                    "(top level)", f"not valid YAML: {error}", source=str(path)
                ) from None
        if root is not None:
            _walk_duplicates(root, [], str(path))


def _walk_duplicates(node: yaml.Node, where: list[str], path: str) -> None:
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key != "<<" and key in first:
                raise ConfigError(
                    ".".join([*where, key]),
                    f"given twice in one mapping (lines {first[key]} and {line}); "
                    "YAML would silently keep the last",
                    source=path,
                )
            first.setdefault(key, line)
            _walk_duplicates(value_node, [*where, key], path)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk_duplicates(item, [*where, str(i)], path)


def _check_measures(evaluation: dict) -> None:
    """Every measure must be one ir_measures knows (and none twice under two names); the
    table's measure must be one of them."""
    import ir_measures

    seen: dict[str, str] = {}
    for i, name in enumerate(evaluation["measures"]):
        try:
            parsed = str(ir_measures.parse_measure(name))
        except (NameError, ValueError, SyntaxError, TypeError) as error:
            raise ConfigError(
                f"evaluation.measures.{i}", f"'{name}' is not an ir_measures measure ({error})"
            ) from None
        if parsed in seen:
            raise ConfigError(
                f"evaluation.measures.{i}", f"'{name}' is the same measure as '{seen[parsed]}'"
            )
        seen[parsed] = name
    table = evaluation["table_measure"]
    if table not in evaluation["measures"]:
        raise ConfigError(
            "evaluation.table_measure",
            f"'{table}' is not in evaluation.measures ({', '.join(evaluation['measures'])})",
        )


def _check_bitext(config: dict) -> None:
    """What the schema cannot say about a bitext's cleaning and sampling."""
    for lang, spec in config["languages"].items():
        if "bitext" not in spec:
            continue
        key = f"languages.{lang}.bitext"
        clean, sample = spec["bitext"]["clean"], spec["bitext"]["sample"]
        if clean["min_tokens"] > clean["max_tokens"]:
            raise ConfigError(
                f"{key}.clean.min_tokens",
                f"{clean['min_tokens']} is above max_tokens {clean['max_tokens']}",
            )
        dev, n = sample["dev"], sample["n"]
        if dev >= 1 and not float(dev).is_integer():
            raise ConfigError(
                f"{key}.sample.dev", f"{dev} is neither a count nor a fraction below 1"
            )
        if n is not None and dev >= 1 and dev >= n:
            raise ConfigError(
                f"{key}.sample.dev", f"{dev} dev pairs leave no training pairs out of n={n}"
            )


def _check_names(config: dict) -> None:
    for section, names in (
        ("collections", config["collections"]),
        ("languages", config["languages"]),
        ("nmt.systems", config["nmt"]["systems"]),
    ):
        for name in names:
            if not NAME_PATTERN.match(str(name)):
                raise ConfigError(
                    f"{section}.{name}",
                    "a name that becomes part of file paths must be letters, digits, _ or - "
                    "(starting with a letter or digit, at most 64 characters)",
                )


def _check_students(config: dict, schema: dict) -> None:
    """Every student's merged settings (default, method overrides, each variant of
    ``distill.select`` and ``ablation``) must be valid loss and train settings."""
    from optical_clir.variants import student_settings

    distill = config["distill"]
    loss_schema = {**schema["$defs"]["ot_loss"], "$defs": schema["$defs"]}
    train_schema = {**schema["$defs"]["train"], "$defs": schema["$defs"]}
    loss_validator = jsonschema.Draft202012Validator(loss_schema)
    train_validator = jsonschema.Draft202012Validator(train_schema)
    for section, grids in (("distill.select", distill.get("select", {})),
                           ("ablation", config.get("ablation", {}))):  # fmt: skip
        for method in grids:
            if method not in distill["methods"]:
                raise ConfigError(f"{section}.{method}", "is not in distill.methods")
    for method in distill["methods"]:
        changes = [(f"distill.method_overrides.{method}", {})]
        for section, grids in (("distill.select", distill.get("select", {})),
                               ("ablation", config.get("ablation", {}))):  # fmt: skip
            for key, values in grids.get(method, {}).items():
                changes += [(f"{section}.{method}.{key}", {key: v}) for v in values]
        for where, change in changes:
            loss, train = student_settings(distill, method, change)
            for validator, settings, name in ((loss_validator, loss, "loss"),
                                              (train_validator, train, "train")):  # fmt: skip
                error = _first_error(validator, settings, f"{where} (merged distill.{name})")
                if error is not None:
                    raise error


def _check_per_language_qrels(name: str, coll: dict) -> None:
    """``qrels: per_language`` takes each language's qrels from its ir_datasets query source;
    English queries would be other topics with other qrels, so the English rows need shared
    topics."""
    where = f"collections.{name}.qrels"
    if coll.get("source", "local") != "ir_datasets":
        raise ConfigError(where, "per_language needs source: ir_datasets (qrels of each query set)")
    for lang, spec in coll["queries"].items():
        if not (isinstance(spec, dict) and "ir_datasets" in spec):
            raise ConfigError(
                f"collections.{name}.queries.{lang}",
                "with qrels: per_language every language needs {ir_datasets: id} (its qrels)",
            )
    if "en" in coll["queries"]:
        raise ConfigError(
            f"collections.{name}.queries.en",
            "English queries need topics shared with the other languages, which a collection "
            "with per-language qrels does not have",
        )


def _check_references(config: dict) -> None:
    collections = config["collections"]
    for name, coll in collections.items():
        if coll.get("qrels") == "per_language":
            _check_per_language_qrels(name, coll)
        elif coll.get("source", "local") == "ir_datasets" and "qrels" in coll:
            raise ConfigError(
                f"collections.{name}.qrels",
                "an ir_datasets collection takes its qrels from 'dataset', or per_language",
            )
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
        if system not in SYSTEMS:
            raise ConfigError(
                f"evaluation.systems.{i}",
                f"unknown system '{system}' (known: {', '.join(SYSTEMS)})",
            )
        if SYSTEMS[system].is_student and system not in config["distill"]["methods"]:
            raise ConfigError(f"evaluation.systems.{i}", f"'{system}' is not in distill.methods")
        if SYSTEMS[system].queries == "psq":
            for lang, spec in config["languages"].items():
                if "bitext" not in spec:
                    raise ConfigError(f"languages.{lang}.bitext", "BM25 + PSQ needs a bitext")
    retrievers = {SYSTEMS[s].retriever for s in systems}
    depths = {"bm25": config["bm25"]["depth"], "dense": config["dense"]["depth"]}
    if len({depths[r] for r in retrievers}) > 1 and not evaluation["mixed_depth"]:
        raise ConfigError(
            "dense.depth",
            f"is {depths['dense']} but bm25.depth is {depths['bm25']}: systems of one table "
            "must rank to the same depth (or set evaluation.mixed_depth: true)",
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
    for name in config["dense"].get("backend_by_collection", {}):
        if name not in collections:
            raise ConfigError(
                f"dense.backend_by_collection.{name}",
                f"'{name}' is not a collection (have: {', '.join(collections)})",
            )
    if config.get("cache", {}).get("offline_jobs", True):
        from optical_clir.data.artifacts import streamed_sources

        streamed = streamed_sources(config)
        if streamed:
            raise ConfigError(
                streamed[0],
                "is a Hugging Face dataset, which its job streams from the network, but jobs "
                "run offline (cache.offline_jobs: true): set cache.offline_jobs: false, or "
                "use a local copy of the data",
            )


def _check_files(config: dict, root: str | Path) -> None:
    for name, coll in config["collections"].items():
        if coll.get("source", "local") == "local":
            for key in ("docs", "qrels"):  # per_language is refused in _check_references
                if key not in coll:
                    raise ConfigError(f"collections.{name}", f"a local collection needs '{key}'")
                _must_exist(f"collections.{name}.{key}", coll[key], root)
        elif "dataset" not in coll:
            raise ConfigError(f"collections.{name}", "an ir_datasets collection needs 'dataset'")
        for lang, spec in coll["queries"].items():
            if isinstance(spec, str):
                _must_exist(f"collections.{name}.queries.{lang}", spec, root)
            elif "path" in spec:
                _must_exist(f"collections.{name}.queries.{lang}.path", spec["path"], root)
    for lang, spec in config["languages"].items():
        source = spec.get("bitext", {}).get("source", {})
        needed = LOCAL_BITEXT_FILES.get(source.get("kind"), ())
        for key in needed:
            if not source.get(key):
                raise ConfigError(
                    f"languages.{lang}.bitext.source",
                    f"a {source['kind']} source needs '{key}'",
                )
        for key in (*needed, "align"):
            if source.get(key):
                _must_exist(f"languages.{lang}.bitext.source.{key}", source[key], root)


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
