"""The warehouse interface, and the one place names and literals enter DuckDB SQL text.

Transforms compute their tables with the lake's DuckDB engine into Parquet under ``processed/``; a
warehouse then *loads* that Parquet (replace a table, or replace the rows of some keys) and answers
queries. Every engine implements the same ``Warehouse`` interface, one module each:
``warehouses.duckdb`` (local), ``warehouses.postgres``, ``warehouses.redshift`` and ``warehouses.athena``
(aws mode).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ecommerce_assets.storage.base import StorageModel

if TYPE_CHECKING:
    import pyarrow as pa

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def quote_ident(name: str) -> str:
    """Quote a (schema-qualified) identifier for DuckDB after checking it is a plain name.

    Identifiers cannot be bound as SQL parameters; this is the one place they enter DuckDB SQL text
    (PostgreSQL and Redshift statements compose theirs with ``psycopg.sql.Identifier``).
    """
    if not _IDENT.match(name):
        raise ValueError(f"not a valid table or column name: {name!r}")
    return ".".join(f'"{part}"' for part in name.split("."))


def sql_literal(value: str) -> str:
    """A single-quoted SQL string literal, for the DuckDB statements that cannot bind a parameter.

    ``COPY ... TO <path>``, a view's definition and ``LOAD`` take no ``?``; everything else binds its values.
    """
    return "'" + value.replace("'", "''") + "'"


def split_table(table: str, default_schema: str) -> tuple[str, str]:
    """``schema.name`` -> ``(schema, name)``; a bare name gets ``default_schema``."""
    schema, _, name = table.rpartition(".")
    return schema or default_schema, name


class Warehouse(StorageModel):
    """Interface every warehouse implements; assets use only these methods."""

    @property
    def kind(self) -> str:
        """The engine: ``duckdb``, ``postgres``, ``redshift`` or ``athena``."""
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
        """Run a read query (``?`` placeholders, parameters bound, never interpolated); return Arrow."""
        raise NotImplementedError

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        """Run a statement (``?`` placeholders, parameters bound) and discard any result."""
        raise NotImplementedError

    def table_exists(self, table: str) -> bool:
        """Whether ``table`` (``schema.name``) exists."""
        raise NotImplementedError

    def row_count(self, table: str) -> int:
        """The number of rows of ``table``."""
        return int(self.query(f"SELECT count(*) AS n FROM {quote_ident(table)}").column("n")[0].as_py())  # noqa: S608

    def uri(self, table: str) -> str:
        """A human-readable address of ``table`` for asset metadata."""
        raise NotImplementedError
