"""Warehouses for aws mode: PostgreSQL, Redshift and Athena, behind the same ``Warehouse`` interface.

The transforms write Parquet into the lake; these classes *load* it:

* ``PostgresWarehouse``: DuckDB (the lake engine) reads the Parquet and streams it as CSV into
  ``COPY ... FROM STDIN``; a replace or a merge (delete the keys, insert the rows) is one transaction,
  so re-running a load leaves the same rows. Column types come from the Arrow schema.
* ``RedshiftWarehouse``: the same transactions and merge, but tables are created with the star schema's
  DISTKEY/SORTKEY and loaded by ``COPY ... FROM 's3://...manifest' IAM_ROLE ... FORMAT AS PARQUET
  MANIFEST`` into a staging table. With ``postgres_compat`` it runs on a PostgreSQL server: the
  Redshift-only statements are generated and kept in ``redshift_statements`` (the tests check them with
  sqlglot's Redshift parser) and their PostgreSQL equivalents run instead; everything else is the same SQL.
* ``AthenaWarehouse``: tables are versioned Parquet folders under ``warehouse/<schema>/<table>/`` in the
  lake, registered in Glue (with their ``date=`` partitions); a replace or merge writes a new version with
  DuckDB and swaps the Glue location; queries go through Athena's API.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import psycopg
import pyarrow as pa
from pydantic import Field, PrivateAttr

from ecommerce_assets.resources.glue_catalog import GlueCatalog, glue_name, partition_values
from ecommerce_assets.resources.lake import Lake
from ecommerce_assets.resources.s3_lake import sql_literal
from ecommerce_assets.resources.warehouse import Warehouse, quote_ident

# The star schema's distribution and sort keys (issue 7), by table name.
STAR_SCHEMA_KEYS: dict[str, str] = {
    "customers": "DISTSTYLE KEY DISTKEY(customerid)",
    "products": "SORTKEY(stockcode)",
    "sales_transactions": "DISTSTYLE KEY DISTKEY(customerid) SORTKEY(invoicedate)",
}
_KEY_COLUMNS = re.compile(r"(?:DISTKEY|SORTKEY)\s*\(([^)]*)\)", re.IGNORECASE)


# --- types --------------------------------------------------------------------------------------
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


def _csv_expr(field: pa.Field) -> str:
    """The DuckDB expression that writes ``field`` as text PostgreSQL's COPY (FORMAT csv) accepts."""
    col = quote_ident(field.name)
    t = field.type
    if pa.types.is_nested(t):
        return f"to_json({col})::VARCHAR AS {col}"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return f"'\\x' || hex({col}) AS {col}"
    return col


def to_pyformat(sql: str) -> str:
    """``?`` placeholders (DuckDB's, used by the assets) to psycopg's ``%s``, outside quoted text."""
    out: list[str] = []
    quote: str | None = None
    for ch in sql:
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


def _split(table: str, default_schema: str) -> tuple[str, str]:
    schema, _, name = table.rpartition(".")
    return schema or default_schema, name


def _rows_to_arrow(names: list[str], rows: list[tuple[Any, ...]]) -> pa.Table:
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    return pa.table({name: pa.array(list(values)) for name, values in zip(names, columns, strict=True)})


# --- PostgreSQL ---------------------------------------------------------------------------------
class DsnPasswordError(RuntimeError):
    """A warehouse DSN that carries a password (refused; the message says why and what to do instead).

    Deliberately not a ``ValueError``: pydantic would wrap that in a ValidationError that quotes the input,
    the DSN and its password included."""


