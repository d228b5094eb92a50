"""Downloads against a local HTTP server that can fail, truncate bodies or ignore Range."""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from optical_clir.data import download as dl
from optical_clir.data.download import ChecksumError, DownloadError, download
from optical_clir.errors import InputError

DATA = bytes(range(256)) * 40  # 10 240 bytes


@dataclass
class FileServer:
    """What the test server serves and how it misbehaves; ``requests`` records every request."""

    files: dict[str, bytes]
    fail_first: int = 0  # answer 503 to this many requests first
    truncate_first: int = 0  # then cut this many bodies short ...
    truncate_at: int = 1000  # ... after this many bytes
    ignore_range: bool = False  # answer 200 with the whole file even to a Range request
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(state: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep pytest output quiet
            pass

        def do_GET(self) -> None:
            with state.lock:
                state.requests.append((self.path, self.headers.get("Range")))
                n = len(state.requests)
            if n <= state.fail_first:
                self.send_error(503, "try again")
                return
            body = state.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            start, status = 0, 200
            match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
            if match and not state.ignore_range:
                start = int(match.group(1))
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
            payload = body[start:]
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.end_headers()
            if n <= state.fail_first + state.truncate_first:
                payload = payload[: state.truncate_at]
            self.wfile.write(payload)
            self.wfile.flush()

    return Handler


@contextlib.contextmanager
def serve(files: dict[str, bytes], **behaviour) -> Iterator[FileServer]:
    """Run a threaded HTTP server on 127.0.0.1 (ephemeral port) serving ``files`` by path."""
    state = FileServer(files=files, **behaviour)
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


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def no_sleep(monkeypatch) -> list[float]:
    """Record backoff waits instead of sleeping."""
    waits: list[float] = []
    monkeypatch.setattr(dl.time, "sleep", waits.append)
    return waits


def test_plain_download_verifies_and_leaves_no_part(tmp_path: Path) -> None:
    with serve({"/f.bin": DATA}) as srv:
        out = download(
            f"{srv.url}/f.bin", tmp_path / "sub" / "f.bin", sha256=sha(DATA), md5=None, chunk=999
        )
    assert out.read_bytes() == DATA
    assert not (tmp_path / "sub" / "f.bin.part").exists()
    assert srv.requests == [("/f.bin", None)]


def test_resume_requests_a_range_and_ends_with_the_right_bytes(tmp_path: Path) -> None:
    dest = tmp_path / "f.bin"
    (tmp_path / "f.bin.part").write_bytes(DATA[:4000])
    with serve({"/f.bin": DATA}) as srv:
        download(f"{srv.url}/f.bin", dest, md5=hashlib.md5(DATA).hexdigest())
    assert srv.requests == [("/f.bin", "bytes=4000-")]
    assert dest.read_bytes() == DATA


def test_server_ignoring_range_restarts_cleanly(tmp_path: Path) -> None:
    dest = tmp_path / "f.bin"
    (tmp_path / "f.bin.part").write_bytes(b"garbage that is not the file's start")
    with serve({"/f.bin": DATA}, ignore_range=True) as srv:
        download(f"{srv.url}/f.bin", dest, sha256=sha(DATA))
    assert srv.requests[0][1] is not None  # a Range was asked for ...
    assert dest.read_bytes() == DATA  # ... and the 200 body replaced the partial file


def test_part_longer_than_file_416_restarts(tmp_path: Path, no_sleep) -> None:
    dest = tmp_path / "f.bin"
    (tmp_path / "f.bin.part").write_bytes(DATA + b"extra")
    with serve({"/f.bin": DATA}) as srv:
        download(f"{srv.url}/f.bin", dest, sha256=sha(DATA), backoff=0)
    assert [r for _, r in srv.requests] == [f"bytes={len(DATA) + 5}-", None]
    assert dest.read_bytes() == DATA


def test_retries_after_server_errors_with_exponential_backoff(tmp_path: Path, no_sleep) -> None:
    dest = tmp_path / "f.bin"
    with serve({"/f.bin": DATA}, fail_first=2) as srv:
        download(f"{srv.url}/f.bin", dest, sha256=sha(DATA), retries=3, backoff=0.5)
    assert len(srv.requests) == 3
    assert no_sleep == [0.5, 1.0]
    assert dest.read_bytes() == DATA


def test_gives_up_after_the_retries(tmp_path: Path, no_sleep) -> None:
    dest = tmp_path / "f.bin"
    with serve({"/f.bin": DATA}, fail_first=10) as srv, pytest.raises(DownloadError) as err:
        download(f"{srv.url}/f.bin", dest, retries=2)
    assert len(srv.requests) == 3
    assert "after 2 retries" in str(err.value) and srv.url in str(err.value)
    assert not dest.exists()


def test_truncated_body_is_resumed(tmp_path: Path, no_sleep) -> None:
    dest = tmp_path / "f.bin"
    with serve({"/f.bin": DATA}, truncate_first=2, truncate_at=3000) as srv:
        download(f"{srv.url}/f.bin", dest, sha256=sha(DATA))
    assert [r for _, r in srv.requests] == [None, "bytes=3000-", "bytes=6000-"]
    assert dest.read_bytes() == DATA


def test_not_found_is_not_retried(tmp_path: Path, no_sleep) -> None:
    with serve({}) as srv, pytest.raises(DownloadError, match="HTTP 404"):
        download(f"{srv.url}/missing.zip", tmp_path / "m.zip")
    assert len(srv.requests) == 1 and no_sleep == []


def test_bad_checksum_is_an_error_and_leaves_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "f.bin"
    wrong = "0" * 64
    with serve({"/f.bin": DATA}) as srv, pytest.raises(ChecksumError) as err:
        download(f"{srv.url}/f.bin", dest, sha256=wrong)
    message = str(err.value)
    assert f"{srv.url}/f.bin" in message and wrong in message and sha(DATA) in message
    assert isinstance(err.value, InputError)
    assert list(tmp_path.iterdir()) == []


def test_cached_file_is_not_downloaded_again(tmp_path: Path) -> None:
    dest = tmp_path / "f.bin"
    with serve({"/f.bin": DATA}) as srv:
        download(f"{srv.url}/f.bin", dest, sha256=sha(DATA))
        download(f"{srv.url}/f.bin", dest, sha256=sha(DATA))
        download(f"{srv.url}/f.bin", dest)  # no checksum: presence is enough
    assert len(srv.requests) == 1


def test_cached_file_with_wrong_checksum_is_replaced(tmp_path: Path) -> None:
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"stale")
    with serve({"/f.bin": DATA}) as srv:
        download(f"{srv.url}/f.bin", dest, sha256=sha(DATA))
    assert len(srv.requests) == 1
    assert dest.read_bytes() == DATA


def test_file_urls_and_local_paths_are_copied(tmp_path: Path) -> None:
    src = tmp_path / "src dir" / "a.bin"
    src.parent.mkdir()
    src.write_bytes(DATA)
    download(src.as_uri(), tmp_path / "out1.bin", sha256=sha(DATA))
    download(str(src), tmp_path / "out2.bin")
    assert (tmp_path / "out1.bin").read_bytes() == DATA == (tmp_path / "out2.bin").read_bytes()
    with pytest.raises(ChecksumError):
        download(str(src), tmp_path / "out3.bin", md5="0" * 32)
    assert not (tmp_path / "out3.bin").exists() and not (tmp_path / "out3.bin.part").exists()
    with pytest.raises(DownloadError, match="does not exist"):
        download(str(tmp_path / "nope.bin"), tmp_path / "out4.bin")
