"""Small file helpers used at the I/O edges: atomic writes and checked text reading."""

from __future__ import annotations

import codecs
import contextlib
import gzip
import hashlib
import logging
import os
import re
import shutil
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from optical_clir.errors import InputError

logger = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"
# What tempfile.mkstemp / mkdtemp put between the prefix and the suffix.
_RANDOM_PART = r"[A-Za-z0-9_]{8}"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class TextReader:
    """A UTF-8 text file opened by :func:`open_text`: iterate over its lines, ``readline()``
    or ``read()``. Bytes that are not UTF-8 and a damaged gzip stream are an
    :class:`InputError` naming the file and the line; a UTF-8 byte order mark is dropped and
    ``\\r\\n`` line ends read as ``\\n``."""

    def __init__(self, path: Path, raw: BinaryIO) -> None:
        self.path = path
        self._raw = raw
        self.line = 0  # lines read so far

    def readline(self) -> str:
        """The next line with its ``\\n`` ("" at the end of the file)."""
        try:
            data = self._raw.readline()
        except (EOFError, zlib.error, gzip.BadGzipFile) as error:
            raise self._gzip_error(error) from None
        if not data:
            return ""
        self.line += 1
        if self.line == 1 and data.startswith(codecs.BOM_UTF8):
            data = data[len(codecs.BOM_UTF8) :]
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            column = len(data[: error.start].decode("utf-8", errors="replace")) + 1
            raise InputError(
                self.path,
                f"not valid UTF-8: byte 0x{data[error.start]:02x} at column {column} "
                "(save the file as UTF-8)",
                line=self.line,
            ) from None
        return text[:-2] + "\n" if text.endswith("\r\n") else text

    def _gzip_error(self, error: BaseException) -> InputError:
        if isinstance(error, EOFError):
            problem = f"truncated gzip file: the compressed data stops after line {self.line}"
        else:
            problem = f"damaged gzip data ({error})"
        return InputError(self.path, problem, line=self.line + 1)

    def __iter__(self) -> Iterator[str]:
        while line := self.readline():
            yield line

    def read(self) -> str:
        """The rest of the file."""
        return "".join(self)

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> TextReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_text(path: str | Path) -> TextReader:
    """Open a UTF-8 text file for reading, gunzipping ``.gz`` files (see :class:`TextReader`).

    A missing file, a ``.gz`` name on a file that is not gzip-compressed, and a compressed
    file without the ``.gz`` name are InputErrors naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file does not exist")
    if path.is_dir():
        raise InputError(path, "is a folder, not a file")
    with open(path, "rb") as probe:
        magic = probe.read(2)
    gzipped = path.suffix == ".gz" and magic != b""  # an empty file reads as empty
    if gzipped and magic != GZIP_MAGIC:
        raise InputError(path, "named .gz but not gzip-compressed (rename it or compress it)")
    if not gzipped and magic == GZIP_MAGIC:
        raise InputError(path, "gzip-compressed but not named .gz (add the .gz suffix)")
    # The reader owns the handle and closes it (``with open_text(...)``).
    raw: BinaryIO = gzip.open(path, "rb") if gzipped else open(path, "rb")  # type: ignore[assignment]  # noqa: SIM115
    return TextReader(path, raw)


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (what a training fingerprint records of its inputs)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def tree_sha256(folder: str | Path, skip: Iterable[str] = ()) -> str:
    """Hex SHA-256 of every file under ``folder`` (relative names and contents, in sorted
    order), leaving out the top-level names in ``skip`` (e.g. a model card)."""
    folder = Path(folder)
    skipped = set(skip)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder)
        if rel.parts[0] in skipped:
            continue
        digest.update(f"{rel.as_posix()}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()


def remove_stale_temporaries(folder: str | Path, names: Iterable[str] | None = None) -> list[Path]:
    """Delete what :func:`atomic_path` and :func:`atomic_dir` leave in ``folder`` when a
    process is killed mid-write (``.<name>.XXXXXXXX.tmp`` files, ``.<name>.XXXXXXXX``
    folders), for the given target ``names`` only (every target when None). Returns them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    if names is None:
        target = r".+"
    else:
        wanted = [re.escape(n) for n in names]
        if not wanted:
            return []
        target = "(?:" + "|".join(wanted) + ")"
    file_re = re.compile(rf"\.{target}\.{_RANDOM_PART}\.tmp")
    dir_re = re.compile(rf"\.{target}\.{_RANDOM_PART}")
    removed = []
    for entry in sorted(folder.iterdir()):
        if entry.is_dir() and not entry.is_symlink() and dir_re.fullmatch(entry.name):
            shutil.rmtree(entry, ignore_errors=True)
        elif entry.is_file() and file_re.fullmatch(entry.name):
            entry.unlink(missing_ok=True)
        else:
            continue
        removed.append(entry)
        logger.info("removed %s, left by an interrupted write", entry)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` and move it into place only if the block succeeds.

    A crash or an exception leaves any earlier ``path`` untouched, so nothing already
    produced is lost or half-written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates the file as 0600; give the result the usual permissions instead.
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``path`` and rename it to ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def link_tree(source: str | Path, target: str | Path) -> Path:
    """A copy of the folder ``source`` at ``target`` made of hard links (plain copies where
    the file system refuses links), built beside ``target`` and renamed into place."""
    source = Path(source)
    with atomic_dir(target) as tmp:
        for path in sorted(source.rglob("*")):
            dest = tmp / path.relative_to(source)
            if path.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, dest)
            except OSError:
                shutil.copy2(path, dest)
    return Path(target)
