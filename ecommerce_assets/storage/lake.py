"""The lake: an object store with zones (landing, raw, intermediate, processed, quarantine, archive).

Keys are always relative to the lake root and use ``/``: ``landing/online_retail/file.csv``. The local
implementation is a folder; the aws implementation (``S3Lake``) is an S3 bucket and prefix. Both give
DuckDB a URI it can read and write (``uri``) and an engine connection configured for the store
(``engine``), so the transforms are the same SQL in both environments.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ecommerce_assets.storage.base import StorageModel

if TYPE_CHECKING:
    import duckdb

ZONES = ("landing", "raw", "intermediate", "processed", "quarantine", "archive")
NAME_MAX = 255  # bytes in one file name on every common local file system (ext4, xfs, APFS, NTFS)
TMP_PREFIX = ".tmp-"  # in-flight writes; never listed


def fit_name(name: str, limit: int = NAME_MAX) -> str:
    """``name`` if it fits in ``limit`` bytes of UTF-8, else a shortened name that still identifies it.

    The shortened name keeps the start and the end (where the extensions are, e.g. ``.csv.reason.json``)
    and puts a hash of the whole name between them, so two long names never collide and the same long
    name always maps to the same short one.
    """
    raw = name.encode()
    if len(raw) <= limit:
        return name
    digest = "~" + hashlib.sha256(raw).hexdigest()[:16] + "~"
    tail = raw[-48:].decode(errors="ignore")
    room = limit - len(digest.encode()) - len(tail.encode())
    head = raw[:room].decode(errors="ignore")
    return head + digest + tail


def _renameat2() -> object | None:
    """libc's ``renameat2`` (Linux 3.15+, glibc 2.28+), or None where there is none."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        func = libc.renameat2
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return func


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def publish_folder(staging: Path, target: Path) -> None:
    """Put the folder ``staging`` in place of ``target`` in one step; the old content ends up in ``staging``.

    With ``renameat2(RENAME_EXCHANGE)`` the two folders swap atomically: a reader sees the old folder or the
    new one, never a mix and never nothing. Without it (not Linux, or a file system that refuses it) the old
    folder is renamed aside first, leaving an instant with no folder: never a half-written one.
    """
    if not target.exists():
        os.rename(staging, target)
        return
    rename = _renameat2()
    if rename is not None and rename(_AT_FDCWD, os.fsencode(staging), _AT_FDCWD, os.fsencode(target),  # type: ignore[operator]
                                     _RENAME_EXCHANGE) == 0:
        return
    aside = target.with_name(temp_name())
    os.rename(target, aside)
    os.rename(staging, target)
    os.rename(aside, staging)


