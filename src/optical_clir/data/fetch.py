"""Downloading the remote inputs of a configuration (the ``download`` rules only).

Kept apart from :mod:`optical_clir.data.artifacts` (which every offline job imports to
check its inputs) so that only the download jobs need ``huggingface_hub``, ``requests``
and ``ir_datasets``. :func:`fetch` downloads one artifact into its cache under a file lock
and returns its record: the resolved revision and the SHA-256 of every file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from optical_clir.data.artifacts import (
    Artifact,
    artifact_lock,
    file_record,
    hf_cache_dir,
    ir_datasets_home,
    path_key,
    url_cache_path,
)
from optical_clir.errors import InputError
from optical_clir.io import atomic_write_text


@contextlib.contextmanager
def _hub_online() -> Iterator[None]:
    """Let huggingface_hub reach the network although the workflow's jobs run offline."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = False
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def hub_files(siblings: Sequence[str]) -> list[str]:
    """The files of a model repository that transformers needs: the top-level configs,
    vocabularies and tokenizer files, and one copy of the weights (safetensors if there are
    any, else PyTorch ``.bin``); no TensorFlow, Flax, ONNX or other exports."""
    top = [f for f in siblings if "/" not in f]
    meta = [
        f for f in top if f.endswith((".json", ".txt", ".model", ".spm", ".vocab", ".tiktoken"))
    ]
    weights = [f for f in top if f.endswith(".safetensors")]
    if not weights:
        weights = [f for f in top if f.startswith("pytorch_model") and f.endswith(".bin")]
    if not weights:
        raise InputError("huggingface", f"no safetensors or PyTorch weights among {sorted(top)}")
    return sorted(set(meta + weights))


def fetch_huggingface(
    repo_id: str, revision: str | None, endpoint: str | None = None
) -> dict[str, Any]:
    """Download a Hub model's files at ``revision`` (None: the default branch) into the hub
    cache; the record holds the resolved commit hash and each file's SHA-256."""
    from huggingface_hub import HfApi, hf_hub_download

    cache = hf_cache_dir()
    with (
        artifact_lock(cache / ".optical-locks" / f"{path_key(repo_id)}.lock", repo_id),
        _hub_online(),
    ):
        info = HfApi(endpoint=endpoint).model_info(repo_id, revision=revision)
        commit = info.sha
        if not commit:
            raise InputError(repo_id, f"the Hub gave no commit hash for revision {revision!r}")
        names = hub_files([s.rfilename for s in info.siblings or []])
        paths = [
            Path(
                hf_hub_download(repo_id, name, revision=commit, cache_dir=cache, endpoint=endpoint)
            )
            for name in names
        ]
        # Offline, transformers resolves a branch name (the default: main) through refs/;
        # downloading by commit hash writes none, so record which commit the name meant.
        ref = revision or "main"
        if ref != commit:
            refs = cache / f"models--{repo_id.replace('/', '--')}" / "refs" / ref
            refs.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(refs, commit)
    snapshot = paths[0].parent
    return {
        "kind": "huggingface",
        "repo_id": repo_id,
        "requested_revision": revision,
        "revision": commit,
        "snapshot": str(snapshot),
        "files": [file_record(p, snapshot) for p in paths],
    }


def fetch_ir_datasets(dataset_id: str) -> dict[str, Any]:
    """Make ir_datasets download every part of ``dataset_id`` (documents, queries, qrels,
    document pairs) by reading its first record of each; the record lists the files of the
    dataset's folder under ``IR_DATASETS_HOME`` with their SHA-256 (ir_datasets itself checks
    each download against its published MD5)."""
    import ir_datasets

    home = ir_datasets_home()
    folder = home / dataset_id.split("/")[0]
    with artifact_lock(home / ".optical-locks" / f"{path_key(dataset_id)}.lock", dataset_id):
        dataset = ir_datasets.load(dataset_id)
        parts = []
        for part in ("docs", "queries", "qrels", "docpairs", "scoreddocs"):
            if getattr(dataset, f"has_{part}")():
                next(iter(getattr(dataset, f"{part}_iter")()), None)
                parts.append(part)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".lock"))
    return {
        "kind": "ir_datasets",
        "dataset": dataset_id,
        "ir_datasets": ir_datasets.__version__,
        "parts": parts,
        "folder": str(folder),
        "files": [file_record(p, folder) for p in files],
    }


def fetch_file(
    url: str, dest: str | Path, sha256: str | None = None, md5: str | None = None
) -> dict[str, Any]:
    """Download ``url`` to ``dest`` (resumed, retried, verified: :func:`download`)."""
    from optical_clir.data.download import download

    dest = Path(dest)
    with artifact_lock(dest.with_name(dest.name + ".lock"), url):
        download(url, dest, sha256=sha256, md5=md5)
    return {
        "kind": "file",
        "url": url,
        "folder": str(dest.parent),
        "files": [file_record(dest, dest.parent)],
    }


def fetch(artifact: Artifact, endpoint: str | None = None) -> dict[str, Any]:
    """Fetch one artifact; return its record (what :func:`write_lock` gathers)."""
    spec = artifact.spec
    if artifact.kind == "huggingface":
        record = fetch_huggingface(spec["repo_id"], spec.get("revision"), endpoint)
    elif artifact.kind == "ir_datasets":
        record = fetch_ir_datasets(spec["dataset"])
    elif artifact.kind == "opus":
        record = fetch_file(spec["url"], spec["path"], spec.get("sha256"), spec.get("md5"))
    elif artifact.kind == "url":
        record = fetch_file(spec["url"], url_cache_path(artifact))
    else:
        raise ValueError(f"unknown artifact kind {artifact.kind!r}")
    return {**record, "kind": artifact.kind, "key": artifact.key, "config_keys": artifact.where}
