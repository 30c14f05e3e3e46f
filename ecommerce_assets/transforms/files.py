"""Checks every landed text file goes through before the engine reads it, and the CSV we write for people.

A landed CSV is read by the engine only after ``open_csv`` has checked it in one streaming pass: a
regular file (never a symbolic link), not empty, readable (a corrupt ``.gz`` too), UTF-8 or ISO-8859-1
(Windows-1252 included: its bytes 0x80-0x9f, which the engine's ISO-8859-1 reader refuses, are read
through ``engine_file``), no line longer than ``MAX_LINE_BYTES``, and a header with the required columns.
Any problem is a ``BadFileError`` naming the file and a rule, so the caller quarantines that file and the
others go on.

``csv_for_people`` writes a table as CSV for a spreadsheet user, with text cells that a spreadsheet
would run as a formula neutralised (OWASP "CSV injection").
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import re
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

CHUNK = 1 << 20
# The longest line a landed CSV may have (1 MiB; a real order line is ~100 bytes). DuckDB's reader refuses
# lines over its ``max_line_size`` (2,000,000 bytes by default) and fails the whole statement; the readers
# pass ``ENGINE_MAX_LINE_SIZE``, which leaves room for ISO-8859-1 text that doubles in size as UTF-8.
# Equal to CHUNK, so a line inside one chunk can never exceed it (``_scan`` relies on that).
MAX_LINE_BYTES = CHUNK
ENGINE_MAX_LINE_SIZE = 4 * MAX_LINE_BYTES


class BadFileError(ValueError):
    """A landed file that cannot be read as the source's format; the message names file and problem."""

    def __init__(self, file: str, problem: str, rule: str):
        super().__init__(f"{file}: {problem}")
        self.file = file
        self.problem = problem
        self.rule = rule


_C1_BYTES = re.compile(rb"[\x80-\x9f]")
# Windows-1252's characters for the bytes 0x80-0x9f (the five it leaves undefined stay ISO-8859-1's C1 controls)
_C1_TO_1252 = {
    b: bytes([b]).decode("cp1252") for b in range(0x80, 0xA0) if b not in (0x81, 0x8D, 0x8F, 0x90, 0x9D)
}


@dataclass(frozen=True)
class TextFile:
    path: Path
    encoding: str  # "utf-8" or "latin-1" (ISO-8859-1)
    header: list[str]
    # ISO-8859-1 with bytes 0x80-0x9f: Windows-1252 text, which the engine reads only through ``engine_file``
    windows_1252: bool = False


def _open_bytes(path: Path) -> io.BufferedIOBase:
    """The file's bytes, decompressed when it is gzip (``.gz``); DuckDB reads such files natively."""
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else path.open("rb")  # type: ignore[return-value]


