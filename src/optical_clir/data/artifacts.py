"""Remote inputs of a configuration, fetched ahead of the jobs (``snakemake download``).

Cluster nodes often have no internet access, and a training job is a bad place to find
out that a download fails. :func:`remote_artifacts` lists everything a configuration reads
from the network:

- ``huggingface``: Hub models (the teacher's backbone, pretrained NMT systems), at the
  configured ``revision`` (a commit hash; ``null`` takes the default branch's head);
- ``ir_datasets``: the ir_datasets ids of collections, query sets and training triples;
- ``opus``: the OPUS Moses zips of ``opus`` bitext sources;
- ``url``: training triples given as an http(s) URL.

:func:`optical_clir.data.fetch.fetch` downloads one of them into its cache (Hugging Face's ``HF_HOME``,
``IR_DATASETS_HOME``, the OPUS cache folder, ``results/downloads/files``), holding a file
lock so that two workflows sharing a cache never download the same artifact at once, and
returns a record with the resolved revision and the SHA-256 of every file.
:func:`write_lock` gathers the records into ``results/downloads/lock.json``; jobs that run
offline check their artifacts with :func:`check_artifacts` and stop, naming the artifact
and ``snakemake download``, when one is missing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optical_clir.errors import ConfigError, InputError
from optical_clir.io import atomic_write_text

logger = logging.getLogger(__name__)

KINDS = ("huggingface", "ir_datasets", "opus", "url")
LOCK_FORMAT = "optical-downloads-v1"
LOCK_FILE = "results/downloads/lock.json"
MARKER_DIR = "results/downloads/artifacts"
URL_CACHE = "results/downloads/files"
HINT = "run `snakemake download` (on a machine with internet access) first"
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass
class Artifact:
    """One remote input: ``kind``, a path-safe ``key``, what to fetch, and the config keys
    that ask for it (for messages)."""

    kind: str
    key: str
    spec: dict[str, Any]
    where: list[str] = field(default_factory=list)

    @property
    def marker(self) -> str:
        """The file the download rule writes (the artifact's record)."""
        return f"{MARKER_DIR}/{self.kind}/{self.key}.json"

    @property
    def name(self) -> str:
        """How messages name the artifact."""
        spec = self.spec
        return str(spec.get("repo_id") or spec.get("dataset") or spec.get("url") or self.key)


def path_key(name: str) -> str:
    """A file-name-safe key for an id such as ``facebook/nllb-200`` (``/`` becomes ``--``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name.replace("/", "--"))


def is_hub_id(name: str, root: str | Path) -> bool:
    """Whether a model name refers to the Hugging Face Hub (not ``package:``, not a folder)."""
    if name.startswith("package:"):
        return False
    path = Path(name).expanduser()
    if path.is_absolute() or (Path(root) / path).exists() or path.exists():
        return False
    return re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", name) is not None


def remote_artifacts(config: Mapping[str, Any], root: str | Path) -> list[Artifact]:
    """Every remote input of ``config`` (one entry per artifact, in config order)."""
    found: dict[tuple[str, str], Artifact] = {}

    def add(kind: str, key: str, spec: dict[str, Any], where: str) -> None:
        artifact = found.setdefault((kind, key), Artifact(kind, key, spec))
        if artifact.spec != spec:
            raise ConfigError(
                where,
                f"asks for {artifact.name} with {spec}, but {artifact.where[0]} with "
                f"{artifact.spec}: use the same settings",
            )
        artifact.where.append(where)

    def hub_model(repo_id: str, revision: str | None, where: str) -> None:
        if revision is not None and not _COMMIT.match(str(revision)):
            logger.info(
                "%s: revision %r is not a commit hash (the lock file records one)", where, revision
            )
        add("huggingface", path_key(repo_id), {"repo_id": repo_id, "revision": revision}, where)

    model = config["teacher"]["model"]
    if is_hub_id(model["backbone"], root):
        hub_model(model["backbone"], model.get("revision"), "teacher.model.backbone")
    for name, system in config["nmt"]["systems"].items():
        if system["kind"] == "pretrained" and is_hub_id(system["model"], root):
            hub_model(system["model"], system.get("revision"), f"nmt.systems.{name}.model")
    for name, coll in config["collections"].items():
        if coll.get("source", "local") == "ir_datasets":
            add("ir_datasets", path_key(coll["dataset"]), {"dataset": coll["dataset"]},
                f"collections.{name}.dataset")  # fmt: skip
        for lang, queries in coll["queries"].items():
            if isinstance(queries, Mapping):
                dataset = queries["ir_datasets"]
                add("ir_datasets", path_key(dataset), {"dataset": dataset},
                    f"collections.{name}.queries.{lang}")  # fmt: skip
    source = str(config["mmarco"]["source"]["source"])
    kind = config["mmarco"]["source"].get("kind", "auto")
    if source.startswith(("irds:", "ir_datasets:")) or kind == "ir_datasets":
        dataset = source.split(":", 1)[1] if ":" in source.split("/")[0] else source
        add("ir_datasets", path_key(dataset), {"dataset": dataset}, "mmarco.source.source")
    elif source.startswith(("http://", "https://")) or kind == "url":
        add("url", hashlib.sha256(source.encode()).hexdigest()[:16],
            {"url": source, "file": Path(source.split("?")[0]).name or "download"},
            "mmarco.source.source")  # fmt: skip
    for lang, spec in config["languages"].items():
        src = spec.get("bitext", {}).get("source", {})
        if src.get("kind") == "opus":
            from optical_clir.data.bitext import opus_download

            url, path = opus_download(src)
            add("opus", path_key(path.name.removesuffix(".txt.zip")),
                {"url": url, "path": str(path), "sha256": src.get("sha256"), "md5": src.get("md5")},
                f"languages.{lang}.bitext.source")  # fmt: skip
    return list(found.values())


def streamed_sources(config: Mapping[str, Any]) -> list[str]:
    """Config keys of sources that their job streams from the network (Hugging Face
    datasets): they cannot be fetched ahead, so they need ``cache.offline_jobs: false``."""
    keys = []
    source = config["mmarco"]["source"]
    if str(source["source"]).startswith("hf:") or source.get("kind") == "hf":
        keys.append("mmarco.source.source")
    for lang, spec in config["languages"].items():
        if spec.get("bitext", {}).get("source", {}).get("kind") == "huggingface":
            keys.append(f"languages.{lang}.bitext.source")
    return keys


# ------------------------------------------------------------------------------ helpers


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_record(path: Path, root: Path) -> dict[str, Any]:
    return {
        "path": str(path.relative_to(root)),
        "size": path.stat().st_size,
        "sha256": sha256_file(path),
    }


@contextlib.contextmanager
def artifact_lock(path: str | Path, what: str) -> Iterator[None]:
    """An exclusive lock on ``path`` (created if need be) while one artifact is fetched, so
    that workflows sharing a cache fetch it one at a time; the others wait, then find it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("%s: another process is downloading it (lock %s); waiting", what, path)
            start = time.monotonic()
            fcntl.flock(fh, fcntl.LOCK_EX)
            logger.info("%s: lock released after %.0f s", what, time.monotonic() - start)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache (``HF_HUB_CACHE``, else ``HF_HOME/hub``, else the default)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface"
    )
    return Path(home).expanduser() / "hub"


