"""Checks every landed text file goes through before the engine reads it: encoding and header."""

from __future__ import annotations

import codecs
import csv
import gzip
import io
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 20


class BadFileError(ValueError):
    """A landed file that cannot be read as the source's format; the message names file and problem."""

    def __init__(self, file: str, problem: str, rule: str):
        super().__init__(f"{file}: {problem}")
        self.file = file
        self.problem = problem
        self.rule = rule


@dataclass(frozen=True)
class TextFile:
    path: Path
    encoding: str  # "utf-8" or "latin-1" (ISO-8859-1)
    header: list[str]


def _open_bytes(path: Path) -> io.BufferedIOBase:
    """The file's bytes, decompressed when it is gzip (``.gz``); DuckDB reads such files natively."""
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else path.open("rb")  # type: ignore[return-value]


def detect_encoding(path: Path) -> str:
    """``utf-8`` when every byte decodes as UTF-8, else ``latin-1``; refuse binary and UTF-16/32 files."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    utf8 = True
    with _open_bytes(path) as fh:
        first = True
        while chunk := fh.read(CHUNK):
            if first and chunk[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in chunk:
                raise BadFileError(
                    str(path), "unknown encoding: the file has NUL bytes or a UTF-16/32 byte-order mark "
                    "(accepted: UTF-8 or ISO-8859-1 text)", "unknown_encoding"
                )
            first = False
            if utf8:
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError:
                    utf8 = False
    return "utf-8" if utf8 else "latin-1"


def standardize_column(name: str) -> str:
    """Lower case, trimmed, spaces to ``_`` (the users' own rule)."""
    return "_".join(name.strip().lower().split(" ")).lstrip("\ufeff")


def open_csv(path: Path, required: list[str]) -> TextFile:
    """Check ``path`` is a CSV in a known encoding whose standardized header has every ``required`` column."""
    if not path.is_file():
        raise BadFileError(str(path), "no such file", "missing_file")
    if path.stat().st_size == 0:
        raise BadFileError(str(path), "empty file", "empty_file")
    try:
        encoding = detect_encoding(path)
    except (OSError, EOFError) as exc:  # a corrupt .gz
        raise BadFileError(str(path), f"cannot be read: {exc}", "unreadable_file") from exc
    with io.TextIOWrapper(_open_bytes(path), encoding=encoding, newline="") as fh:
        first_line = fh.readline()
    try:
        header = next(csv.reader(io.StringIO(first_line)))
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
    return TextFile(path=path, encoding=encoding, header=header)
