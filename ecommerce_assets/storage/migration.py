"""From the plain Parquet processed zone (before Iceberg) to the Iceberg tables, with counts checked.

A data dir or bucket written before the processed zone became Apache Iceberg tables holds plain Parquet folders:

| legacy layout | Iceberg table | partition (slice) |
| --- | --- | --- |
| ``processed/transactions/date=<d>/*.parquet`` | ``transactions`` | ``date`` |
| ``processed/online_retail/cleaned/invoice_month=<m>/*.parquet`` | ``online_retail_cleaned`` | ``invoice_month`` |
| ``processed/catalog/snapshots/seller=<s>/date=<d>/products.parquet`` | ``catalog_snapshots`` | ``seller_id``, ``snapshot_date`` |
| ``processed/orders/<source>/cleaned.parquet`` | ``orders_<source>`` | (whole table) |
| ``processed/stream/order_lines/<d>/batch-<first>-<last>.parquet`` | ``stream_order_lines`` | ``batch_date``, ``batch`` |

``migrate`` converts each legacy partition in its own commit (so a migration stopped midway resumes where it
stopped), then reads the partition back from the table and compares the row count with the legacy files'. Only
when they match are the legacy files deleted; a mismatch raises ``MigrationError`` and leaves them. A partition the
table already holds was re-made by the product after the change: the table's rows are newer, the legacy files are
superseded and deleted without a commit. On AWS, a Glue entry of the same name that is not an Iceberg table (the
Parquet table the Glue registration made before) is dropped first, so that the Iceberg table can take its name.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ecommerce_assets.storage import zones

if TYPE_CHECKING:
    import pyarrow as pa

    from ecommerce_assets.storage.iceberg import IcebergTables
    from ecommerce_assets.storage.lake import Lake

ORDERS_SOURCES = ("orders", "customers", "products", "api_products")


class MigrationError(RuntimeError):
    """A migrated partition does not hold the legacy rows: nothing of it was deleted."""


@dataclass(frozen=True)
class LegacyPart:
    """One legacy partition: its Parquet files and the Iceberg table's slice they become."""

    table: str
    partition_by: tuple[str, ...]
    where: dict[str, Any]  # the slice: the partition columns and, for a stream batch, its name
    keys: tuple[str, ...]
    add_columns: dict[str, Any] = field(default_factory=dict)  # columns the files lack (taken from the path)


@dataclass
class TableMigration:
    """What the migration did to one table."""

    table: str
    partitions: int = 0
    superseded: int = 0  # legacy partitions the table already had (newer rows): deleted, not committed
    legacy_files: int = 0
    legacy_rows: int = 0
    rows_committed: int = 0

    def line(self) -> str:
        return (f"{self.table}: {self.partitions} partition(s), {self.legacy_rows:,} legacy rows -> "
                f"{self.rows_committed:,} rows committed (counts match); {self.superseded} superseded; "
                f"{self.legacy_files} legacy file(s) removed")


_PATTERNS: list[tuple[re.Pattern[str], Callable[[re.Match[str]], tuple[str, tuple[str, ...], dict, dict]]]] = [
    (
        re.compile(rf"^{re.escape(zones.TRANSACTIONS_PROCESSED)}date=(\d{{4}}-\d{{2}}-\d{{2}})/[^/]+\.parquet$"),
        lambda m: ("transactions", ("date",), {"date": dt.date.fromisoformat(m[1])},
                   {"date": dt.date.fromisoformat(m[1])}),
    ),
    (
        re.compile(rf"^{re.escape(zones.LEGACY_RETAIL_CLEANED)}invoice_month=([^/]+)/[^/]+\.parquet$"),
        lambda m: ("online_retail_cleaned", ("invoice_month",), {"invoice_month": m[1]}, {"invoice_month": m[1]}),
    ),
    (
        re.compile(rf"^{re.escape(zones.LEGACY_CATALOG_SNAPSHOTS)}seller=([^/]+)/date=(\d{{4}}-\d{{2}}-\d{{2}})/"
                   r"products\.parquet$"),
        lambda m: ("catalog_snapshots", ("seller_id", "snapshot_date"),
                   {"seller_id": m[1], "snapshot_date": dt.date.fromisoformat(m[2])}, {}),
    ),
    (
        re.compile(rf"^{re.escape(zones.LEGACY_ORDERS)}({'|'.join(ORDERS_SOURCES)})/cleaned\.parquet$"),
        lambda m: (f"orders_{m[1]}", (), {}, {}),
    ),
    (
        re.compile(rf"^{re.escape(zones.LEGACY_STREAM_LINES)}(\d{{4}}-\d{{2}}-\d{{2}})/(batch-[^/]+)\.parquet$"),
        lambda m: ("stream_order_lines", ("batch_date",),
                   {"batch_date": dt.date.fromisoformat(m[1]), "batch": m[2]},
                   {"batch_date": dt.date.fromisoformat(m[1]), "batch": m[2]}),
    ),
]
LEGACY_PREFIXES = (
    zones.TRANSACTIONS_PROCESSED,
    zones.LEGACY_RETAIL_CLEANED,
    zones.LEGACY_CATALOG_SNAPSHOTS,
    zones.LEGACY_ORDERS,
    zones.LEGACY_STREAM_LINES,
)


