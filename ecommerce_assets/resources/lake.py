"""The lake: an object store with zones (landing, raw, intermediate, processed, quarantine, archive).

Keys are always relative to the lake root and use ``/``: ``landing/online_retail/file.csv``. The local
implementation is a folder; the aws implementation (``S3Lake``) is an S3 bucket and prefix. Both give
DuckDB a URI it can read and write (``uri``) and an engine connection configured for the store
(``engine``), so the transforms are the same SQL in both environments.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb

ZONES = ("landing", "raw", "intermediate", "processed", "quarantine", "archive")


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


class Lake(dg.ConfigurableResource):
    """Interface every lake implements; assets and sensors use only these methods."""

    duckdb_memory_limit: str = "2GB"
    duckdb_threads: int = 2

    # --- addressing -------------------------------------------------------------------------
    def uri(self, key: str) -> str:
        """A URI for ``key`` that DuckDB and the user can open (a path or ``s3://...``)."""
        raise NotImplementedError

    def output_uri(self, key: str) -> str:
        """Like ``uri``, for DuckDB to write to (a ``COPY ... TO``): missing local folders are created.

        A key ending in ``/`` is a folder (a partitioned write); any other key is a file.
        """
        return self.uri(key)

    # --- listing ----------------------------------------------------------------------------
    def list_objects(self, prefix: str, start_after: str | None = None) -> Iterator[LakeObject]:
        """Every object below ``prefix`` (recursive), in key order, after ``start_after`` if given."""
        raise NotImplementedError

    def list_prefixes(self, prefix: str) -> list[str]:
        """The immediate sub-prefixes of ``prefix`` (like S3's CommonPrefixes), sorted, ending in ``/``."""
        raise NotImplementedError

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
        key = key.lstrip("/")
        if ".." in Path(key).parts:
            raise ValueError(f"lake key may not contain '..': {key!r}")
        return Path(self.base_dir) / key

    def uri(self, key: str) -> str:
        return str(self._path(key))

    def output_uri(self, key: str) -> str:
        path = self._path(key)
        (path if key.endswith("/") else path.parent).mkdir(parents=True, exist_ok=True)
        return str(path)

    def list_objects(self, prefix: str, start_after: str | None = None) -> Iterator[LakeObject]:
        root = Path(self.base_dir)
        base = self._path(prefix)
        # a prefix may be a folder ("landing/x/") or a name stem ("landing/x/date=2024-")
        folder = base if prefix.endswith("/") or base.is_dir() else base.parent
        if not folder.is_dir():
            return
        keys: list[tuple[str, os.DirEntry]] = []
        stack = [folder]
        while stack:
            current = stack.pop()
            with os.scandir(current) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                    elif entry.is_file() and not entry.name.startswith(".tmp-"):
                        key = Path(entry.path).relative_to(root).as_posix()
                        if key.startswith(prefix) and (start_after is None or key > start_after):
                            keys.append((key, entry))
        keys.sort(key=lambda kv: kv[0])
        for key, entry in keys:
            st = entry.stat()
            yield _local_object(key, st)

    def list_prefixes(self, prefix: str) -> list[str]:
        folder = self._path(prefix)
        if not folder.is_dir():
            return []
        stem = prefix if prefix.endswith("/") or not prefix else prefix + "/"
        with os.scandir(folder) as it:
            return sorted(stem + e.name + "/" for e in it if e.is_dir(follow_symlinks=False))

    def read_bytes(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def write_bytes(self, key: str, data: bytes) -> str:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return str(path)

    def copy(self, src_key: str, dst_key: str) -> str:
        dst = self._path(dst_key)
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".tmp-{os.getpid()}-{dst.name}")
        shutil.copy2(self._path(src_key), tmp)
        os.replace(tmp, dst)
        return str(dst)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def stat(self, key: str) -> LakeObject:
        st = self._path(key).stat()
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
        return self._path(key)

    def engine(self) -> duckdb.DuckDBPyConnection:
        con = super().engine()
        spill = Path(self.base_dir).parent / "state" / "duckdb_tmp"
        spill.mkdir(parents=True, exist_ok=True)
        con.execute("SET temp_directory = ?", [str(spill)])
        return con
