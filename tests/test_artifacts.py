"""Remote inputs: what a config fetches, fetching against servers on 127.0.0.1 (a stand-in
Hugging Face Hub, an OPUS-like file server, a toy ir_datasets dataset), the lock file, the
checks of offline jobs, and `snakemake download` on the mini workflow."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from optical_clir.config import load_schema, validate_config
from optical_clir.data.artifacts import (
    Artifact,
    artifact_lock,
    check_artifacts,
    lock_summary,
    remote_artifacts,
    write_lock,
    write_marker,
)
from optical_clir.data.fetch import fetch, hub_files
from optical_clir.errors import ConfigError, InputError

REPO = Path(__file__).resolve().parents[1]
SCHEMA = load_schema(REPO / "workflow/schemas/config.schema.yaml")
COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO_ID = "optical-test/tiny-bert"


# ------------------------------------------------------------------ servers on 127.0.0.1


class Served:
    """Files by URL path, a stand-in Hub repository, and a log of requests."""

    def __init__(self, files: dict[str, bytes], hub: dict[str, bytes] | None = None) -> None:
        self.files = files
        self.hub = hub or {}
        self.requests: list[str] = []
        self.url = ""


def _handler(state: Served) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def _send(self, body: bytes, headers: dict[str, str], head: bool) -> None:
            self.send_response(200)
            for key, value in {"Content-Length": str(len(body)), **headers}.items():
                self.send_header(key, value)
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _answer(self, head: bool) -> None:
            state.requests.append(f"{self.command} {self.path}")
            info = re.fullmatch(r"/api/models/(.+?)(/revision/[^/?]+)?(\?.*)?", self.path)
            resolve = re.fullmatch(r"/(.+)/resolve/([^/]+)/(.+)", self.path)
            if info and info.group(1) == REPO_ID:
                body = json.dumps(
                    {
                        "id": REPO_ID,
                        "sha": COMMIT,
                        "siblings": [{"rfilename": name} for name in sorted(state.hub)],
                    }
                ).encode()
                self._send(body, {"Content-Type": "application/json"}, head)
            elif resolve and resolve.group(1) == REPO_ID and resolve.group(3) in state.hub:
                body = state.hub[resolve.group(3)]
                etag = hashlib.sha256(body).hexdigest()
                self._send(body, {"X-Repo-Commit": COMMIT, "ETag": f'"{etag}"'}, head)
            elif self.path in state.files:
                self._send(state.files[self.path], {}, head)
            else:
                self.send_error(404)

        def do_GET(self) -> None:
            self._answer(head=False)

        def do_HEAD(self) -> None:
            self._answer(head=True)

    return Handler


@contextlib.contextmanager
def serve(state: Served) -> Iterator[Served]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def tiny_hub_repo(directory: Path) -> dict[str, bytes]:
    """The files of a tiny BERT model folder, plus files a download must skip."""
    from optical_clir.models.tiny import save_tiny_backbone

    folder = save_tiny_backbone(directory, seed=0)
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    files["tf_model.h5"] = b"not wanted"
    files["onnx/model.onnx"] = b"not wanted either"
    return files


def opus_zip(pairs: list[tuple[str, str]], corpus: str, l1: str, l2: str) -> bytes:
    """A Moses zip as OPUS publishes it (source side ``l1`` = the non-English language)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(f"{corpus}.{l1}-{l2}.{l1}", "".join(f"{a}\n" for a, _ in pairs))
        zf.writestr(f"{corpus}.{l1}-{l2}.{l2}", "".join(f"{b}\n" for _, b in pairs))
    return buffer.getvalue()


# ------------------------------------------------------------------ what a config fetches


def test_paper_config_artifacts():
    cfg = yaml.safe_load((REPO / "config/paper.yaml").read_text())
    found = {(a.kind, a.name) for a in remote_artifacts(cfg, REPO)}
    assert ("huggingface", "bert-base-multilingual-cased") in found
    assert ("huggingface", "facebook/nllb-200-distilled-600M") in found
    assert ("ir_datasets", "msmarco-passage/train/triples-small") in found
    assert ("ir_datasets", "clirmatrix/en/bi139-base/tl/test1") in found
    assert ("ir_datasets", "clirmatrix/en") in found  # the documents Tagalog and Pashto share
    assert sum(kind == "opus" for kind, _ in found) == 7
    assert len(found) == 13
    keys = [a.marker for a in remote_artifacts(cfg, REPO)]
    assert all(
        re.fullmatch(r"results/downloads/artifacts/\w+/[A-Za-z0-9._-]+\.json", k) for k in keys
    )


