"""The catalog of the processed zone: what makes lake Parquet queryable as tables by name.

One interface, two implementations chosen by ``ECOMMERCE_ENV`` (resource key ``table_catalog``):

* local: ``DuckDBViewCatalog``: a view ``<database>.<table>`` in the warehouse DuckDB file over the
  Parquet below a lake prefix (``hive_partitioning``, so ``date=`` folders become a ``date`` column and
  new partitions are visible without re-registering);
* aws: ``ecommerce_assets.storage.glue_table_catalog.GlueCatalog``: a Glue table with its partitions, for
  Athena. It has the same ``register_lake_prefix`` method and ``default_database`` field.

Assets call ``table_catalog.register_lake_prefix(lake, prefix, table_catalog.default_database, table)`` after they
write a partition; both implementations are idempotent.

An Iceberg table of the processed zone (``storage.iceberg``) is registered with ``register_iceberg_table`` after
every commit: locally a view over ``iceberg_scan('<the table's current metadata.json>')``, re-pointed at each
commit (a reader sees one snapshot, whole); on AWS the Glue catalog of pyiceberg *is* the registration (an
``ICEBERG`` Glue table Athena reads), which is checked and described.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ecommerce_assets.storage.base import StorageModel
from ecommerce_assets.storage.lake import Lake
from ecommerce_assets.storage.warehouses.base import quote_ident, sql_literal
from ecommerce_assets.storage.warehouses.duckdb import file_lock, warehouse_config

if TYPE_CHECKING:
    from ecommerce_assets.storage.iceberg import IcebergTables


class TableCatalog(StorageModel):
    """Interface: register the Parquet below a lake prefix as ``database.table``."""

    default_database: str = "lake"

    def register_lake_prefix(
        self, lake: Lake, prefix: str, database: str, table: str, partition_keys: Sequence[str] = ("date",)
    ) -> Any:
        raise NotImplementedError

    def register_iceberg_table(self, tables: IcebergTables, name: str, database: str, table: str) -> dict[str, Any]:
        """Make the Iceberg table ``name`` of ``tables`` queryable as ``database.table`` at its current snapshot."""
        raise NotImplementedError


class DuckDBViewCatalog(TableCatalog):
    """Local catalog: DuckDB views in the warehouse file (``<ECOMMERCE_DATA_DIR>/warehouse.duckdb``)."""

    database: str
    extension_directory: str | None = None  # where the iceberg extension is installed (``warehouse_config``)

    def register_lake_prefix(
        self, lake: Lake, prefix: str, database: str, table: str, partition_keys: Sequence[str] = ("date",)
    ) -> dict[str, Any]:
        """``CREATE OR REPLACE VIEW database.table`` over ``prefix``; returns what was registered."""
        import duckdb

        prefix = prefix if prefix.endswith("/") else prefix + "/"
        if not any(o.key.endswith(".parquet") for o in lake.list_objects(prefix)):
            raise FileNotFoundError(f"no Parquet files below {lake.uri(prefix)}")
        pattern = lake.uri(prefix).rstrip("/") + "/" + ("*/" * len(partition_keys)) + "*.parquet"
        name = f"{database}.{table}"
        # a view's definition cannot hold bound parameters: the path enters as an escaped literal
        ddl = (
            f"CREATE OR REPLACE VIEW {quote_ident(name)} AS SELECT * FROM read_parquet("  # noqa: S608
            f"{sql_literal(pattern)}, hive_partitioning = {'true' if partition_keys else 'false'}, "
            "union_by_name = true)"
        )
        path = Path(self.database)
        path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(path):  # the warehouse writers' lock, as every connection to the file takes it
            con = duckdb.connect(str(path), config=warehouse_config(self.extension_directory))
            try:
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(database)}")
                con.execute(ddl)
                partitions = (
                    con.execute(
                        f"SELECT count(DISTINCT {quote_ident(partition_keys[0])}) FROM {quote_ident(name)}"  # noqa: S608
                    ).fetchone()[0]
                    if partition_keys
                    else 0
                )
            finally:
                con.close()
        return {"table": name, "location": pattern, "partitions": int(partitions)}

    def register_iceberg_table(self, tables: IcebergTables, name: str, database: str, table: str) -> dict[str, Any]:
        """``CREATE OR REPLACE VIEW database.table`` over the table's current ``metadata.json``.

        The view is pinned to that snapshot: call it again after every commit (and after a rollback).
        """
        import duckdb

        if not self.extension_directory:
            raise ValueError("a view over an Iceberg table needs the catalog's extension_directory")
        location = tables.metadata_location(name)
        snapshot = tables.current_snapshot_id(name)
        qualified = f"{database}.{table}"
        ddl = (
            f"CREATE OR REPLACE VIEW {quote_ident(qualified)} AS "  # noqa: S608
            f"SELECT * FROM iceberg_scan({sql_literal(location)})"
        )
        path = Path(self.database)
        path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(path):
            con = duckdb.connect(str(path), config=warehouse_config(self.extension_directory))
            try:
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(database)}")
                con.execute(ddl)
            finally:
                con.close()
        return {"table": qualified, "table_type": "ICEBERG", "metadata_location": location, "snapshot_id": snapshot}
