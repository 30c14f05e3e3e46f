"""PostgreSQL as the warehouse (aws mode, psycopg 3).

DuckDB (the lake engine) reads the Parquet and writes it as CSV, which ``COPY ... FROM STDIN`` streams in; a
replace or a merge (delete the keys, insert the rows) is one transaction, so re-running a load leaves the
same rows. Column types come from the Arrow schema. Names enter the SQL as ``psycopg.pgsql.Identifier``.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
from psycopg import sql as pgsql
from pydantic import Field

from ecommerce_assets.storage.lake import Lake
from ecommerce_assets.storage.warehouses.base import Warehouse, quote_ident, split_table, sql_literal


def postgres_type(t: pa.DataType) -> str:
    """The PostgreSQL column type for an Arrow type."""
    if pa.types.is_dictionary(t):
        return postgres_type(t.value_type)
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_int8(t) or pa.types.is_int16(t) or pa.types.is_uint8(t):
        return "smallint"
    if pa.types.is_int32(t) or pa.types.is_uint16(t):
        return "integer"
    if pa.types.is_int64(t) or pa.types.is_uint32(t):
        return "bigint"
    if pa.types.is_uint64(t):
        return "numeric(20,0)"
    if pa.types.is_float16(t) or pa.types.is_float32(t):
        return "real"
    if pa.types.is_float64(t):
        return "double precision"
    if pa.types.is_decimal(t):
        return f"numeric({t.precision},{t.scale})"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_timestamp(t):
        return "timestamptz" if t.tz else "timestamp"
    if pa.types.is_time(t):
        return "time"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t):
        return "text"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "bytea"
    if pa.types.is_nested(t):
        return "jsonb"
    raise TypeError(f"no PostgreSQL type for Arrow type {t}")


def _csv_expr(field: pa.Field) -> str:
    """The DuckDB expression that writes ``field`` as text PostgreSQL's COPY (FORMAT csv) accepts."""
    col = quote_ident(field.name)
    t = field.type
    if pa.types.is_nested(t):
        return f"to_json({col})::VARCHAR AS {col}"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return f"'\\x' || hex({col}) AS {col}"
    return col


def to_pyformat(sql_text: str) -> str:
    """``?`` placeholders (DuckDB's, used by the assets) to psycopg's ``%s``, outside quoted text."""
    out: list[str] = []
    quote: str | None = None
    for ch in sql_text:
        if quote:
            out.append("%%" if ch == "%" else ch)
            if ch == quote:
                quote = None
        elif ch in ("'", '"'):
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        elif ch == "%":
            out.append("%%")
        else:
            out.append(ch)
    return "".join(out)


def table_ident(table: str) -> pgsql.Identifier:
    """``schema.name`` (or a bare name, found on the search path) as a quoted identifier."""
    return pgsql.Identifier(*table.split("."))


def _rows_to_arrow(names: list[str], rows: list[tuple[Any, ...]]) -> pa.Table:
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    return pa.table({name: pa.array(list(values)) for name, values in zip(names, columns, strict=True)})


class DsnPasswordError(RuntimeError):
    """A warehouse DSN that carries a password (refused; the message says why and what to do instead).

    Deliberately not a ``ValueError``: pydantic would wrap that in a ValidationError that quotes the input,
    the DSN and its password included."""


DSN_PASSWORD_REFUSED = (
    "the warehouse DSN (ECOMMERCE_WAREHOUSE_DSN) carries a password; it is refused because the DSN is a "
    "setting, not a secret: `ecommerce-assets doctor` prints it, dbt's profile and the table addresses in "
    "asset metadata are built from it, and Dagster keeps what a run logs (the run's snapshot and event log in "
    "DAGSTER_HOME's run storage) and the UI's GraphQL API serves it, so a password in it would be kept and "
    "shown. Remove the password from the DSN and give it to libpq instead: the PGPASSWORD environment "
    "variable, a ~/.pgpass file (or PGPASSFILE), or IAM authentication (Redshift: temporary credentials from "
    "an IAM role)."
)


