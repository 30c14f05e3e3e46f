"""The local warehouse: one DuckDB file, and the writers' lock every process takes around it.

DuckDB allows one read-write process per file. ``file_lock`` turns "Could not set lock on file" into a
short wait: every connection to the warehouse file (ours, dbt's build, the table catalog's views, the
CLI's) is opened while holding it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock

from ecommerce_assets.storage.warehouses.base import Warehouse, quote_ident

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

NO_IMPLICIT_EXTENSIONS = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}


def warehouse_config(extension_directory: str | None) -> dict[str, Any]:
    """The configuration of every connection to the warehouse file (DuckDB refuses two in one process).

    Nothing is ever downloaded. With ``extension_directory`` (``<ECOMMERCE_DATA_DIR>/duckdb_extensions``), the
    offline avro and iceberg extensions are installed there from their wheels once, and a query over a view on
    ``iceberg_scan`` (``lake.<table>`` of an Iceberg table) loads them when it first needs them: a connection
    that reads no Iceberg table pays nothing. Only the extensions of that folder can load that way.
    """
    if not extension_directory:
        return dict(NO_IMPLICIT_EXTENSIONS)
    from ecommerce_assets.storage.iceberg import ensure_iceberg_extensions

    ensure_iceberg_extensions(Path(extension_directory))
    return {
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": True,
        "extension_directory": extension_directory,
    }

SERIALIZE_WRITERS = True
"""Whether ``file_lock`` serializes the writers of a DuckDB file (always, in the product).

The contention and fault-injection tests set it to False in their own child processes, to show that
without this serialization concurrent runs, dbt builds and catalog registrations on one file fail."""


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock shared by every process and thread that opens the DuckDB file ``path``.

    ``filelock.FileLock`` on ``<path>.lock`` (an ``flock``, so the kernel releases it when its holder dies: a
    killed run never leaves the warehouse locked). One lock object per file in the process (``is_singleton``)
    with a per-thread hold (``thread_local``): a thread may nest ``file_lock`` on the same file, while another
    thread, like another process, waits until the holder's outermost block ends. A waiter polls every 50 ms.
    """
    if not SERIALIZE_WRITERS:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{path}.lock", is_singleton=True, thread_local=True):
        yield


class DuckDBWarehouse(Warehouse):
    """The local warehouse: one DuckDB file (``<ECOMMERCE_DATA_DIR>/warehouse.duckdb``).

    Every connection holds ``file_lock``; nothing is downloaded. With ``extension_directory`` the views over
    Iceberg tables (``iceberg_scan``) work in every connection (``warehouse_config``).
    """

    database: str
    extension_directory: str | None = None

    @property
    def kind(self) -> str:
        return "duckdb"

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection to the warehouse file, holding the writers' lock."""
        import duckdb

        Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        with file_lock(Path(self.database)):
            con = duckdb.connect(self.database, config=warehouse_config(self.extension_directory))
            try:
                yield con
            finally:
                con.close()

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