def ir_datasets_home() -> Path:
    """ir_datasets' folder (``IR_DATASETS_HOME``, else ``~/.ir_datasets``)."""
    return Path(os.environ.get("IR_DATASETS_HOME") or Path.home() / ".ir_datasets").expanduser()


def url_cache_path(artifact: Artifact) -> Path:
    """Where a ``url`` artifact is kept (its jobs read this local copy)."""
    return Path(URL_CACHE) / artifact.key / artifact.spec["file"]


def write_marker(record: Mapping[str, Any], path: str | Path) -> None:
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")


def write_lock(markers: Sequence[str | Path], out: str | Path) -> dict[str, Any]:
    """Gather the artifacts' records into the lock file (sorted by kind and key)."""
    records = [json.loads(Path(m).read_text()) for m in markers]
    records.sort(key=lambda r: (r["kind"], r["key"]))
    lock = {"format": LOCK_FORMAT, "artifacts": records}
    atomic_write_text(out, json.dumps(lock, indent=2) + "\n")
    return lock


# ------------------------------------------------------------------------------ checking


def check_artifacts(markers: Sequence[str | Path]) -> None:
    """Stop with the artifact's name and :data:`HINT` if a file it downloaded is gone."""
    for marker in markers:
        record = json.loads(Path(marker).read_text())
        folder = Path(record.get("snapshot") or record["folder"])
        for entry in record["files"]:
            path = folder / entry["path"]
            if not path.is_file() or path.stat().st_size != entry["size"]:
                name = record.get("repo_id") or record.get("dataset") or record.get("url")
                raise InputError(
                    path,
                    f"file of {name} missing or changed since it was downloaded (record "
                    f"{marker}); delete the record and {HINT}",
                )


def offline_error(name: str, error: Exception) -> InputError:
    """The error of a job that runs offline (``HF_HUB_OFFLINE``) and misses a Hub model."""
    return InputError(
        name,
        f"not in the Hugging Face cache ({hf_cache_dir()}) and jobs run offline "
        f"(cache.offline_jobs); {HINT} ({type(error).__name__}: {error})",
    )


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def lock_summary(lock_path: str | Path) -> str | None:
    """One provenance line: the Hub models' resolved revisions and what else was fetched."""
    path = Path(lock_path)
    if not path.is_file():
        return None
    records = json.loads(path.read_text()).get("artifacts", [])
    if not records:
        return None
    models = [f"{r['repo_id']}@{r['revision'][:12]}" for r in records if r["kind"] == "huggingface"]
    others = {
        kind: sum(r["kind"] == kind for r in records) for kind in ("ir_datasets", "opus", "url")
    }
    parts = [", ".join(models)] if models else []
    parts += [f"{n} {kind}" for kind, n in others.items() if n]
    return f"Downloads ({path.as_posix()}, revisions and SHA-256 there): " + "; ".join(parts) + "."
