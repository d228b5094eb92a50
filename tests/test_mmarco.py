"""Training triples: local TSV, HTTP (with retries), HF datasets from local JSON, ir_datasets."""

from __future__ import annotations

import gzip
import http.server
import json
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from optical_clir.data.mmarco import (
    TriplesFile,
    detect_kind,
    iter_triples,
    prepare_triples,
)
from optical_clir.errors import ConfigError, InputError

TRIPLES = [(f"query {i}", f"positive passage {i}", f"negative passage {i}") for i in range(10)]
TSV = "".join("\t".join(t) + "\n" for t in TRIPLES)


@pytest.fixture()
def tsv(tmp_path: Path) -> Path:
    path = tmp_path / "triples.tsv"
    path.write_text(TSV, encoding="utf-8")
    return path


def test_local_tsv_and_cap(tsv: Path) -> None:
    assert list(iter_triples({"source": str(tsv)})) == TRIPLES
    assert list(iter_triples({"source": str(tsv), "max_triples": 3})) == TRIPLES[:3]
    assert list(iter_triples({"source": str(tsv), "max_triples": 0})) == []


def test_gzip_tsv(tmp_path: Path) -> None:
    path = tmp_path / "triples.tsv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write(TSV)
    assert list(iter_triples({"source": str(path), "kind": "tsv"})) == TRIPLES


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ("only\ttwo\n", "3 tab-separated fields"),
        ("a\tb\tc\td\n", "got 4"),
        ("q\t \tneg\n", "empty positive"),
        ("\n", "got 1"),
    ],
)
def test_malformed_lines(tmp_path: Path, bad: str, problem: str) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text("q\tp\tn\nq2\tp2\tn2\n" + bad, encoding="utf-8")
    with pytest.raises(InputError, match=problem) as err:
        list(iter_triples({"source": str(path)}))
    assert err.value.line == 3 and err.value.path == str(path)


def test_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bad.tsv"
    path.write_bytes(b"q\tp\tn\n\xff\tp\tn\n")
    with pytest.raises(InputError, match="UTF-8") as err:
        list(iter_triples({"source": str(path)}))
    assert err.value.line == 2


def test_prepare_triples_atomic(tsv: Path, tmp_path: Path) -> None:
    out = tmp_path / "cache" / "triples.tsv"
    assert prepare_triples({"source": str(tsv), "max_triples": 4}, out) == 4
    assert out.read_text().splitlines() == ["\t".join(t) for t in TRIPLES[:4]]
    assert [p.name for p in out.parent.iterdir()] == ["triples.tsv"]
    # a failing source leaves neither a partial file nor a temp file
    bad = tmp_path / "bad.tsv"
    bad.write_text("q\tp\tn\nbroken\n")
    out2 = tmp_path / "cache" / "other.tsv"
    with pytest.raises(InputError):
        prepare_triples({"source": str(bad)}, out2)
    assert [p.name for p in out.parent.iterdir()] == ["triples.tsv"]


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"triples\.source"):
        detect_kind(str(tmp_path / "missing.tsv"))
    with pytest.raises(ConfigError, match=r"triples\.maxtriples"):
        list(iter_triples({"source": "x", "maxtriples": 3}))
    with pytest.raises(ConfigError, match=r"triples\.kind"):
        list(iter_triples({"source": "x", "kind": "ftp"}))
    assert detect_kind("https://example.org/t.tsv") == "url"
    assert detect_kind("hf:org/name") == "hf"
    assert detect_kind("irds:mmarco/v2/en/train") == "ir_datasets"


# ------------------------------------------------------------------------------ HTTP


