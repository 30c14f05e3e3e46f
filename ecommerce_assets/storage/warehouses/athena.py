"""Athena over the Glue catalog as the warehouse (aws mode).

Tables are versioned Parquet folders under ``warehouse/<schema>/<table>/`` in the lake, registered in Glue
(with their ``date=`` partitions); a replace or merge writes a new version with DuckDB and swaps the Glue
location. Queries run through PyAthena's DB-API cursor: ``?`` placeholders are sent as Athena's
``ExecutionParameters`` (bound by Athena, never interpolated), PyAthena polls the execution, pages through
``GetQueryResults`` and converts each value by its Athena type; the rows come back as Arrow.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyathena
from pyathena.arrow.converter import DefaultArrowTypeConverter
from pyathena.connection import Connection
from pyathena.cursor import Cursor
from pyathena.error import OperationalError
from pyathena.model import AthenaQueryExecution

from ecommerce_assets.storage.glue_table_catalog import GlueCatalog, glue_name, partition_values
from ecommerce_assets.storage.lake import Lake
from ecommerce_assets.storage.warehouses.base import Warehouse, quote_ident, split_table, sql_literal

_ARROW_TYPES = DefaultArrowTypeConverter()  # PyAthena's Athena -> Arrow type table (its ArrowCursor's)
_TEXT_TYPES = frozenset({"char", "varchar", "string"})
_UNSUCCESSFUL = (AthenaQueryExecution.STATE_FAILED, AthenaQueryExecution.STATE_CANCELLED)


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


def arrow_type(athena_type: str, precision: int = 0, scale: int = 0) -> pa.DataType | None:
    """The Arrow type of an Athena result column, or None where Arrow should infer it from the values.

    PyAthena's Arrow table for scalars (booleans, integers, floats, text, timestamps); a date is ``date32`` and
    a decimal keeps its precision and scale. Binary, time, JSON and nested columns (PyAthena's ``string`` for
    its CSV reader) take the type of the Python values PyAthena converted them to.
    """
    if athena_type == "decimal" and precision > 0:
        return pa.decimal128(precision, scale)
    if athena_type == "date":
        return pa.date32()
    dtype = _ARROW_TYPES.get_dtype(athena_type, precision, scale)
    if dtype is not None and pa.types.is_string(dtype) and athena_type not in _TEXT_TYPES:
        return None
    return dtype


def _arrow_column(values: list[Any], athena_type: str, precision: int, scale: int) -> pa.Array:
    """One result column as Arrow from PyAthena's Python values (typed even when every value is NULL)."""
    dtype = arrow_type(athena_type, precision, scale)
    if dtype is not None:
        try:
            return pa.array(values, type=dtype)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # values the declared type cannot hold: Arrow infers
            pass
    return pa.array(values)


class AthenaWarehouse(Warehouse):
    """Athena over the Glue catalog: tables are Parquet in the lake, queries run through PyAthena."""

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

    def connect(self) -> Connection[Cursor]:
        """A PyAthena connection: the workgroup, the results location and the default database."""
        return pyathena.connect(
            s3_staging_dir=self.output_location or self.lake.uri("athena-results/"),
            work_group=self.workgroup,
            schema_name=glue_name(self.default_schema),
            region_name=self.region_name,
            endpoint_url=self.endpoint_url,
            poll_interval=self.poll_seconds,
        )

    def _names(self, table: str) -> tuple[str, str]:
        schema, name = split_table(table, self.default_schema)
        return glue_name(schema), glue_name(name)

    def table_location_key(self, table: str) -> str:
        """The lake prefix that holds the versions of ``table``."""
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

    # --- queries through Athena ---------------------------------------------------------------
    def run(self, sql: str, params: Sequence[Any] | None = None) -> Cursor:
        """Run ``sql`` to its end and return the PyAthena cursor holding its result.

        ``?`` placeholders are bound by Athena (``ExecutionParameters``, each value as its literal text). A query
        that fails or is cancelled raises ``RuntimeError`` naming its id, state and reason; one still running
        after ``timeout_seconds`` is stopped and raises ``TimeoutError``.
        """
        deadline = time.monotonic() + self.timeout_seconds
        last: list[AthenaQueryExecution] = []

        def watch(execution: AthenaQueryExecution) -> None:  # PyAthena calls it on every poll; it has no deadline
            last[:] = [execution]
            running = execution.state not in (*_UNSUCCESSFUL, AthenaQueryExecution.STATE_SUCCEEDED)
            if running and time.monotonic() > deadline:
                cursor.cancel()
                raise TimeoutError(
                    f"Athena query {execution.query_id} still {execution.state} after {self.timeout_seconds}s"
                )

        cursor = self.connect().cursor(on_poll=watch)
        try:
            cursor.execute(sql, [athena_literal(p) for p in params or ()] or None, paramstyle="qmark")
        except OperationalError as err:
            if not last or last[0].state not in _UNSUCCESSFUL:
                raise
            execution = last[0]
            raise RuntimeError(
                f"Athena query {execution.query_id} {execution.state}: {execution.state_change_reason or ''}\n{sql}"
            ) from err
        return cursor

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        cursor = self.run(sql, params)
        description = cursor.description or []
        rows = cursor.fetchall()
        columns = [
            _arrow_column([row[i] for row in rows], d[1], d[4] or 0, d[5] or 0) for i, d in enumerate(description)
        ]
        return pa.Table.from_arrays(columns, names=[d[0] for d in description])

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        self.run(sql, params)

    def table_exists(self, table: str) -> bool:
        return self.glue.table_exists(*self._names(table))

    def row_count(self, table: str) -> int:
        """Counted from the table's Parquet footers (no Athena scan, no cost)."""
        schema, name = self._names(table)
        location = self.glue.get_table(schema, name)["StorageDescriptor"]["Location"]
        con = self.lake.engine()
        try:
            files = [
                self.lake.uri(o.key)
                for o in self.lake.list_objects(self.lake_key(location))
                if o.key.endswith(".parquet")
            ]
            if not files:
                return 0
            return int(con.execute("SELECT sum(num_rows) FROM parquet_file_metadata(?)", [files]).fetchone()[0])
        finally:
            con.close()

    def lake_key(self, location: str) -> str:
        """The lake key of an ``s3://`` location (the location itself for a local lake)."""
        key_of = getattr(self.lake, "key_of", None)
        return key_of(location) if key_of else location

    def uri(self, table: str) -> str:
        schema, name = self._names(table)
        return f"athena://{self.workgroup}/{schema}.{name}"