def legacy_parts(lake: Lake) -> list[LegacyPart]:
    """Every legacy partition in the lake (none once migrated), in a stable order."""
    grouped: dict[tuple[str, str], tuple[tuple[str, ...], dict, dict, list[str]]] = {}
    for prefix in LEGACY_PREFIXES:
        for obj in lake.list_objects(prefix):
            for pattern, describe in _PATTERNS:
                m = pattern.match(obj.key)
                if m:
                    table, partition_by, where, add = describe(m)
                    slot = grouped.setdefault((table, repr(sorted(where.items()))), (partition_by, where, add, []))
                    slot[3].append(obj.key)
                    break
    return [
        LegacyPart(table, partition_by, where, tuple(sorted(keys)), add)
        for (table, _), (partition_by, where, add, keys) in sorted(grouped.items())
    ]


def _read(lake: Lake, part: LegacyPart) -> pa.Table:
    """The legacy rows of a partition, with the columns the path carried (replacing any of the same name)."""
    import pyarrow as pa

    con = lake.engine()
    try:
        rows = con.read_parquet([lake.uri(k) for k in part.keys], hive_partitioning=False,
                                union_by_name=True).to_arrow_table()
    finally:
        con.close()
    for column, value in part.add_columns.items():
        if column in rows.column_names:
            rows = rows.drop_columns([column])
        kind = pa.date32() if isinstance(value, dt.date) else pa.string()
        rows = rows.append_column(pa.field(column, kind, nullable=False), pa.array([value] * rows.num_rows, kind))
    return rows


def _table_has(tables: IcebergTables, part: LegacyPart) -> bool:
    """Whether the table already holds rows of the partition (its files, for a whole partition; its rows, for a
    slice inside one, since a compacted file holds many slices)."""
    if not tables.exists(part.table) or tables.current_snapshot_id(part.table) is None:
        return False
    if set(part.where) == set(part.partition_by):
        return bool(tables.data_files(part.table, partition=part.where or None))
    return tables.read(part.table, where=part.where, columns=list(part.partition_by)).num_rows > 0


def migrate(lake: Lake, tables: IcebergTables, log: Callable[[str], None] | None = None) -> list[TableMigration]:
    """Convert every legacy partition into its Iceberg table (one commit each), check its rows, delete its files."""
    done: dict[str, TableMigration] = {}
    for part in legacy_parts(lake):
        if part.table not in done:
            done[part.table] = TableMigration(part.table)
            tables.drop_non_iceberg_entry(part.table)
        report = done[part.table]
        if _table_has(tables, part):
            report.superseded += 1
        else:
            rows = _read(lake, part)
            tables.ensure_table(part.table, rows.schema, part.partition_by)
            tables.write(part.table, rows, [part.where] if part.where else None,
                         properties={"ecommerce.operation": "migrate", "ecommerce.partition": _label(part)})
            got = tables.read(part.table, where=part.where or None).num_rows
            if got != rows.num_rows:
                raise MigrationError(
                    f"{tables.identifier(part.table)} {_label(part)}: {got} rows after the commit, the legacy "
                    f"files hold {rows.num_rows}; the legacy files are kept: {', '.join(part.keys[:3])}"
                )
            report.partitions += 1
            report.legacy_rows += rows.num_rows
            report.rows_committed += got
        for key in part.keys:
            lake.delete_prefix(key)
        report.legacy_files += len(part.keys)
    for report in done.values():
        if log:
            log(report.line())
    return list(done.values())


def _label(part: LegacyPart) -> str:
    return ",".join(f"{k}={v}" for k, v in part.where.items()) or "(whole table)"


def pending(lake: Lake) -> Iterator[str]:
    """The tables that still have legacy partitions (what ``ecommerce-assets run`` migrates first)."""
    seen: set[str] = set()
    for part in legacy_parts(lake):
        if part.table not in seen:
            seen.add(part.table)
            yield part.table