def test_demo_config_needs_nothing_remote():
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    assert remote_artifacts(cfg, REPO) == []


def test_streamed_sources_need_online_jobs(tmp_path):
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    cfg["languages"]["sw"]["bitext"]["source"] = {
        "kind": "huggingface", "name": "some/dataset", "src_lang": "sw"
    }  # fmt: skip
    with pytest.raises(ConfigError, match="offline_jobs") as err:
        validate_config(cfg, SCHEMA, REPO)
    assert err.value.key == "languages.sw.bitext.source"
    cfg["cache"] = {"offline_jobs": False}
    validate_config(cfg, SCHEMA, REPO)


def test_hub_files_take_one_copy_of_the_weights():
    siblings = ["config.json", "model.safetensors", "pytorch_model.bin", "tf_model.h5",
                "tokenizer.json", "vocab.txt", "onnx/model.onnx", "sentencepiece.bpe.model"]  # fmt: skip
    assert hub_files(siblings) == [
        "config.json", "model.safetensors", "sentencepiece.bpe.model", "tokenizer.json",
        "vocab.txt",
    ]  # fmt: skip
    assert "pytorch_model.bin" in hub_files(["config.json", "pytorch_model.bin"])
    with pytest.raises(InputError, match="no safetensors"):
        hub_files(["config.json", "tf_model.h5"])


# ------------------------------------------------------------------ fetching


def test_hub_model_is_fetched_with_its_commit_and_loads_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    with serve(Served({}, tiny_hub_repo(tmp_path / "repo"))) as srv:
        artifact = Artifact("huggingface", "x", {"repo_id": REPO_ID, "revision": None})
        record = fetch(artifact, endpoint=srv.url)
    assert record["revision"] == COMMIT and record["requested_revision"] is None
    names = sorted(f["path"] for f in record["files"])
    assert "model.safetensors" in names and "tf_model.h5" not in names
    assert not any("onnx" in n for n in names)
    snapshot = Path(record["snapshot"])
    assert snapshot == tmp_path / "hf/hub/models--optical-test--tiny-bert/snapshots" / COMMIT
    for entry in record["files"]:
        assert (
            entry["sha256"] == hashlib.sha256((snapshot / entry["path"]).read_bytes()).hexdigest()
        )
    assert not any("tf_model" in r for r in srv.requests)
    # a job that runs offline loads it from the cache, by id and by the pinned commit
    code = (
        "from optical_clir.models.encoder import _load_backbone; "
        f"m, t = _load_backbone({REPO_ID!r}); m2, _ = _load_backbone({REPO_ID!r}, {COMMIT!r}); "
        "print(type(m).__name__, len(t))"
    )
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(REPO / "src")}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("BertModel")
    # and one whose cache lacks it says what to do
    env["HF_HOME"] = str(tmp_path / "empty")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode != 0
    assert "InputError" in done.stderr and "snakemake download" in done.stderr
    assert REPO_ID in done.stderr


def test_opus_zip_and_url_are_fetched_once_under_a_lock(tmp_path):
    body = opus_zip([("hello", "habari")], "Toy", "en", "sw")
    with serve(Served({"/Toy/v1/en-sw.txt.zip": body, "/t.tsv": b"q\tp\tn\n"})) as srv:
        zip_path = tmp_path / "opus/Toy-v1.en-sw.txt.zip"
        spec = {"url": f"{srv.url}/Toy/v1/en-sw.txt.zip", "path": str(zip_path),
                "sha256": hashlib.sha256(body).hexdigest(), "md5": None}  # fmt: skip
        opus = Artifact("opus", "Toy-v1.en-sw", spec, ["languages.sw.bitext.source"])
        results: list[dict] = []
        lock = zip_path.with_name(zip_path.name + ".lock")
        with artifact_lock(lock, "test"):  # another workflow is fetching it
            worker = threading.Thread(target=lambda: results.append(fetch(opus)))
            worker.start()
            time.sleep(0.5)
            assert worker.is_alive() and not zip_path.exists()
        worker.join(30)
        assert results[0]["files"][0]["sha256"] == spec["sha256"]
        again = fetch(opus)  # present with the right checksum: no second download
        assert again["files"] == results[0]["files"]
        assert srv.requests.count("GET /Toy/v1/en-sw.txt.zip") == 1
        url = Artifact("url", "k", {"url": f"{srv.url}/t.tsv", "file": "t.tsv"}, [])
        cwd = Path.cwd()
        os.chdir(tmp_path)
        try:
            record = fetch(url)
        finally:
            os.chdir(cwd)
    assert (tmp_path / "results/downloads/files/k/t.tsv").read_bytes() == b"q\tp\tn\n"
    assert record["kind"] == "url" and record["files"][0]["size"] == 6