def _scan(path: Path, max_line_bytes: int | None) -> tuple[str, bool]:
    """One streaming pass: the encoding (see ``detect_encoding``) and, when ``max_line_bytes`` is given, a
    ``BadFileError`` (``line_too_long``) as soon as a line exceeds it. A chunk (1 MiB) is shorter than the
    limit, so a longer line always spans chunks: only the run since the last newline needs counting.
    Also whether a file that is not UTF-8 has bytes 0x80-0x9f (Windows-1252 text)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    utf8 = True
    c1 = False  # a byte 0x80-0x9f: in a file that is not UTF-8, Windows-1252 text
    run = 0  # bytes since the last newline
    with _open_bytes(path) as fh:
        first = True
        while chunk := fh.read(CHUNK):
            if first and chunk[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in chunk:
                raise BadFileError(
                    str(path), "unknown encoding: the file has NUL bytes or a UTF-16/32 byte-order mark "
                    "(accepted: UTF-8 or ISO-8859-1 text)", "unknown_encoding"
                )
            first = False
            if max_line_bytes is not None:
                nl = chunk.find(b"\n")
                if nl < 0:
                    run += len(chunk)
                    longest = run
                else:  # the line ending at the first newline, then the unfinished last line
                    longest = run + nl
                    run = len(chunk) - chunk.rfind(b"\n") - 1
                    longest = max(longest, run)
                if longest > max_line_bytes:
                    raise BadFileError(
                        str(path), f"a line is longer than {max_line_bytes:,} bytes (the longest line a landed "
                        "CSV may have); is it a CSV file with line breaks?", "line_too_long",
                    )
            if utf8:
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError:
                    utf8 = False
            c1 = c1 or bool(_C1_BYTES.search(chunk))
    return ("utf-8", False) if utf8 else ("latin-1", c1)


def detect_encoding(path: Path) -> str:
    """``utf-8`` when every byte decodes as UTF-8, else ``latin-1``; refuse binary and UTF-16/32 files."""
    return _scan(path, None)[0]


@contextmanager
def engine_file(tf: TextFile) -> Iterator[tuple[Path, str]]:
    """The file and the encoding to hand to the engine: the file itself when it is UTF-8 or ISO-8859-1;
    for Windows-1252 (which the engine's ISO-8859-1 reader refuses) a temporary UTF-8 copy, removed on exit."""
    if not tf.windows_1252:
        yield tf.path, tf.encoding
        return
    with tempfile.TemporaryDirectory(prefix="ecommerce-1252-") as tmp:
        out = Path(tmp) / "utf8.csv"
        with _open_bytes(tf.path) as src, out.open("w", encoding="utf-8", newline="") as dst:
            while chunk := src.read(CHUNK):
                dst.write(chunk.decode("latin-1").translate(_C1_TO_1252))
        yield out, "utf-8"


def standardize_column(name: str) -> str:
    """Lower case, trimmed, spaces to ``_`` (the users' own rule)."""
    return "_".join(name.strip().lower().split(" ")).lstrip("\ufeff")


def open_csv(path: Path, required: list[str]) -> TextFile:
    """Check ``path`` is a CSV in a known encoding whose standardized header has every ``required`` column."""
    if path.is_symlink():
        raise BadFileError(str(path), "a symbolic link: it is never followed (its target was not read)", "symlink")
    if not path.is_file():
        raise BadFileError(str(path), "no such file", "missing_file")
    try:
        if path.stat().st_size == 0:
            raise BadFileError(str(path), "empty file", "empty_file")
        encoding, windows_1252 = _scan(path, MAX_LINE_BYTES)
        with io.TextIOWrapper(_open_bytes(path), encoding=encoding, newline="") as fh:
            first_line = fh.readline(MAX_LINE_BYTES)
        if windows_1252:
            first_line = first_line.translate(_C1_TO_1252)
    except (OSError, EOFError, zlib.error) as exc:  # no permission, an I/O error, a corrupt .gz
        problem = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        raise BadFileError(str(path), f"cannot be read: {problem}", "unreadable_file") from exc
    try:  # a UTF-8 byte-order mark is not part of the first name (``\ufeff"InvoiceNo"`` is quoted)
        header = next(csv.reader(io.StringIO(first_line.removeprefix("\ufeff"))))
    except (StopIteration, csv.Error) as exc:
        raise BadFileError(str(path), f"not a CSV file: {exc}", "not_csv") from exc
    std = [standardize_column(h) for h in header]
    missing = [c for c in required if c not in std]
    if missing:
        found = ", ".join(std[:12]) or "(none)"
        if len(missing) == len(required):
            raise BadFileError(
                str(path), f"not a CSV file with the expected header ({', '.join(required)}); first line: {found}",
                "not_csv",
            )
        raise BadFileError(
            str(path), f"missing column(s) {', '.join(missing)}; expected {', '.join(required)}; found {found}",
            "missing_column",
        )
    return TextFile(path=path, encoding=encoding, header=header, windows_1252=windows_1252)


# A cell a spreadsheet would evaluate: it starts with =, +, -, @ (a formula) or a tab / carriage return
# (which some spreadsheets strip before evaluating the rest). A plain number such as -3.5 is data.
_FORMULA_START = re.compile(r"^[=+\-@\t\r]")
_PLAIN_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def neutralize_cell(value: str) -> str:
    """A text cell safe to open in a spreadsheet (OWASP CSV injection): a cell starting with ``=``, ``+``,
    ``-``, ``@``, tab or carriage return gets a leading ``'`` so it is shown as text, never run as a
    formula. A plain number written as text (``-3.5``) is left as it is."""
    if value and _FORMULA_START.match(value) and not _PLAIN_NUMBER.match(value):
        return "'" + value
    return value


def neutralize_table(table: pa.Table) -> pa.Table:
    """``table`` with every text cell passed through ``neutralize_cell``; numbers, dates and nulls unchanged."""
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = []
    for col in table.columns:
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            values = [None if v is None else neutralize_cell(v) for v in col.to_pylist()]
            col = pa.chunked_array([pa.array(values, type=col.type)])
        elif pa.types.is_dictionary(col.type):
            col = neutralize_table(pa.table({"c": pc.cast(col, pa.string())})).column("c")
        columns.append(col)
    return pa.table(columns, names=table.column_names)


def csv_for_people(table: pa.Table) -> bytes:
    """``table`` as CSV bytes (header row) for people to open in a spreadsheet: formula-like text
    neutralised by ``neutralize_table``. Use it for every CSV we write for people (reports); a CSV that a
    machine loads (a warehouse ``COPY``) keeps its values exactly and does not go through this."""
    import pyarrow.csv as pacsv

    buf = io.BytesIO()
    pacsv.write_csv(neutralize_table(table), buf, pacsv.WriteOptions(include_header=True, quoting_style="needed"))
    return buf.getvalue()


def parquet_bytes(table: pa.Table) -> bytes:
    """``table`` as the bytes of one zstd-compressed Parquet file (for a lake object written whole)."""
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()
