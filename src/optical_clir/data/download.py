"""Resumable, retried, checksum-verified file downloads (HTTP(S), ``file://`` and local paths).

:func:`download` streams a URL into ``dest + ".part"``, resumes a partial ``.part`` with a
``Range`` request (restarting cleanly when the server answers 200 instead of 206), retries
transient failures (connection errors, timeouts, HTTP 5xx/429, truncated bodies) with
exponential backoff, verifies the SHA-256 and/or MD5 sum when one is given, and only then
renames the file atomically into ``dest``. A ``dest`` already present is reused when its
checksum matches (or when no checksum is given), so a workflow rerun downloads nothing.

Two processes must not download to the same ``dest`` at the same time (they would share the
``.part`` file); Snakemake's one-job-per-output rule guarantees that in the workflow.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

import requests
from tqdm import tqdm

from optical_clir.errors import InputError

logger = logging.getLogger(__name__)

__all__ = ["ChecksumError", "DownloadError", "download", "file_checksum"]

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


class DownloadError(InputError):
    """A download that failed for good (after the retries, or on a permanent HTTP error)."""


class ChecksumError(DownloadError):
    """The downloaded bytes do not have the published checksum."""


class _Transient(Exception):
    """A failure worth retrying (network hiccup, 5xx, truncated body)."""


# ChunkedEncodingError is what requests raises when the connection drops mid-body
_TRANSIENT = (
    _Transient,
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


def file_checksum(path: str | Path, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    """Hex digest of a file's bytes with ``algorithm`` (any name ``hashlib.new`` accepts)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _expected_sums(sha256: str | None, md5: str | None) -> dict[str, str]:
    """The checksums to verify, lower-cased, keyed by hashlib algorithm name."""
    sums = {}
    if sha256:
        sums["sha256"] = sha256.strip().lower()
    if md5:
        sums["md5"] = md5.strip().lower()
    return sums


def _mismatches(path: Path, sums: dict[str, str]) -> list[tuple[str, str, str]]:
    """``(algorithm, expected, actual)`` for every checksum of ``path`` that does not match."""
    bad = []
    for algorithm, expected in sums.items():
        actual = file_checksum(path, algorithm)
        if actual != expected:
            bad.append((algorithm, expected, actual))
    return bad