def sweep_abandoned(folder: Path) -> int:
    """Remove the in-flight writes in ``folder`` whose writer has died (a killed run's leftovers); return how many."""
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if not entry.name.startswith(TMP_PREFIX):
            continue
        pid = entry.name[len(TMP_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or pid_alive(int(pid)):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            Path(entry.path).unlink(missing_ok=True)
        removed += 1
    return removed


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temp_name() -> str:
    """A short, unique name for an in-flight write (never derived from the target's name, which may be long)."""
    return f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"


class UnsafeObjectError(PermissionError):
    """A lake object that must not be read: a symbolic link or a special file (FIFO, socket, device)."""


@dataclass(frozen=True)
class RejectedObject:
    """An entry below a prefix that is not a regular file, so it is never listed nor read: its key, why."""

    key: str
    rule: str  # "symlink" or "not_a_regular_file"
    problem: str


SYMLINK_PROBLEM = (
    "a symbolic link: landed files must be regular files, and a link is never followed (its target was "
    "not read); copy the file into the landing folder instead of linking it"
)
SPECIAL_PROBLEM = "not a regular file (a FIFO, socket or device): it was not read; land a regular file instead"


@dataclass(frozen=True)
class LakeObject:
    """One object in the lake: its key, size, a version (S3 ETag or local mtime_ns) and mtime."""

    key: str
    size: int
    version: str
    last_modified: float

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]


class Lake(StorageModel):
    """Interface every lake implements; assets and sensors use only these methods."""

    duckdb_memory_limit: str = "2GB"
    duckdb_threads: int = 2

    # --- addressing -------------------------------------------------------------------------
    def uri(self, key: str) -> str:
        """A URI for ``key`` that DuckDB and the user can open (a path or ``s3://...``)."""
        raise NotImplementedError

    def key_of(self, uri: str) -> str:
        """The lake key of a URI of this lake (the inverse of ``uri``)."""
        raise NotImplementedError

    def output_uri(self, key: str) -> str:
        """Like ``uri``, for DuckDB to write to (a ``COPY ... TO``): missing local folders are created.

        A key ending in ``/`` is a folder (a partitioned write); any other key is a file.
        """
        return self.uri(key)

    @contextmanager
    def writing(self, key: str) -> Iterator[str]:
        """A URI to write ``key`` to (a file, or a folder when ``key`` ends in ``/``), published whole when the
        block ends without an error; on an error or a crash the previous content stays as it was.

        Readers never see a half-written file or folder: locally the output is written under an in-flight name
        beside the target and renamed into place (a folder is swapped with ``renameat2(RENAME_EXCHANGE)``, so
        readers see the old folder or the new one, never neither). On S3 one PUT is atomic per object; a folder
        is written under an in-flight prefix, then copied over the target and the target's stale objects
        deleted (a reader listing meanwhile can see old and new objects side by side).
        """
        raise NotImplementedError
        yield ""  # pragma: no cover - the generator shape of the interface

    # --- listing ----------------------------------------------------------------------------
    def list_objects(self, prefix: str, start_after: str | None = None) -> Iterator[LakeObject]:
        """Every object below ``prefix`` (recursive), in key order, after ``start_after`` if given.

        In-flight writes (names starting with ``.tmp-``, files or folders) are never listed."""
        raise NotImplementedError

    def list_prefixes(self, prefix: str) -> list[str]:
        """The immediate sub-prefixes of ``prefix`` (like S3's CommonPrefixes), sorted, ending in ``/``."""
        raise NotImplementedError

    def list_rejected(self, prefix: str) -> list[RejectedObject]:
        """Entries below ``prefix`` that ``list_objects`` leaves out because they must not be read
        (symbolic links, special files). An object store has none."""
        return []

    # --- objects ----------------------------------------------------------------------------
    def read_bytes(self, key: str) -> bytes:
        raise NotImplementedError

    def write_bytes(self, key: str, data: bytes) -> str:
        """Write ``data`` at ``key`` atomically; return its URI."""
        raise NotImplementedError

    def copy(self, src_key: str, dst_key: str) -> str:
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        raise NotImplementedError

    def stat(self, key: str) -> LakeObject:
        raise NotImplementedError

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object below ``prefix``; return how many were deleted."""
        raise NotImplementedError

    def open_local(self, key: str) -> Path:
        """A local file with the object's bytes (the file itself locally, a downloaded copy on S3)."""
        raise NotImplementedError

    # --- the engine -------------------------------------------------------------------------
    def engine(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection, bounded in memory and threads, able to read/write ``uri``s."""
        import duckdb

        con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
        con.execute("SET memory_limit = ?", [self.duckdb_memory_limit])
        con.execute("SET threads = ?", [self.duckdb_threads])
        con.execute("SET preserve_insertion_order = false")
        return con


def _local_object(key: str, st: os.stat_result) -> LakeObject:
    """A local file as a lake object. Its arrival time is the later of mtime and ctime: a file moved
    (``mv``) into the landing folder keeps its old mtime, but the rename sets its ctime."""
    return LakeObject(
        key=key,
        size=st.st_size,
        version=f"{st.st_mtime_ns}-{st.st_size}",
        last_modified=max(st.st_mtime, st.st_ctime),
    )


class LocalLake(Lake):
    """The lake as a local folder (``<ECOMMERCE_DATA_DIR>/lake``)."""

    base_dir: str

    def _path(self, key: str) -> Path:
        """The file of ``key``; a name longer than the file system allows is stored as ``fit_name(name)``."""
        key = key.lstrip("/")
        parts = Path(key).parts
        if ".." in parts:
            raise ValueError(f"lake key may not contain '..': {key!r}")
        return Path(self.base_dir).joinpath(*(fit_name(p) for p in parts))

    def uri(self, key: str) -> str:
        """The file's path; a folder key (ending in ``/``) keeps its ``/``, as on S3."""
        path = str(self._path(key))
        return path + "/" if key.endswith("/") and not path.endswith("/") else path

    def key_of(self, uri: str) -> str:
        """The lake key of a path inside this lake (the inverse of ``uri``)."""
        return Path(uri).resolve().relative_to(Path(self.base_dir).resolve()).as_posix()

    def output_uri(self, key: str) -> str:
        path = self._path(key)
        (path if key.endswith("/") else path.parent).mkdir(parents=True, exist_ok=True)
        return str(path)

    @contextmanager
    def writing(self, key: str) -> Iterator[str]:
        target = self._path(key.rstrip("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        sweep_abandoned(target.parent)
        staging = target.with_name(temp_name())
        if key.endswith("/"):
            staging.mkdir()
        try:
            yield str(staging)
            if key.endswith("/"):
                publish_folder(staging, target)
            elif staging.exists():  # nothing written: the target stays as it was
                os.replace(staging, target)
        finally:
            if staging.is_dir():
                shutil.rmtree(staging, ignore_errors=True)
            else:
                staging.unlink(missing_ok=True)

    def _walk(self, prefix: str) -> Iterator[tuple[str, os.DirEntry]]:
        """Every entry below ``prefix`` that is not a folder, with its key; symlinked folders are not entered."""
        root = Path(self.base_dir)
        base = self._path(prefix)
        # a prefix may be a folder ("landing/x/") or a name stem ("landing/x/date=2024-")
        folder = base if prefix.endswith("/") or base.is_dir() else base.parent
        if not folder.is_dir():
            return
        stack = [folder]
        while stack:
            current = stack.pop()
            with os.scandir(current) as it:
                for entry in it:
                    if entry.name.startswith(TMP_PREFIX):
                        continue  # an in-flight write (file or folder): not there yet
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                    else:
                        key = Path(entry.path).relative_to(root).as_posix()
                        if key.startswith(prefix):
                            yield key, entry

    def list_objects(self, prefix: str, start_after: str | None = None) -> Iterator[LakeObject]:
        """Every regular file below ``prefix``. Symbolic links and special files are never listed (so never
        read by anyone who lists): ``list_rejected`` names them."""
        keys = [
            (key, entry) for key, entry in self._walk(prefix)
            if entry.is_file(follow_symlinks=False) and (start_after is None or key > start_after)
        ]
        keys.sort(key=lambda kv: kv[0])
        for key, entry in keys:
            yield _local_object(key, entry.stat(follow_symlinks=False))

    def list_rejected(self, prefix: str) -> list[RejectedObject]:
        rejected = []
        for key, entry in self._walk(prefix):
            if entry.is_symlink():
                rejected.append(RejectedObject(key, "symlink", SYMLINK_PROBLEM))
            elif not entry.is_file(follow_symlinks=False):
                rejected.append(RejectedObject(key, "not_a_regular_file", SPECIAL_PROBLEM))
        return sorted(rejected, key=lambda r: r.key)

    def list_prefixes(self, prefix: str) -> list[str]:
        folder = self._path(prefix)
        if not folder.is_dir():
            return []
        stem = prefix if prefix.endswith("/") or not prefix else prefix + "/"
        with os.scandir(folder) as it:
            return sorted(stem + e.name + "/" for e in it if e.is_dir(follow_symlinks=False))

    def _open_regular(self, key: str) -> int:
        """A read-only descriptor on the regular file at ``key``; a symlink or special file is refused
        (``O_NOFOLLOW``: checked by the kernel at open, so a file swapped for a link meanwhile is refused too)."""
        path = self._path(key)
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(path, flags)
        except OSError as exc:
            if path.is_symlink():
                raise UnsafeObjectError(f"{key}: {SYMLINK_PROBLEM}") from exc
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise UnsafeObjectError(f"{key}: {SPECIAL_PROBLEM}")
        return fd

    def read_bytes(self, key: str) -> bytes:
        with os.fdopen(self._open_regular(key), "rb") as fh:
            return fh.read()

    def write_bytes(self, key: str, data: bytes) -> str:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(temp_name())
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return str(path)

    def copy(self, src_key: str, dst_key: str) -> str:
        """Copy a regular file (never a symlink's target), keeping its modification time; atomic at ``dst``."""
        fd = self._open_regular(src_key)
        dst = self._path(dst_key)
        tmp = dst.with_name(temp_name())
        try:
            with os.fdopen(fd, "rb") as src:
                dst.parent.mkdir(parents=True, exist_ok=True)
                with tmp.open("wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                st = os.fstat(src.fileno())
                os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
            os.replace(tmp, dst)
        finally:
            tmp.unlink(missing_ok=True)
        return str(dst)

    def exists(self, key: str) -> bool:
        """A regular file is at ``key`` (a symlink there does not count)."""
        try:
            return stat.S_ISREG(os.lstat(self._path(key)).st_mode)
        except OSError:
            return False

    def stat(self, key: str) -> LakeObject:
        st = os.lstat(self._path(key))
        return _local_object(key, st)

    def delete_prefix(self, prefix: str) -> int:
        path = self._path(prefix)
        if path.is_file():
            path.unlink()
            return 1
        if not path.is_dir():
            return 0
        count = sum(1 for p in path.rglob("*") if p.is_file())
        shutil.rmtree(path)
        return count

    def open_local(self, key: str) -> Path:
        """The file itself; a symlink or special file is refused (never handed to a reader)."""
        path = self._path(key)
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return path  # the reader names the missing file
        if stat.S_ISLNK(mode):
            raise UnsafeObjectError(f"{key}: {SYMLINK_PROBLEM}")
        if not stat.S_ISREG(mode):
            raise UnsafeObjectError(f"{key}: {SPECIAL_PROBLEM}")
        return path

    def engine(self) -> duckdb.DuckDBPyConnection:
        con = super().engine()
        spill = Path(self.base_dir).parent / "state" / "duckdb_tmp"
        spill.mkdir(parents=True, exist_ok=True)
        con.execute("SET temp_directory = ?", [str(spill)])
        return con
