"""Small I/O helpers for the translate stage: strict TSV readers and atomic writers."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from optical_clir.errors import InputError
from optical_clir.io import atomic_path


def read_id_tsv(
    path: str | Path, n_fields: int | tuple[int, ...], what: str = "line"
) -> list[tuple[int, list[str]]]:
    """Read a header-less TSV whose first field is a unique, non-empty id.

    Returns `(line_number, fields)` pairs (1-based line numbers). Any line with the wrong
    number of tab-separated fields, an empty id or a repeated id raises `InputError` with the
    file and line, so a user can fix the file instead of getting a silently shorter output.
    """
    path = Path(path)
    allowed = (n_fields,) if isinstance(n_fields, int) else tuple(n_fields)
    if not path.is_file():
        raise InputError(path, "file does not exist")
    rows: list[tuple[int, list[str]]] = []
    first_seen: dict[str, int] = {}
    # utf-8-sig drops a byte-order mark; universal newlines turn CRLF into LF.
    with path.open(encoding="utf-8-sig") as handle:
        for n, raw in enumerate(handle, start=1):
            line = raw.rstrip("\n").rstrip("\r")
            if "\t" not in line:
                shown = line if len(line) <= 60 else line[:57] + "..."
                raise InputError(
                    path,
                    f"malformed {what}: expected {' or '.join(map(str, allowed))} "
                    f"tab-separated fields (id<TAB>...), found no tab in {shown!r}",
                    line=n,
                )
            fields = line.split("\t")
            if len(fields) not in allowed:
                raise InputError(
                    path,
                    f"malformed {what}: expected {' or '.join(map(str, allowed))} "
                    f"tab-separated fields, found {len(fields)}",
                    line=n,
                )
            qid = fields[0].strip()
            if not qid:
                raise InputError(path, f"malformed {what}: empty id", line=n)
            if qid in first_seen:
                raise InputError(
                    path,
                    f"duplicate id {qid!r} (first seen on line {first_seen[qid]})",
                    line=n,
                )
            first_seen[qid] = n
            fields[0] = qid
            rows.append((n, fields))
    return rows


def clean_field(text: str) -> str:
    """Make a string safe for one TSV field: tabs and line breaks become single spaces."""
    return " ".join(text.replace("\t", " ").replace("\r", " ").replace("\n", " ").split())


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)` on a temporary file next to `path`, then rename it into place."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 text atomically (see `optical_clir.io.atomic_path`)."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_tsv(path: str | Path, rows: Iterable[Iterable[str]]) -> Path:
    """Write header-less TSV rows atomically; fields are cleaned with `clean_field`."""
    lines = ["\t".join(clean_field(f) for f in row) for row in rows]
    return atomic_write_text(path, "".join(line + "\n" for line in lines))