def test_ir_datasets_dataset_is_fetched(tmp_path, monkeypatch):
    import ir_datasets
    from ir_datasets.formats import GenericQuery, TrecQrels, TsvDocs, TsvQueries
    from ir_datasets.util import Cache, Download, RequestsDownload

    monkeypatch.setenv("IR_DATASETS_HOME", str(tmp_path / "irds"))
    base = tmp_path / "irds/optical-test"
    files = {"/docs.tsv": b"d1\tthe cat\nd2\tthe dog\n", "/queries.tsv": b"q1\tcat\n",
             "/qrels.txt": b"q1 0 d1 1\n"}  # fmt: skip
    with serve(Served(files)) as srv:

        def dlc(name: str) -> Cache:
            return Cache(Download([RequestsDownload(f"{srv.url}/{name}")]), base / name)

        dataset = ir_datasets.Dataset(
            TsvDocs(dlc("docs.tsv")),
            TsvQueries(dlc("queries.tsv"), GenericQuery),
            TrecQrels(dlc("qrels.txt"), {1: "relevant"}),
        )
        name = f"optical-test/toy-{os.getpid()}"
        ir_datasets.registry.register(name, dataset)
        record = fetch(Artifact("ir_datasets", "toy", {"dataset": name}, []))
    assert record["parts"] == ["docs", "queries", "qrels"]
    assert sorted(f["path"] for f in record["files"]) == ["docs.tsv", "qrels.txt", "queries.tsv"]
    marker = tmp_path / "toy.json"
    write_marker(record, marker)
    check_artifacts([marker])
    (base / "qrels.txt").unlink()
    with pytest.raises(InputError, match="snakemake download"):
        check_artifacts([marker])


def test_lock_file_and_its_provenance_line(tmp_path):
    markers = []
    for i, record in enumerate(
        [
            {"kind": "opus", "key": "b", "url": "u", "folder": "f", "files": []},
            {
                "kind": "huggingface",
                "key": "a",
                "repo_id": "org/m",
                "revision": COMMIT,
                "snapshot": "s",
                "files": [],
            },
        ]
    ):
        markers.append(tmp_path / f"{i}.json")
        write_marker(record, markers[-1])
    lock = write_lock(markers, tmp_path / "lock.json")
    assert [r["key"] for r in lock["artifacts"]] == ["a", "b"]
    line = lock_summary(tmp_path / "lock.json")
    assert f"org/m@{COMMIT[:12]}" in line and "1 opus" in line
    assert lock_summary(tmp_path / "missing.json") is None

    from optical_clir.evaluation.tables import provenance_lines

    lines = provenance_lines("h", "c", str(tmp_path / "lock.json"), "Dense retrieval: exact.")
    assert lines[-2:] == ["Dense retrieval: exact.", line]


# ------------------------------------------------------------------ the download target


def _download_config(workdir: Path, url: str) -> Path:
    """The mini config with a Hub backbone, an OPUS source and triples from ``url``."""
    cfg = yaml.safe_load((REPO / "tests/data/mini/config.yaml").read_text())
    cfg["teacher"]["model"]["backbone"] = REPO_ID
    cfg["languages"]["sw"]["bitext"]["source"] = {
        "kind": "opus", "corpus": "Toy", "version": "v1", "src_lang": "sw",
        "url": url + "/{corpus}/{version}/{l1}-{l2}.txt.zip",
    }  # fmt: skip
    cfg["mmarco"]["source"] = {"source": f"{url}/triples.tsv", "max_triples": 48}
    cfg["cache"] = {"hf_home": "cache/hf", "ir_datasets_home": "cache/irds", "offline_jobs": True}
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _snakemake(
    workdir: Path, config: Path, *targets: str, env: dict
) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(workdir), "--cores", "1", *targets, "--configfile", str(config)]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)


