"""Amazon Redshift as the warehouse: the PostgreSQL warehouse's transactions and merge, Redshift's DDL and COPY.

Tables are created with the star schema's DISTKEY/SORTKEY and loaded by ``COPY ... FROM 's3://...manifest'
IAM_ROLE ... FORMAT AS PARQUET MANIFEST`` (into a staging table for a merge). With ``postgres_compat`` the
class runs on a PostgreSQL server: the Redshift-only statements are generated and kept in
``redshift_statements`` (the tests check them with sqlglot's Redshift parser) and their PostgreSQL
equivalents run instead; everything else is the same SQL.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Sequence

import psycopg
import pyarrow as pa
from psycopg import sql as pgsql
from pydantic import PrivateAttr

from ecommerce_assets.storage.warehouses.base import split_table
from ecommerce_assets.storage.warehouses.postgres import PostgresWarehouse, postgres_type, table_ident

# The star schema's distribution and sort keys (issue 7), by table name.
STAR_SCHEMA_KEYS: dict[str, str] = {
    "customers": "DISTSTYLE KEY DISTKEY(customerid)",
    "products": "SORTKEY(stockcode)",
    "sales_transactions": "DISTSTYLE KEY DISTKEY(customerid) SORTKEY(invoicedate)",
}
_KEY_COLUMNS = re.compile(r"(?:DISTKEY|SORTKEY)\s*\(([^)]*)\)", re.IGNORECASE)


def redshift_type(t: pa.DataType) -> str:
    """The Redshift column type for an Arrow type."""
    pg = postgres_type(t)
    if pg == "text":
        return "VARCHAR(65535)"
    if pg == "jsonb":
        return "SUPER"
    if pg == "bytea":
        return "VARBYTE"
    if pg == "double precision":
        return "DOUBLE PRECISION"
    return pg.upper()


class RedshiftWarehouse(PostgresWarehouse):
    """Amazon Redshift: star-schema DISTKEY/SORTKEY tables, loads by ``COPY ... IAM_ROLE ... FORMAT AS PARQUET``.

    ``iam_role`` is the role Redshift assumes to read the lake. ``table_options`` maps a table name to its
    distribution/sort clause (trusted configuration: it enters the DDL as written). ``postgres_compat`` runs
    the class against PostgreSQL (tests, rehearsals).
    """

    iam_role: str
    table_options: dict[str, str] = dict(STAR_SCHEMA_KEYS)
    manifest_prefix: str = "intermediate/_redshift_manifests/"
    postgres_compat: bool = False

    _statements: list[str] = PrivateAttr(default_factory=list)

    @property
    def kind(self) -> str:
        return "redshift"

    @property
    def redshift_statements(self) -> list[str]:
        """The Redshift-only statements this instance generated (what ran on Redshift, or was emulated)."""
        return list(self._statements)

    def redshift_create_table_sql(self, table: str, schema: pa.Schema) -> pgsql.Composed:
        """``CREATE TABLE`` in Redshift's dialect with the table's DISTKEY/SORTKEY."""
        options = self.table_options.get(split_table(table, self.default_schema)[1], "")
        for group in _KEY_COLUMNS.findall(options):
            for col in (c.strip() for c in group.split(",")):
                if col not in schema.names:
                    raise ValueError(f"{table}: key column {col!r} of {options!r} is not among {schema.names}")
        cols = pgsql.SQL(", ").join(
            pgsql.SQL("{} {}").format(pgsql.Identifier(f.name), pgsql.SQL(redshift_type(f.type))) for f in schema
        )
        statement = pgsql.SQL("CREATE TABLE {} ({})").format(table_ident(table), cols)
        return statement + pgsql.SQL(f" {options}") if options else statement

    def redshift_copy_sql(self, table: str, manifest_uri: str) -> pgsql.Composed:
        """``COPY`` the Parquet files listed in a manifest into ``table``."""
        if not manifest_uri.startswith("s3://"):
            raise ValueError(f"Redshift COPY needs an s3:// manifest, got {manifest_uri!r}")
        return pgsql.SQL("COPY {} FROM {} IAM_ROLE {} FORMAT AS PARQUET MANIFEST").format(
            table_ident(table), pgsql.Literal(manifest_uri), pgsql.Literal(self.iam_role)
        )

    def write_manifest(self, parquet_uris: Sequence[str]) -> str:
        """A COPY manifest in the lake listing exactly these files (Parquet manifests need content_length)."""
        key_of = getattr(self.lake, "key_of", None)
        if key_of is None:
            raise TypeError("RedshiftWarehouse loads from S3: its lake must be an S3Lake")
        entries = [
            {"url": uri, "mandatory": True, "meta": {"content_length": self.lake.stat(key_of(uri)).size}}
            for uri in parquet_uris
        ]
        key = f"{self.manifest_prefix}{dt.date.today():%Y-%m-%d}/{uuid.uuid4().hex}.manifest"
        return self.lake.write_bytes(key, json.dumps({"entries": entries}, indent=1).encode())

    def _create_table_sql(self, table: str, schema: pa.Schema, temporary: bool = False) -> pgsql.Composed:
        if temporary:  # staging tables: plain columns, the same SQL in both dialects
            return super()._create_table_sql(table, schema, temporary=True)
        statement = self.redshift_create_table_sql(table, schema)
        self._statements.append(statement.as_string())
        return super()._create_table_sql(table, schema) if self.postgres_compat else statement

    def _load(self, cur: psycopg.Cursor, table: str, schema: pa.Schema, parquet_uris: Sequence[str]) -> None:
        statement = self.redshift_copy_sql(table, self.write_manifest(parquet_uris))
        self._statements.append(statement.as_string(cur))
        if self.postgres_compat:
            super()._load(cur, table, schema, parquet_uris)
        else:
            cur.execute(statement)
