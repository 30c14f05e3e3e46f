"""The warehouse: where the gold tables live and where analysts query them.

Transforms compute their tables with the lake's DuckDB engine into Parquet under ``processed/``; the
warehouse then *loads* that Parquet (replace a table, or replace the rows of some keys) and answers
queries. That keeps one boundary for every implementation: the local DuckDB file here, PostgreSQL /
Redshift / Athena in aws mode (``ecommerce_assets.resources.aws_warehouse``).
"""

from __future__ import annotations

import fcntl
import os
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pyarrow as pa
from dagster_duckdb import DuckDBResource

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def quote_ident(name: str) -> str:
    """Quote a (schema-qualified) identifier after checking it is a plain name.

    Identifiers cannot be bound as SQL parameters; this is the one place they enter SQL text.
    """
    if not _IDENT.match(name):
        raise ValueError(f"not a valid table or column name: {name!r}")
    return ".".join(f'"{part}"' for part in name.split("."))


class Warehouse(dg.ConfigurableResource):
    """Interface every warehouse implements; assets use only these methods."""

    @property
    def kind(self) -> str:
        raise NotImplementedError

    def replace_table(self, table: str, parquet_uris: Sequence[str]) -> int:
        """Replace ``table`` (``schema.name``) with the rows of the Parquet files; return its row count."""
        raise NotImplementedError

    def replace_rows(self, table: str, parquet_uris: Sequence[str], key_columns: Sequence[str]) -> int:
        """Upsert: delete the rows whose keys appear in the Parquet files, insert the files' rows.

        Creates the table from the files' schema when it does not exist. Returns the table's row count.
        """
        raise NotImplementedError

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        """Run a read query (parameters bound, never interpolated) and return an Arrow table."""
        raise NotImplementedError

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        raise NotImplementedError

    def table_exists(self, table: str) -> bool:
        raise NotImplementedError

    def row_count(self, table: str) -> int:
        return int(self.query(f"SELECT count(*) AS n FROM {quote_ident(table)}").column("n")[0].as_py())  # noqa: S608

    def uri(self, table: str) -> str:
        """A human-readable address of ``table`` for asset metadata."""
        raise NotImplementedError


_process_locks: dict[str, threading.RLock] = {}
_process_depth: dict[str, int] = {}
_guard = threading.Lock()

SERIALIZE_WRITERS = True
"""Whether ``file_lock`` serializes the writers of a DuckDB file (always, in the product).

The contention and fault-injection tests set it to False in their own child processes, to show that
without this serialization concurrent runs, dbt builds and catalog registrations on one file fail."""


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock shared by every process and thread that opens the same DuckDB file.

    DuckDB allows one read-write process per file; taking this lock around every connection (ours,
    dbt's, the CLI's) turns "Could not set lock on file" into a short wait. Re-entrant in a thread.
    The lock is ``flock`` on ``<file>.lock``: the kernel releases it when its holder dies (a killed run
    never leaves the warehouse locked).
    """
    if not SERIALIZE_WRITERS:
        yield
        return
    key = str(path)
    with _guard:
        rlock = _process_locks.setdefault(key, threading.RLock())
    with rlock:
        depth = _process_depth.get(key, 0)
        handle = None
        if depth == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(f"{key}.lock", "a+")  # noqa: SIM115 - held for the lock's lifetime
            fcntl.flock(handle, fcntl.LOCK_EX)
        _process_depth[key] = depth + 1
        try:
            yield
        finally:
            _process_depth[key] -= 1
            if handle is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()


class DuckDBWarehouse(Warehouse):
    """The local warehouse: one DuckDB file (``<ECOMMERCE_DATA_DIR>/warehouse.duckdb``).

    Built on ``dagster_duckdb.DuckDBResource``; every connection holds the file lock above.
    """

    database: str

    @property
    def kind(self) -> str:
        return "duckdb"

    def _resource(self) -> DuckDBResource:
        return DuckDBResource(
            database=self.database,
            connection_config={"autoinstall_known_extensions": False, "autoload_known_extensions": False},
        )

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection to the warehouse file, holding the writers' lock."""
        Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        with file_lock(Path(self.database)), self._resource().get_connection() as con:
            yield con

    def _ensure_schema(self, con: duckdb.DuckDBPyConnection, table: str) -> None:
        if "." in table:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(table.split('.')[0])}")

    def replace_table(self, table: str, parquet_uris: Sequence[str]) -> int:
        with self.connect() as con:
            self._ensure_schema(con, table)
            con.execute("BEGIN")
            con.execute(
                f"CREATE OR REPLACE TABLE {quote_ident(table)} AS SELECT * FROM read_parquet(?)",  # noqa: S608
                [list(parquet_uris)],
            )
            con.execute("COMMIT")
            return int(con.execute(f"SELECT count(*) FROM {quote_ident(table)}").fetchone()[0])  # noqa: S608

    def replace_rows(self, table: str, parquet_uris: Sequence[str], key_columns: Sequence[str]) -> int:
        t = quote_ident(table)
        match = " AND ".join(f"{t}.{quote_ident(k)} = src.{quote_ident(k)}" for k in key_columns)
        with self.connect() as con:
            self._ensure_schema(con, table)
            con.execute("BEGIN")
            con.execute(
                f"CREATE TABLE IF NOT EXISTS {t} AS SELECT * FROM read_parquet(?) LIMIT 0",  # noqa: S608
                [list(parquet_uris)],
            )
            con.execute(
                f"DELETE FROM {t} USING read_parquet(?) AS src WHERE {match}",  # noqa: S608
                [list(parquet_uris)],
            )
            con.execute(f"INSERT INTO {t} BY NAME SELECT * FROM read_parquet(?)", [list(parquet_uris)])  # noqa: S608
            con.execute("COMMIT")
            return int(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0])  # noqa: S608

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        with self.connect() as con:
            return con.execute(sql, list(params or [])).to_arrow_table()

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        with self.connect() as con:
            con.execute(sql, list(params or []))

    def table_exists(self, table: str) -> bool:
        schema, _, name = table.rpartition(".")
        sql = "SELECT count(*) AS n FROM information_schema.tables WHERE table_name = ? AND table_schema = ?"
        return self.query(sql, [name, schema or "main"]).column("n")[0].as_py() > 0

    def uri(self, table: str) -> str:
        return f"duckdb://{os.path.abspath(self.database)}#{table}"
