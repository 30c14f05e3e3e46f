"""The catalog of the processed zone: what makes lake Parquet queryable as tables by name.

One interface, two implementations chosen by ``ECOMMERCE_ENV`` (resource key ``catalog``):

* local: ``DuckDBViewCatalog``: a view ``<database>.<table>`` in the warehouse DuckDB file over the
  Parquet below a lake prefix (``hive_partitioning``, so ``date=`` folders become a ``date`` column and
  new partitions are visible without re-registering);
* aws: ``ecommerce_assets.resources.glue_catalog.GlueCatalog``: a Glue table with its partitions, for
  Athena. It has the same ``register_lake_prefix`` method and ``default_database`` field.

Assets call ``catalog.register_lake_prefix(lake, prefix, catalog.default_database, table)`` after they
write a partition; both implementations are idempotent.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from ecommerce_assets.resources.lake import Lake
from ecommerce_assets.resources.warehouse import file_lock, quote_ident
from ecommerce_assets.settings import Settings


class LakeCatalog(dg.ConfigurableResource):
    """Interface: register the Parquet below a lake prefix as ``database.table``."""

    default_database: str = "lake"

    def register_lake_prefix(
        self, lake: Lake, prefix: str, database: str, table: str, partition_keys: Sequence[str] = ("date",)
    ) -> Any:
        raise NotImplementedError


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class DuckDBViewCatalog(LakeCatalog):
    """Local catalog: DuckDB views in the warehouse file (``<ECOMMERCE_DATA_DIR>/warehouse.duckdb``)."""

    database: str

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
            f"{_sql_literal(pattern)}, hive_partitioning = {'true' if partition_keys else 'false'}, "
            "union_by_name = true)"
        )
        path = Path(self.database)
        path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(path):
            con = duckdb.connect(
                str(path), config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}
            )
            try:
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(database)}")
                con.execute(ddl)
                partitions = con.execute(
                    f"SELECT count(DISTINCT {quote_ident(partition_keys[0])}) FROM {quote_ident(name)}"  # noqa: S608
                ).fetchone()[0] if partition_keys else 0
            finally:
                con.close()
        return {"table": name, "location": pattern, "partitions": int(partitions)}


def build_catalog(settings: Settings) -> LakeCatalog | Any:
    """The catalog for the environment: DuckDB views locally, Glue in aws mode."""
    if settings.env == "aws":
        from ecommerce_assets.resources.aws import build_glue_catalog

        return build_glue_catalog(settings)
    return DuckDBViewCatalog(database=str(settings.warehouse_path))