DSN_PASSWORD_REFUSED = (
    "the warehouse DSN (ECOMMERCE_WAREHOUSE_DSN) carries a password; it is refused because Dagster stores "
    "a resource's configuration in every run's snapshot (in DAGSTER_HOME's run storage) and the UI's GraphQL "
    "API serves it, so the password would be kept and shown to anyone who can open the UI. Remove the "
    "password from the DSN and give it to libpq instead: the PGPASSWORD environment variable, a ~/.pgpass "
    "file (or PGPASSFILE), or IAM authentication (Redshift: temporary credentials from an IAM role)."
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
    UI). libpq takes the password from ``PGPASSWORD``, ``~/.pgpass`` or IAM. ``dsn`` may also come from
    ``dg.EnvVar('ECOMMERCE_WAREHOUSE_DSN')``; it is checked once resolved.
    """

    dsn: str = Field(repr=False, description="libpq connection string without a password, e.g. postgresql://etl@host:5432/db")
    lake: Lake
    default_schema: str = "public"

    def model_post_init(self, context: Any, /) -> None:
        """Refuse a DSN with a password (an ``EnvVar`` is checked when Dagster resolves it for a run)."""
        super().model_post_init(context)
        if not isinstance(self.dsn, dg.EnvVar) and dsn_has_password(self.dsn, strict=False):
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
        con = self.lake.engine()
        try:
            return con.execute(
                "SELECT * FROM read_parquet(?, union_by_name = true) LIMIT 0", [list(parquet_uris)]
            ).to_arrow_table().schema
        finally:
            con.close()

    def _create_table_sql(self, table: str, schema: pa.Schema, temporary: bool = False) -> str:
        cols = ", ".join(f"{quote_ident(f.name)} {postgres_type(f.type)}" for f in schema)
        return f"CREATE {'TEMPORARY ' if temporary else ''}TABLE {quote_ident(table)} ({cols})"

    def _load(self, cur: psycopg.Cursor, table: str, schema: pa.Schema, parquet_uris: Sequence[str]) -> None:
        """Stream the Parquet rows into ``table``: DuckDB writes CSV, ``COPY FROM STDIN`` reads it."""
        names = ", ".join(quote_ident(f.name) for f in schema)
        select = ", ".join(_csv_expr(f) for f in schema)
        con = self.lake.engine()
        try:
            with tempfile.TemporaryDirectory(prefix="ecommerce-load-") as tmp:
                path = Path(tmp) / "rows.csv"
                con.execute(
                    f"COPY (SELECT {select} FROM read_parquet(?, union_by_name = true)) "  # noqa: S608
                    f"TO {sql_literal(str(path))} (FORMAT csv, HEADER false)",
                    [list(parquet_uris)],
                )
                with cur.copy(f"COPY {quote_ident(table)} ({names}) FROM STDIN (FORMAT csv)") as copy:
                    with path.open("rb") as handle:
                        while chunk := handle.read(1 << 20):
                            copy.write(chunk)
        finally:
            con.close()

    def _ensure_schema(self, cur: psycopg.Cursor, table: str) -> str:
        schema, name = _split(table, self.default_schema)
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
        return f"{schema}.{name}"

    def _count(self, cur: psycopg.Cursor, table: str) -> int:
        cur.execute(f"SELECT count(*) FROM {quote_ident(table)}")  # noqa: S608
        return int(cur.fetchone()[0])

    # --- the interface ----------------------------------------------------------------------
    def replace_table(self, table: str, parquet_uris: Sequence[str]) -> int:
        schema = self.parquet_schema(parquet_uris)
        with self.connect() as con, con.cursor() as cur:
            table = self._ensure_schema(cur, table)
            cur.execute(f"DROP TABLE IF EXISTS {quote_ident(table)}")
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
        stage = f"stage_{_split(table, self.default_schema)[1]}_{uuid.uuid4().hex[:8]}"
        with self.connect() as con, con.cursor() as cur:
            table = self._ensure_schema(cur, table)
            if not self._exists(cur, table):
                cur.execute(self._create_table_sql(table, schema))
            cur.execute(self._create_table_sql(stage, schema, temporary=True))
            self._load(cur, stage, schema, parquet_uris)
            self._merge(cur, table, stage, schema, key_columns)
            cur.execute(f"DROP TABLE {quote_ident(stage)}")
            return self._count(cur, table)

    def _merge(
        self, cur: psycopg.Cursor, table: str, stage: str, schema: pa.Schema, key_columns: Sequence[str]
    ) -> None:
        """Delete the target rows whose keys are staged, then insert the staged rows (one transaction)."""
        t, s = quote_ident(table), quote_ident(stage)
        match = " AND ".join(f"{t}.{quote_ident(k)} = {s}.{quote_ident(k)}" for k in key_columns)
        names = ", ".join(quote_ident(f.name) for f in schema)
        cur.execute(f"DELETE FROM {t} USING {s} WHERE {match}")  # noqa: S608
        cur.execute(f"INSERT INTO {t} ({names}) SELECT {names} FROM {s}")  # noqa: S608

    def _exists(self, cur: psycopg.Cursor, table: str) -> bool:
        schema, name = _split(table, self.default_schema)
        cur.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
            [schema, name],
        )
        return int(cur.fetchone()[0]) > 0

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

    def uri(self, table: str) -> str:
        info = psycopg.conninfo.conninfo_to_dict(self.dsn)
        host, port, db = info.get("host", "localhost"), info.get("port", "5432"), info.get("dbname", "")
        return f"{self.kind}://{host}:{port}/{db}#{table}"


# --- Redshift -----------------------------------------------------------------------------------
class RedshiftWarehouse(PostgresWarehouse):
    """Amazon Redshift: star-schema DISTKEY/SORTKEY tables, loads by ``COPY ... IAM_ROLE ... FORMAT AS PARQUET``.

    ``iam_role`` is the role Redshift assumes to read the lake. ``table_options`` maps a table name to its
    distribution/sort clause. ``postgres_compat`` runs the class against PostgreSQL (tests, rehearsals).
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

    def redshift_create_table_sql(self, table: str, schema: pa.Schema) -> str:
        """``CREATE TABLE`` in Redshift's dialect with the table's DISTKEY/SORTKEY."""
        cols = ", ".join(f"{quote_ident(f.name)} {redshift_type(f.type)}" for f in schema)
        options = self.table_options.get(_split(table, self.default_schema)[1], "")
        for group in _KEY_COLUMNS.findall(options):
            for col in (c.strip() for c in group.split(",")):
                if col not in schema.names:
                    raise ValueError(f"{table}: key column {col!r} of {options!r} is not among {schema.names}")
        return f"CREATE TABLE {quote_ident(table)} ({cols}) {options}".rstrip()

    def redshift_copy_sql(self, table: str, manifest_uri: str) -> str:
        """``COPY`` the Parquet files listed in a manifest into ``table``."""
        if not manifest_uri.startswith("s3://"):
            raise ValueError(f"Redshift COPY needs an s3:// manifest, got {manifest_uri!r}")
        return (
            f"COPY {quote_ident(table)} FROM {sql_literal(manifest_uri)} "
            f"IAM_ROLE {sql_literal(self.iam_role)} FORMAT AS PARQUET MANIFEST"
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

    def _create_table_sql(self, table: str, schema: pa.Schema, temporary: bool = False) -> str:
        if temporary:  # staging tables: plain columns, the same SQL in both dialects
            return super()._create_table_sql(table, schema, temporary=True)
        statement = self.redshift_create_table_sql(table, schema)
        self._statements.append(statement)
        return super()._create_table_sql(table, schema) if self.postgres_compat else statement

    def _load(self, cur: psycopg.Cursor, table: str, schema: pa.Schema, parquet_uris: Sequence[str]) -> None:
        statement = self.redshift_copy_sql(table, self.write_manifest(parquet_uris))
        self._statements.append(statement)
        if self.postgres_compat:
            super()._load(cur, table, schema, parquet_uris)
        else:
            cur.execute(statement)


# --- Athena -------------------------------------------------------------------------------------
_ATHENA_TYPES: dict[str, pa.DataType] = {
    "boolean": pa.bool_(),
    "tinyint": pa.int8(),
    "smallint": pa.int16(),
    "integer": pa.int32(),
    "int": pa.int32(),
    "bigint": pa.int64(),
    "float": pa.float32(),
    "real": pa.float32(),
    "double": pa.float64(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("ms"),
}


def athena_literal(value: Any) -> str:
    """An Athena ExecutionParameters value: the SQL literal text of ``value``."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        return f"timestamp '{value.isoformat(sep=' ')}'"
    if isinstance(value, dt.date):
        return f"date '{value.isoformat()}'"
    return sql_literal(str(value))


class AthenaWarehouse(Warehouse):
    """Athena over the Glue catalog: tables are Parquet in the lake, queries run through Athena's API."""

    lake: Lake
    glue: GlueCatalog
    workgroup: str = "primary"
    output_location: str | None = None  # s3:// for results; default <lake>/athena-results/
    region_name: str | None = None
    endpoint_url: str | None = None
    default_schema: str = "ecommerce"
    table_prefix: str = "warehouse/"
    poll_seconds: float = 0.5
    timeout_seconds: float = 900.0

    @property
    def kind(self) -> str:
        return "athena"

    def client(self) -> Any:
        return boto3.client("athena", region_name=self.region_name, endpoint_url=self.endpoint_url)

    def _names(self, table: str) -> tuple[str, str]:
        schema, name = _split(table, self.default_schema)
        return glue_name(schema), glue_name(name)

    def table_location_key(self, table: str) -> str:
        schema, name = self._names(table)
        return f"{self.table_prefix}{schema}/{name}/"

    # --- writing versions -------------------------------------------------------------------
    def _write_version(self, table: str, select_sql: str, params: list[Any], partitioned: bool) -> tuple[str, int]:
        base = self.table_location_key(table)
        version = f"{base}v={dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}/"
        con = self.lake.engine()
        try:
            target = sql_literal(self.lake.uri(version))
            options = "FORMAT parquet, PARTITION_BY (date), OVERWRITE_OR_IGNORE" if partitioned else "FORMAT parquet"
            if not partitioned:
                target = sql_literal(self.lake.uri(version + "part-0.parquet"))
            con.execute(f"CREATE TEMP TABLE v AS {select_sql}", params)
            count = int(con.execute("SELECT count(*) FROM v").fetchone()[0])
            con.execute(f"COPY v TO {target} ({options})")
        finally:
            con.close()
        return version, count

    def _register(self, table: str, version: str) -> None:
        schema, name = self._names(table)
        self.glue.register_lake_prefix(self.lake, version, schema, name)
        base = self.table_location_key(table)
        for old in self.lake.list_prefixes(base):
            if old != version:
                self.lake.delete_prefix(old)

    @staticmethod
    def _is_partitioned(parquet_uris: Sequence[str]) -> bool:
        return all(partition_values(u, ["date"]) is not None for u in parquet_uris)

    def replace_table(self, table: str, parquet_uris: Sequence[str]) -> int:
        partitioned = self._is_partitioned(parquet_uris)
        hive = str(partitioned).lower()
        select = f"SELECT * FROM read_parquet(?, hive_partitioning = {hive}, union_by_name = true)"  # noqa: S608
        version, count = self._write_version(table, select, [list(parquet_uris)], partitioned)
        self._register(table, version)
        return count

    def replace_rows(self, table: str, parquet_uris: Sequence[str], key_columns: Sequence[str]) -> int:
        if not self.table_exists(table):
            return self.replace_table(table, parquet_uris)
        schema, name = self._names(table)
        current = self.glue.get_table(schema, name)["StorageDescriptor"]["Location"]
        partitioned = self._is_partitioned(parquet_uris)
        hive = str(partitioned).lower()
        match = " AND ".join(f"n.{quote_ident(k)} = o.{quote_ident(k)}" for k in key_columns)
        old_glob = current.rstrip("/") + ("/*/*.parquet" if partitioned else "/*.parquet")
        select = (
            f"SELECT * FROM read_parquet(?, hive_partitioning = {hive}, union_by_name = true) AS o "  # noqa: S608
            f"WHERE NOT EXISTS (SELECT 1 FROM read_parquet(?, hive_partitioning = {hive}, union_by_name = true) AS n "
            f"WHERE {match}) "
            f"UNION ALL BY NAME SELECT * FROM read_parquet(?, hive_partitioning = {hive}, union_by_name = true)"
        )
        uris = list(parquet_uris)
        version, count = self._write_version(table, select, [old_glob, uris, uris], partitioned)
        self._register(table, version)
        return count

    # --- queries through the Athena API -------------------------------------------------------
    def start_query(self, sql: str, params: Sequence[Any] | None = None) -> str:
        request: dict[str, Any] = {
            "QueryString": sql,
            "QueryExecutionContext": {"Database": glue_name(self.default_schema)},
            "WorkGroup": self.workgroup,
            "ResultConfiguration": {"OutputLocation": self.output_location or self.lake.uri("athena-results/")},
        }
        if params:
            request["ExecutionParameters"] = [athena_literal(p) for p in params]
        return self.client().start_query_execution(**request)["QueryExecutionId"]

    def wait(self, query_id: str) -> dict[str, Any]:
        athena = self.client()
        deadline = time.monotonic() + self.timeout_seconds
        while True:
            execution = athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
            state = execution["Status"]["State"]
            if state == "SUCCEEDED":
                return execution
            if state in ("FAILED", "CANCELLED"):
                reason = execution["Status"].get("StateChangeReason", "")
                raise RuntimeError(f"Athena query {query_id} {state}: {reason}\n{execution.get('Query', '')}")
            if time.monotonic() > deadline:
                athena.stop_query_execution(QueryExecutionId=query_id)
                raise TimeoutError(f"Athena query {query_id} still {state} after {self.timeout_seconds}s")
            time.sleep(self.poll_seconds)

    def results(self, query_id: str) -> pa.Table:
        """The query's result set as Arrow, typed from Athena's column metadata."""
        athena = self.client()
        names: list[str] = []
        types: list[str] = []
        rows: list[list[str | None]] = []
        first = True
        for page in athena.get_paginator("get_query_results").paginate(QueryExecutionId=query_id):
            result = page["ResultSet"]
            if not names:
                info = result.get("ResultSetMetadata", {}).get("ColumnInfo", [])
                names = [c["Name"] for c in info]
                types = [c.get("Type", "varchar").lower() for c in info]
            page_rows = [[d.get("VarCharValue") for d in r.get("Data", [])] for r in result.get("Rows", [])]
            if first and page_rows and page_rows[0] == names:
                page_rows = page_rows[1:]  # SELECT results repeat the header as the first row
            first = False
            rows.extend(page_rows)
        columns = {}
        for i, (name, kind) in enumerate(zip(names, types, strict=True)):
            values = pa.array([r[i] if i < len(r) else None for r in rows], type=pa.string())
            target = _ATHENA_TYPES.get(kind)
            if kind.startswith("decimal"):
                target = pa.float64()
            columns[name] = values.cast(target) if target is not None else values
        return pa.table(columns) if columns else pa.table({})

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        query_id = self.start_query(sql, params)
        self.wait(query_id)
        return self.results(query_id)

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        self.wait(self.start_query(sql, params))

    def table_exists(self, table: str) -> bool:
        return self.glue.table_exists(*self._names(table))

    def row_count(self, table: str) -> int:
        """Counted from the table's Parquet footers (no Athena scan, no cost)."""
        schema, name = self._names(table)
        location = self.glue.get_table(schema, name)["StorageDescriptor"]["Location"]
        con = self.lake.engine()
        try:
            files = [self.lake.uri(o.key) for o in self.lake.list_objects(self.lake_key(location))
                     if o.key.endswith(".parquet")]
            if not files:
                return 0
            return int(con.execute("SELECT sum(num_rows) FROM parquet_file_metadata(?)", [files]).fetchone()[0])
        finally:
            con.close()

    def lake_key(self, location: str) -> str:
        key_of = getattr(self.lake, "key_of", None)
        return key_of(location) if key_of else location

    def uri(self, table: str) -> str:
        schema, name = self._names(table)
        return f"athena://{self.workgroup}/{schema}.{name}"