class _Handler(http.server.BaseHTTPRequestHandler):
    fail_first: int = 0
    requests: int = 0
    body: bytes = b""

    def do_GET(self) -> None:
        type(self).requests += 1
        if self.path.startswith("/missing"):
            self.send_error(404)
            return
        if type(self).requests <= type(self).fail_first:
            self.send_error(503)
            return
        body = gzip.compress(self.body) if self.path.endswith(".gz") else self.body
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def server() -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("H", (_Handler,), {"fail_first": 0, "requests": 0, "body": TSV.encode()})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_http_url(server: tuple[str, type[_Handler]], tmp_path: Path) -> None:
    base, _ = server
    out = tmp_path / "triples.tsv"
    assert prepare_triples({"source": f"{base}/triples.tsv", "max_triples": 7}, out) == 7
    assert out.read_text().splitlines() == ["\t".join(t) for t in TRIPLES[:7]]
    assert list(iter_triples({"source": f"{base}/triples.tsv.gz"})) == TRIPLES


def test_http_retries(server: tuple[str, type[_Handler]]) -> None:
    base, handler = server
    handler.fail_first = 2
    cfg = {"source": f"{base}/t.tsv", "backoff_s": 0.01, "retries": 3}
    assert list(iter_triples(cfg)) == TRIPLES
    assert handler.requests == 3
    handler.requests, handler.fail_first = 0, 10
    with pytest.raises(InputError, match="after 1 retries"):
        list(iter_triples({**cfg, "retries": 1}))


def test_http_not_found(server: tuple[str, type[_Handler]]) -> None:
    base, _ = server
    with pytest.raises(InputError, match="HTTP 404"):
        list(iter_triples({"source": f"{base}/missing.tsv"}))


# ------------------------------------------------------------------------------ HF, ir_datasets


def test_hf_datasets_local_json(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    with open(path, "w") as fh:
        for q, p, n in TRIPLES:
            fh.write(json.dumps({"q": q, "pos": p, "neg": n, "extra": 1}) + "\n")
    cfg = {
        "source": "hf:json",
        "hf_kwargs": {"data_files": {"train": str(path)}},
        "columns": {"query": "q", "positive": "pos", "negative": "neg"},
        "max_triples": 5,
    }
    assert list(iter_triples(cfg)) == TRIPLES[:5]
    with pytest.raises(InputError, match="no column"):
        list(iter_triples({**cfg, "columns": {"query": "x", "positive": "p", "negative": "n"}}))


def test_ir_datasets_join(monkeypatch: pytest.MonkeyPatch) -> None:
    ns = types.SimpleNamespace
    docs = {"d1": ns(text="pos one"), "d2": ns(text="neg one"), "d3": ns(text="pos two")}

    class FakeDataset:
        def queries_iter(self):
            return iter([ns(query_id="q1", text="first"), ns(query_id="q2", text="second")])

        def docs_store(self):
            return ns(get=docs.__getitem__)

        def docpairs_iter(self):
            return iter(
                [
                    ns(query_id="q1", doc_id_a="d1", doc_id_b="d2"),
                    ns(query_id="q2", doc_id_a="d3", doc_id_b="d2"),
                ]
            )

    loaded = []
    fake = types.ModuleType("ir_datasets")
    fake.load = lambda name: loaded.append(name) or FakeDataset()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ir_datasets", fake)
    got = list(iter_triples({"source": "irds:mmarco/v2/en/train"}))
    assert got == [("first", "pos one", "neg one"), ("second", "pos two", "neg one")]
    assert loaded == ["mmarco/v2/en/train"]


def test_ir_datasets_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ir_datasets", None)
    with pytest.raises(ConfigError, match="ir_datasets is not installed"):
        list(iter_triples({"source": "irds:mmarco/v2/en/train"}))


def test_triples_file_random_access(tsv: Path) -> None:
    data = TriplesFile(tsv)
    assert len(data) == 10
    assert data[3] == TRIPLES[3] and data[-1] == TRIPLES[-1] and data[0] == TRIPLES[0]
    assert len(TriplesFile(tsv, max_triples=4)) == 4
    with pytest.raises(IndexError):
        data[10]