def dsn_has_password(dsn: str, *, strict: bool = True) -> bool:
    """True when ``dsn`` (a URI or ``key=value`` conninfo) sets a password. A DSN libpq cannot parse is
    an error with ``strict``, else False (it is not a DSN yet: e.g. the name of an ``EnvVar`` to resolve)."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:  # libpq's message may quote the DSN, so it is not repeated
        if not strict:
            return False
        raise DsnPasswordError(
            "the warehouse DSN (ECOMMERCE_WAREHOUSE_DSN) is not a libpq connection string "
            "(postgresql://user@host:port/db or 'host=... user=... dbname=...')"
        ) from None
    return bool(info.get("password"))


class PostgresWarehouse(Warehouse):
    """PostgreSQL as the warehouse (psycopg 3).

    ``dsn`` names the server, database and user, never a password (a DSN with one is refused with
    ``DsnPasswordError``: Dagster keeps resource configuration in its run snapshots and serves it in the
    UI). libpq takes the password from ``PGPASSWORD``, ``~/.pgpass`` or IAM.
    """

    dsn: str = Field(
        repr=False, description="libpq connection string without a password, e.g. postgresql://etl@host:5432/db"
    )
    lake: Lake
    default_schema: str = "public"

    def model_post_init(self, context: Any, /) -> None:
        """Refuse a DSN with a password."""
        super().model_post_init(context)
        if dsn_has_password(self.dsn, strict=False):
            raise DsnPasswordError(DSN_PASSWORD_REFUSED)

    @property
    def kind(self) -> str:
        return "postgres"

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        """A connection in a transaction: committed when the block ends, rolled back on error."""
        with psycopg.connect(self.dsn) as con:
            yield con

    # --- reading the Parquet ----------------------------------------------------------------
    def parquet_schema(self, parquet_uris: Sequence[str]) -> pa.Schema:
        """The Arrow schema of the Parquet files (their footers, read by the lake's DuckDB engine)."""
        con = self.lake.engine()
        try:
            return (
                con.execute("SELECT * FROM read_parquet(?, union_by_name = true) LIMIT 0", [list(parquet_uris)])
                .to_arrow_table()
                .schema
            )
        finally:
            con.close()

    def _create_table_sql(self, table: str, schema: pa.Schema, temporary: bool = False) -> pgsql.Composed:
        cols = pgsql.SQL(", ").join(
            pgsql.SQL("{} {}").format(pgsql.Identifier(f.name), pgsql.SQL(postgres_type(f.type))) for f in schema
        )
        return pgsql.SQL("CREATE {}TABLE {} ({})").format(
            pgsql.SQL("TEMPORARY " if temporary else ""), table_ident(table), cols
        )

    def _load(self, cur: psycopg.Cursor, table: str, schema: pa.Schema, parquet_uris: Sequence[str]) -> None:
        """Stream the Parquet rows into ``table``: DuckDB writes CSV, ``COPY FROM STDIN`` reads it."""
        select = ", ".join(_csv_expr(f) for f in schema)
        copy_in = pgsql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
            table_ident(table), pgsql.SQL(", ").join(pgsql.Identifier(f.name) for f in schema)
        )
        con = self.lake.engine()
        try:
            with tempfile.TemporaryDirectory(prefix="ecommerce-load-") as tmp:
                path = Path(tmp) / "rows.csv"
                con.execute(
                    f"COPY (SELECT {select} FROM read_parquet(?, union_by_name = true)) "  # noqa: S608
                    f"TO {sql_literal(str(path))} (FORMAT csv, HEADER false)",
                    [list(parquet_uris)],
                )
                with cur.copy(copy_in) as copy, path.open("rb") as handle:
                    while chunk := handle.read(1 << 20):
                        copy.write(chunk)
        finally:
            con.close()

    def _ensure_schema(self, cur: psycopg.Cursor, table: str) -> str:
        schema, name = split_table(table, self.default_schema)
        cur.execute(pgsql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(pgsql.Identifier(schema)))
        return f"{schema}.{name}"

    def _count(self, cur: psycopg.Cursor, table: str) -> int:
        cur.execute(pgsql.SQL("SELECT count(*) FROM {}").format(table_ident(table)))
        return int(cur.fetchone()[0])

    def _exists(self, cur: psycopg.Cursor, table: str) -> bool:
        schema, name = split_table(table, self.default_schema)
        cur.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
            [schema, name],
        )
        return int(cur.fetchone()[0]) > 0

    def _merge(
        self, cur: psycopg.Cursor, table: str, stage: str, schema: pa.Schema, key_columns: Sequence[str]
    ) -> None:
        """Delete the target rows whose keys are staged, then insert the staged rows (one transaction)."""
        t, s = table_ident(table), table_ident(stage)
        match = pgsql.SQL(" AND ").join(
            pgsql.SQL("{}.{} = {}.{}").format(t, pgsql.Identifier(k), s, pgsql.Identifier(k)) for k in key_columns
        )
        names = pgsql.SQL(", ").join(pgsql.Identifier(f.name) for f in schema)
        cur.execute(pgsql.SQL("DELETE FROM {} USING {} WHERE {}").format(t, s, match))
        cur.execute(pgsql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(t, names, names, s))

    # --- the interface ----------------------------------------------------------------------
    def replace_table(self, table: str, parquet_uris: Sequence[str]) -> int:
        schema = self.parquet_schema(parquet_uris)
        with self.connect() as con, con.cursor() as cur:
            table = self._ensure_schema(cur, table)
            cur.execute(pgsql.SQL("DROP TABLE IF EXISTS {}").format(table_ident(table)))
            cur.execute(self._create_table_sql(table, schema))
            self._load(cur, table, schema, parquet_uris)
            return self._count(cur, table)

    def replace_rows(self, table: str, parquet_uris: Sequence[str], key_columns: Sequence[str]) -> int:
        if not key_columns:
            raise ValueError(f"replace_rows({table}) needs key columns")
        schema = self.parquet_schema(parquet_uris)
        missing = [k for k in key_columns if k not in schema.names]
        if missing:
            raise ValueError(f"key column(s) {missing} are not in the Parquet for {table}: {schema.names}")
        stage = f"stage_{split_table(table, self.default_schema)[1]}_{uuid.uuid4().hex[:8]}"
        with self.connect() as con, con.cursor() as cur:
            table = self._ensure_schema(cur, table)
            if not self._exists(cur, table):
                cur.execute(self._create_table_sql(table, schema))
            cur.execute(self._create_table_sql(stage, schema, temporary=True))
            self._load(cur, stage, schema, parquet_uris)
            self._merge(cur, table, stage, schema, key_columns)
            cur.execute(pgsql.SQL("DROP TABLE {}").format(table_ident(stage)))
            return self._count(cur, table)

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        with self.connect() as con, con.cursor() as cur:
            cur.execute(to_pyformat(sql) if params else sql, list(params) if params else None)
            names = [d.name for d in cur.description or []]
            return _rows_to_arrow(names, cur.fetchall() if cur.description else [])

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        with self.connect() as con, con.cursor() as cur:
            cur.execute(to_pyformat(sql) if params else sql, list(params) if params else None)

    def table_exists(self, table: str) -> bool:
        with self.connect() as con, con.cursor() as cur:
            return self._exists(cur, table)

    def row_count(self, table: str) -> int:
        with self.connect() as con, con.cursor() as cur:
            return self._count(cur, table)

    def uri(self, table: str) -> str:
        info = psycopg.conninfo.conninfo_to_dict(self.dsn)
        host, port, db = info.get("host", "localhost"), info.get("port", "5432"), info.get("dbname", "")
        return f"{self.kind}://{host}:{port}/{db}#{table}"