@pytest.fixture(scope="module")
def downloaded(tmp_path_factory):
    """`snakemake download` on the mini config, against the servers; then they stop."""
    root = tmp_path_factory.mktemp("download")
    hub = tiny_hub_repo(root / "repo")
    pairs = [
        line.split("\t") for line in (REPO / "data/demo/bitext/sw-en.tsv").read_text().splitlines()
    ]
    triples = "".join((REPO / "data/demo/train/triples.tsv").read_text().splitlines(True)[:60])
    # OPUS names the pair alphabetically (en-sw): the English side is the first language
    files = {"/Toy/v1/en-sw.txt.zip": opus_zip([(e, s) for s, e in pairs], "Toy", "en", "sw"),
             "/triples.tsv": triples.encode()}  # fmt: skip
    workdir = root / "work"
    workdir.mkdir()
    with serve(Served(files, hub)) as srv:
        config = _download_config(workdir, srv.url)
        env = {**os.environ, "HF_ENDPOINT": srv.url, "PYTHONPATH": str(REPO / "src")}
        first = _snakemake(workdir, config, "download", env=env)
        assert first.returncode == 0, first.stderr[-6000:]
        again = _snakemake(workdir, config, "download", env=env)
        assert again.returncode == 0, again.stderr[-4000:]
        requests = list(srv.requests)
    return workdir, config, env, first, again, requests


def test_download_target_writes_the_lock_file(downloaded):
    workdir, _, _, _, again, requests = downloaded
    lock = json.loads((workdir / "results/downloads/lock.json").read_text())
    kinds = {r["kind"]: r for r in lock["artifacts"]}
    assert set(kinds) == {"huggingface", "opus", "url"}
    assert kinds["huggingface"]["revision"] == COMMIT
    assert kinds["huggingface"]["config_keys"] == ["teacher.model.backbone"]
    assert Path(kinds["huggingface"]["snapshot"]).is_relative_to(workdir / "cache/hf")
    assert all(len(f["sha256"]) == 64 for r in lock["artifacts"] for f in r["files"])
    assert (workdir / "results/data/bitext/opus/Toy-v1.en-sw.txt.zip").is_file()
    assert "Nothing to be done" in again.stdout + again.stderr
    assert sum(r.startswith("GET /Toy/") for r in requests) == 1


@pytest.mark.slow
def test_jobs_run_offline_on_what_was_downloaded(downloaded):
    """With the servers gone, the triples, the OPUS bitext and the Hub backbone come from
    the caches (the teacher trains on the downloaded backbone)."""
    workdir, config, env, *_ = downloaded
    env = {k: v for k, v in env.items() if k != "HF_ENDPOINT"}
    done = _snakemake(workdir, config, "results/models/teacher", "results/data/bitext/sw", env=env)
    assert done.returncode == 0, done.stderr[-6000:]
    stats = json.loads((workdir / "results/data/bitext/sw/stats.json").read_text())
    assert stats["source"]["kind"] == "opus" and stats["source"]["path"].endswith("en-sw.txt.zip")
    assert len((workdir / "results/data/mmarco/triples.tsv").read_text().splitlines()) == 48
    card = (workdir / "results/models/teacher/optical_encoder.json").read_text()
    assert REPO_ID in card
    # a deleted cache file stops the job that needs it, naming it and `snakemake download`
    marker = next((workdir / "results/downloads/artifacts/opus").glob("*.json"))
    (workdir / json.loads(marker.read_text())["folder"] / "Toy-v1.en-sw.txt.zip").unlink()
    done = _snakemake(
        workdir, config, "results/data/bitext/sw", "--forcerun", "prepare_bitext", env=env
    )
    assert done.returncode != 0
    log = (workdir / "results/logs/prepare_bitext/sw.log").read_text()
    assert "snakemake download" in log and "Toy-v1.en-sw.txt.zip" in log