def _local_source(url: str) -> Path | None:
    """The local path behind a ``file://`` URL or a plain path; None for a network URL."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(url2pathname(unquote(parsed.path)))
    if parsed.scheme in ("http", "https"):
        return None
    if parsed.scheme and len(parsed.scheme) > 1:  # a one-letter scheme is a Windows drive
        raise DownloadError(url, f"unsupported URL scheme '{parsed.scheme}' (http, https, file)")
    return Path(url)


def _show_progress(progress: bool | None) -> bool:
    """Progress bars by default only on a terminal (they would clutter rule logs)."""
    return sys.stderr.isatty() if progress is None else progress


def download(
    url: str,
    dest: str | Path,
    sha256: str | None = None,
    md5: str | None = None,
    retries: int = 3,
    backoff: float = 1.0,
    timeout: float = 60,
    chunk: int = 1 << 20,
    progress: bool | None = None,
) -> Path:
    """Fetch ``url`` into ``dest`` (resumable, retried, verified, atomic) and return ``dest``.

    ``retries`` is the number of retries after the first try; the n-th retry waits
    ``backoff * 2**(n-1)`` seconds. A checksum mismatch raises :class:`ChecksumError` and
    leaves neither ``dest`` nor the ``.part`` file behind. ``progress``: show a tqdm bar
    (None: only when stderr is a terminal).
    """
    dest = Path(dest)
    sums = _expected_sums(sha256, md5)
    if dest.exists():
        if not sums:
            logger.info("%s: already present, not downloading %s again", dest, url)
            return dest
        bad = _mismatches(dest, sums)
        if not bad:
            logger.info("%s: already present with the expected checksum, not downloading", dest)
            return dest
        logger.warning(
            "%s: present but its %s is %s, not %s; downloading %s again",
            dest,
            bad[0][0],
            bad[0][2],
            bad[0][1],
            url,
        )
        dest.unlink()

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    local = _local_source(url)
    if local is not None:
        if not local.is_file():
            raise DownloadError(url, "local source file does not exist")
        logger.info("copying %s -> %s", local, dest)
        shutil.copyfile(local, part)
    else:
        _fetch_http(url, part, retries, backoff, timeout, chunk, _show_progress(progress))

    bad = _mismatches(part, sums)
    if bad:
        part.unlink()
        detail = "; ".join(f"{a} expected {e}, got {g}" for a, e, g in bad)
        raise ChecksumError(url, f"checksum mismatch ({detail}); the downloaded file was removed")
    if sums:
        logger.info("%s: checksum verified (%s)", url, ", ".join(sums))
    os.replace(part, dest)
    logger.info("%s: saved as %s (%d bytes)", url, dest, dest.stat().st_size)
    return dest


def _fetch_http(
    url: str, part: Path, retries: int, backoff: float, timeout: float, chunk: int, bar: bool
) -> None:
    """Download ``url`` into ``part`` completely, resuming and retrying as needed."""
    failures = 0
    with requests.Session() as session:
        while True:
            try:
                _fetch_once(session, url, part, timeout, chunk, bar)
                return
            except _TRANSIENT as error:
                failures += 1
                if failures > retries:
                    raise DownloadError(
                        url, f"download failed after {retries} retries: {error}"
                    ) from error
                wait = backoff * 2 ** (failures - 1)
                have = part.stat().st_size if part.exists() else 0
                logger.warning(
                    "%s: %s; retry %d/%d in %.1f s (resuming after %d bytes)",
                    url,
                    error,
                    failures,
                    retries,
                    wait,
                    have,
                )
                time.sleep(wait)
            except requests.RequestException as error:  # invalid URL, too many redirects, ...
                raise DownloadError(url, f"download failed: {error}") from error


def _fetch_once(
    session: requests.Session, url: str, part: Path, timeout: float, chunk: int, bar: bool
) -> None:
    """One request: append to (or restart) ``part``; raise _Transient if it stays incomplete."""
    have = part.stat().st_size if part.exists() else 0
    # identity: the byte counts (Content-Length, Range) must be those of the file itself
    headers = {"Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
        logger.info("%s: resuming after %d bytes already in %s", url, have, part)
    else:
        logger.info("%s: downloading to %s", url, part)
    with session.get(url, headers=headers, stream=True, timeout=timeout) as response:
        status = response.status_code
        if status == 416 and have:
            # the .part is as long as (or longer than) the file: start again from nothing
            logger.warning("%s: server refused the range (416); restarting from scratch", url)
            part.unlink()
            raise _Transient("range not satisfiable for the partial file")
        if status == 429 or status >= 500:
            raise _Transient(f"HTTP {status} {response.reason}")
        if status >= 400:
            raise DownloadError(url, f"HTTP {status} {response.reason}")
        length = response.headers.get("Content-Length")
        total: int | None = None
        mode = "wb"
        if status == 206 and have:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if match is None or int(match.group(1)) != have:
                logger.warning(
                    "%s: unexpected Content-Range %r for a resume from byte %d; restarting",
                    url,
                    response.headers.get("Content-Range"),
                    have,
                )
                part.unlink()
                raise _Transient("server answered a different range")
            mode = "ab"
            if match.group(3) != "*":
                total = int(match.group(3))
            elif length is not None:
                total = have + int(length)
        else:
            if have:
                logger.warning(
                    "%s: server ignored the Range request (HTTP %d); restarting from byte 0",
                    url,
                    status,
                )
            have = 0
            total = int(length) if length is not None else None
        # keep the bytes of a cut-short body (urllib3 would discard a partial last read); the
        # size check below turns the truncation into a retry that resumes after them
        if hasattr(response.raw, "enforce_content_length"):
            response.raw.enforce_content_length = False
        size = have
        with (
            open(part, mode) as f,
            tqdm(
                total=total,
                initial=have,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=Path(urlparse(url).path).name or url,
                disable=not bar,
            ) as progress,
        ):
            for block in response.iter_content(chunk_size=chunk):
                f.write(block)
                size += len(block)
                progress.update(len(block))
    if total is not None and size != total:
        raise _Transient(f"body truncated at {size} of {total} bytes")
