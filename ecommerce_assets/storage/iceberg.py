"""Apache Iceberg tables for the processed zone (issue 15): one commit per write, history, rollback.

The tables live in the lake, below ``processed/<table>/`` (``data/`` and ``metadata/`` under it); a catalog
records which ``metadata.json`` is current. Locally the catalog is pyiceberg's ``SqlCatalog`` on a SQLite file
in the data dir; on AWS it is the Glue Data Catalog, where the table is an ``ICEBERG`` table Athena reads.

A write replaces whole partitions (identity partitions) in **one** catalog commit: readers see the old rows
or the new ones, never a mix, and a writer killed at any point leaves only unreferenced files behind. New
columns are added (nullable) in the same commit; a column whose type changed is refused with
``IcebergSchemaConflict``. A commit that lost a race (``CommitFailedException``) or whose partitions another
writer changed meanwhile (``ValidationException``) is re-applied on the refreshed table, a bounded number of
times.

DuckDB reads the tables with its ``iceberg`` extension, loaded offline from the ``duckdb-extension-iceberg``
wheel after ``avro`` (``duckdb-extension-avro``), which the iceberg extension needs and would otherwise try to
download.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache, reduce
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import PrivateAttr

from ecommerce_assets.settings import Settings
from ecommerce_assets.storage import zones
from ecommerce_assets.storage.base import StorageModel, StorageSettingError

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa
    from pyiceberg.catalog import Catalog
    from pyiceberg.expressions import BooleanExpression
    from pyiceberg.table import Table, Transaction

CATALOG_FILE = "iceberg_catalog.db"  # the local catalog, in ECOMMERCE_DATA_DIR
LOCAL_NAMESPACE = "processed"
TABLE_PROPERTIES = {
    # keep the metadata folder bounded, but far enough back that a view pinned to an older metadata.json lives on
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "100",
}
EXTENSION_DIR = "duckdb_extensions"  # DuckDB's private extension folder, in ECOMMERCE_DATA_DIR
# the FileIO of the Glue catalog (its own module: this one imports no pyarrow, so definitions load light)
IO_IMPL = "ecommerce_assets.storage.iceberg_io.DelayedOpenPyArrowFileIO"
COMMIT_ID = "ecommerce.commit-id"  # in the summary of every snapshot a write or compaction adds
_NO_MATCH_WARNING = (
    "Delete operation did not match any records"  # pyiceberg's warning when a partition is new
)


class IcebergSchemaConflict(ValueError):
    """The data has a column whose type differs from the table's (and is not a widening Iceberg allows)."""

    def __init__(self, table: str, column: str, table_type: str, data_type: str) -> None:
        self.table, self.column, self.table_type, self.data_type = table, column, table_type, data_type
        super().__init__(
            f"column {column!r} of {table} is {table_type} in the table but {data_type} in the data: "
            "the table is unchanged (a type change is never cast; quarantine the data or migrate the table)"
        )


@dataclass(frozen=True)
class IcebergCommit:
    """What one commit did, read from its snapshot summary (for Dagster metadata)."""

    table: str
    snapshot_id: int | None
    added_data_files: int
    added_files_size: int
    added_records: int
    deleted_records: int
    total_records: int
    new_columns: tuple[str, ...]
    metadata_location: str
    attempts: int
    columns: tuple[tuple[str, str, bool], ...] = ()  # the table's schema after the commit: (name, type, required)


@dataclass(frozen=True)
class IcebergSnapshot:
    """One snapshot of a table's history."""

    snapshot_id: int
    parent_id: int | None
    timestamp_ms: int
    operation: str
    current: bool
    summary: dict[str, str] = field(default_factory=dict)


# --- Arrow types Iceberg cannot take as they are ---------------------------------------------------------
def _normal_type(t: pa.DataType) -> pa.DataType:
    """The Arrow type a column is written as: Iceberg has no ns timestamps, zones other than UTC, unsigned or null."""
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        return _normal_type(t.value_type)
    if pa.types.is_timestamp(t):
        return pa.timestamp("us", tz="UTC" if t.tz is not None else None)
    if pa.types.is_uint8(t):
        return pa.int16()
    if pa.types.is_uint16(t):
        return pa.int32()
    if pa.types.is_uint32(t):
        return pa.int64()  # pyiceberg maps uint32 to a 32-bit int: values >= 2**31 break its statistics
    if pa.types.is_uint64(t):
        return pa.decimal128(20, 0)
    if pa.types.is_null(t):
        return pa.string()
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.list_(_normal_field(t.value_field))
    if pa.types.is_struct(t):
        return pa.struct([_normal_field(f) for f in t])
    if pa.types.is_map(t):
        return pa.map_(_normal_type(t.key_type), _normal_field(t.item_field))
    return t


def _normal_field(f: pa.Field) -> pa.Field:
    return f.with_type(_normal_type(f.type))


def normalize_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` with every type Iceberg refuses replaced by the nearest one it takes (see ``_normal_type``)."""
    import pyarrow as pa

    return pa.schema([_normal_field(f) for f in schema], metadata=schema.metadata)


def normalize_table(data: pa.Table) -> pa.Table:
    """``data`` cast to ``normalize_schema``: ns timestamps are truncated to us, zoned ones given in UTC."""
    target = normalize_schema(data.schema)
    return data if target.equals(data.schema) else data.cast(target, safe=False)


# --- DuckDB's iceberg extension, offline --------------------------------------------------------------------
def _extension_file(module: Any, name: str) -> Path:
    import duckdb

    root = Path(next(iter(module.__path__)))
    exact = root / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if exact.is_file():
        return exact
    found = sorted(root.rglob(f"{name}.duckdb_extension"))
    if not found:
        raise RuntimeError(
            f"the {name} extension is missing from {root}: install duckdb-extension-{name}=={duckdb.__version__}"
        )
    return found[-1]


@cache
def iceberg_extension_paths() -> tuple[Path, Path]:
    """The ``avro`` and ``iceberg`` extension files of the installed wheels, in the order they must load."""
    import duckdb_extension_avro
    import duckdb_extension_iceberg

    return _extension_file(duckdb_extension_avro, "avro"), _extension_file(
        duckdb_extension_iceberg, "iceberg"
    )


def load_iceberg(con: duckdb.DuckDBPyConnection) -> None:
    """Load the offline iceberg extension into ``con`` (avro first: iceberg's start would download it).

    ``iceberg_scan(<metadata.json>)`` then reads a table. For ``s3://`` tables give ``con`` the httpfs extension
    and an S3 secret first (``s3_lake.configure_s3``).
    """
    from ecommerce_assets.storage.warehouses.base import sql_literal

    for path in iceberg_extension_paths():
        con.execute(f"LOAD {sql_literal(str(path))}")


def install_iceberg_extensions(extension_dir: Path) -> Path:
    """Install the wheels' avro and iceberg files into ``extension_dir`` (no download) and return it.

    A connection opened with ``extension_directory`` set to it can then ``LOAD iceberg`` by name (and so can
    dbt-duckdb's ``extensions: [iceberg]``), which a view over ``iceberg_scan`` needs in every fresh connection.
    """
    import duckdb

    from ecommerce_assets.storage.warehouses.base import sql_literal

    extension_dir.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(
        config={
            "extension_directory": str(extension_dir),
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        }
    )
    try:
        for path in iceberg_extension_paths():
            con.execute(f"INSTALL {sql_literal(str(path))}")
    finally:
        con.close()
    return extension_dir


def ensure_iceberg_extensions(extension_dir: Path) -> Path:
    """``install_iceberg_extensions`` once: skipped when ``extension_dir`` has both files already.

    The install runs under a file lock, so processes starting together do not copy the files over each other.
    """
    from filelock import FileLock

    if _installed(extension_dir):
        return extension_dir
    extension_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(extension_dir / ".install.lock")):
        if not _installed(extension_dir):
            install_iceberg_extensions(extension_dir)
    return extension_dir


def _installed(extension_dir: Path) -> bool:
    import duckdb

    root = extension_dir / f"v{duckdb.__version__}"
    return all(any(root.glob(f"*/{name}.duckdb_extension")) for name in ("avro", "iceberg"))


def create_scan_view(
    con: duckdb.DuckDBPyConnection, view: str, metadata_location: str, snapshot_id: int | None = None
) -> None:
    """A temporary view ``view`` of ``con`` over the Iceberg table whose ``metadata.json`` is ``metadata_location``:
    its current snapshot, or ``snapshot_id`` (time travel, with that snapshot's columns).

    Loads the iceberg extension first (``load_iceberg``); for an ``s3://`` table ``con`` must be able to read S3
    (an ``S3Lake``'s engine is).
    """
    from ecommerce_assets.storage.warehouses.base import quote_ident, sql_literal

    load_iceberg(con)
    # a view's definition cannot hold bound parameters: the location enters as an escaped literal, the snapshot
    # id as an integer literal (int() refuses anything else)
    as_of = "" if snapshot_id is None else f", snapshot_from_id => {int(snapshot_id)}"
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {quote_ident(view)} AS "  # noqa: S608
        f"SELECT * FROM iceberg_scan({sql_literal(metadata_location)}{as_of})"
    )


def _plain(uri: str) -> str:
    """A local ``file://`` URI as a path (what the lake and DuckDB use locally); other URIs unchanged."""
    return uri.removeprefix("file://")


# --- the table store -----------------------------------------------------------------------------------------
class IcebergTables(StorageModel):
    """The processed zone's Iceberg tables: a catalog plus the lake folder their files live in."""

    catalog_kind: Literal["sql", "glue"]
    warehouse: str  # the lake root: file:///.../lake or s3://bucket/prefix; tables go under processed/<name>/
    namespace: str = LOCAL_NAMESPACE  # the catalog's namespace (the Glue database on AWS)
    sqlite_path: str | None = None  # the SQLite file of the local catalog
    region_name: str | None = None
    endpoint_url: str | None = None  # moto or another AWS-compatible endpoint, for Glue and S3
    commit_attempts: int = 5

    _catalog: Any = PrivateAttr(default=None)

    # --- the catalog -----------------------------------------------------------------------------------------
    @property
    def catalog(self) -> Catalog:
        """The pyiceberg catalog, built on first use (one per object)."""
        if self._catalog is None:
            self._catalog = self._build_catalog()
            self._catalog.create_namespace_if_not_exists(self.namespace)
        return self._catalog

    def _build_catalog(self) -> Catalog:
        if self.catalog_kind == "sql":
            from pyiceberg.catalog.sql import SqlCatalog

            if not self.sqlite_path:
                raise StorageSettingError("the local Iceberg catalog needs its SQLite file (sqlite_path)")
            Path(self.sqlite_path).parent.mkdir(parents=True, exist_ok=True)
            return SqlCatalog("local", uri=f"sqlite:///{self.sqlite_path}", warehouse=self.warehouse)
        from pyiceberg.catalog.glue import GlueCatalog

        props = {"warehouse": self.warehouse, "py-io-impl": IO_IMPL}
        if self.region_name:
            props |= {"glue.region": self.region_name, "s3.region": self.region_name}
        if self.endpoint_url:
            props |= {"glue.endpoint": self.endpoint_url, "s3.endpoint": self.endpoint_url}
        return GlueCatalog("glue", **props)

    def identifier(self, name: str) -> str:
        """``<namespace>.<name>``: the table's name in the catalog."""
        return f"{self.namespace}.{name}"

    def location(self, name: str) -> str:
        """Where a table's files live: ``<lake>/processed/<name>`` (``data/`` and ``metadata/`` below it)."""
        return f"{self.warehouse.rstrip('/')}/{zones.PROCESSED}{name}"

    def load(self, name: str) -> Table:
        """The table as the catalog has it now (``NoSuchTableError`` when it does not exist)."""
        return self.catalog.load_table(self.identifier(name))

    def exists(self, name: str) -> bool:
        """Whether the catalog has the table (a Glue entry of that name that is not an Iceberg table: no)."""
        from pyiceberg.exceptions import NoSuchIcebergTableError, NoSuchPropertyException, NoSuchTableError

        try:
            self.load(name)
        except (NoSuchTableError, NoSuchIcebergTableError, NoSuchPropertyException):
            return False
        return True

    # --- creating ------------------------------------------------------------------------------------------------
    def ensure_table(self, name: str, arrow_schema: pa.Schema, partition_by: Sequence[str] = ()) -> Table:
        """Create the table (schema and identity partitions in one commit), or return it when it exists.

        An existing table must be partitioned by ``partition_by``; its schema is left alone (``write`` evolves it).
        """
        from pyiceberg.exceptions import TableAlreadyExistsError

        if not self.exists(name):
            self.drop_non_iceberg_entry(name)  # the Glue Parquet entry of the layout before Iceberg, if any
            schema = normalize_schema(arrow_schema)
            missing = [c for c in partition_by if c not in schema.names]
            if missing:
                raise ValueError(
                    f"partition column(s) {missing} are not in the schema of {name}: {schema.names}"
                )
            try:
                txn = self.catalog.create_table_transaction(
                    self.identifier(name),
                    schema=schema,
                    location=self.location(name),
                    properties=TABLE_PROPERTIES,
                )
                if partition_by:
                    with txn.update_spec() as spec:
                        for column in partition_by:
                            spec.add_identity(column)
                txn.commit_transaction()
            except TableAlreadyExistsError:
                pass  # another process created it meanwhile
        table = self.load(name)
        if table.location().rstrip("/") != self.location(name).rstrip("/"):
            raise StorageSettingError(
                f"the catalog's table {self.identifier(name)} keeps its files in {table.location()}, not in this "
                f"lake ({self.location(name)}): another deployment uses the same catalog namespace; give this one "
                "its own (ECOMMERCE_GLUE_DATABASE on AWS, ECOMMERCE_DATA_DIR locally)"
            )
        have = self.partition_columns(table)
        if have != tuple(partition_by):
            raise ValueError(
                f"{self.identifier(name)} is partitioned by {list(have)}, not {list(partition_by)}"
            )
        return table

    @staticmethod
    def partition_columns(table: Table) -> tuple[str, ...]:
        """The source columns of the table's (identity) partition fields, in spec order."""
        schema = table.schema()
        return tuple(schema.find_column_name(f.source_id) or "" for f in table.spec().fields)

    # --- writing -------------------------------------------------------------------------------------------------
    def write(
        self,
        name: str,
        data: pa.Table,
        partition_values: Sequence[Mapping[str, Any]] | None = None,
        *,
        properties: Mapping[str, str] | None = None,
    ) -> IcebergCommit:
        """Replace the partitions ``partition_values`` of the table with ``data``, in one commit.

        ``partition_values`` is one mapping (partition column -> value, ``None`` for a null partition) per partition
        to replace; a partition with no rows in ``data`` is emptied. When omitted it is every partition ``data`` has
        rows in (the whole table for an unpartitioned one). Every row of ``data`` must lie in a listed partition.
        Re-writing the same rows gives the same table (one more commit). New columns are added as nullable
        columns in the same commit; a changed column type raises ``IcebergSchemaConflict`` and commits nothing.
        ``properties`` go into the snapshot summary (e.g. the run id).
        """
        data = normalize_table(data)
        identifier = self.identifier(name)

        def apply(table: Table, snapshot_properties: dict[str, str]) -> tuple[str, ...]:
            columns = self.partition_columns(table)
            parts = (
                _partition_tuples(data, columns)
                if partition_values is None
                else [dict(p) for p in partition_values]
            )
            _check_rows_in_partitions(data, columns, parts, identifier)
            new_columns = _check_schema(identifier, table, data.schema)
            with table.transaction() as tx:
                if new_columns or _nested_differs(table, data.schema):
                    with tx.update_schema() as update:
                        # a new column is optional: the rows already in the table have no value for it
                        update.union_by_name(_new_fields_nullable(data.schema, new_columns))
                rows = _cast_to(tx, data)
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message=_NO_MATCH_WARNING)
                    tx.overwrite(
                        rows,
                        overwrite_filter=_partition_filter(parts),
                        snapshot_properties={**(properties or {}), **snapshot_properties},
                    )
            return new_columns

        return self._commit(name, apply)

    def compact(self, name: str, partition_values: Sequence[Mapping[str, Any]]) -> IcebergCommit:
        """Rewrite each listed partition with its own rows in one commit (many small files become few).

        The rows do not change; the snapshot's summary says ``ecommerce.operation=compact``.
        """

        def apply(table: Table, snapshot_properties: dict[str, str]) -> tuple[str, ...]:
            where = _partition_filter([dict(p) for p in partition_values])
            rows = table.scan(row_filter=where).to_arrow()
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_NO_MATCH_WARNING)
                table.overwrite(
                    rows,
                    overwrite_filter=where,
                    snapshot_properties={"ecommerce.operation": "compact", **snapshot_properties},
                )
            return ()

        return self._commit(name, apply)

    def _commit(self, name: str, apply: Callable[[Table, dict[str, str]], tuple[str, ...]]) -> IcebergCommit:
        """Run ``apply`` on the table; on a lost race refresh the table and run it again (``commit_attempts``).

        Every snapshot of the commit carries ``ecommerce.commit-id``, which is how its figures are found afterwards.
        """
        from pyiceberg.exceptions import CommitFailedException, ValidationException

        table = self.load(name)
        commit_id = uuid.uuid4().hex
        for attempt in range(1, self.commit_attempts + 1):
            try:
                new_columns = apply(table, {COMMIT_ID: commit_id})
            except (CommitFailedException, ValidationException):
                if attempt == self.commit_attempts:
                    raise
                table.refresh()
                continue
            except OSError as exc:  # a full disk, a lost mount: say which table and where (Arrow's message does not)
                raise OSError(
                    exc.errno, f"{exc.strerror or exc} (writing the Iceberg table {self.identifier(name)} in "
                    f"{_plain(self.location(name))})"
                ) from exc
            table.refresh()
            return _commit_info(self.identifier(name), table, commit_id, new_columns, attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    # --- history ---------------------------------------------------------------------------------------------------
    def history(self, name: str) -> list[IcebergSnapshot]:
        """Every live snapshot, oldest first, with the one the table reads now marked ``current``."""
        table = self.load(name)
        current = table.current_snapshot()
        current_id = current.snapshot_id if current else None
        return [
            IcebergSnapshot(
                snapshot_id=s.snapshot_id,
                parent_id=s.parent_snapshot_id,
                timestamp_ms=s.timestamp_ms,
                operation=str(s.summary.operation.value) if s.summary else "",
                current=s.snapshot_id == current_id,
                summary={
                    k: str(v) for k, v in (s.summary.additional_properties if s.summary else {}).items()
                },
            )
            for s in sorted(table.snapshots(), key=lambda s: (s.sequence_number or 0, s.timestamp_ms))
        ]

    def rollback(self, name: str, snapshot_id: int) -> str:
        """Make ``snapshot_id`` the table's current snapshot (any live snapshot, back or forward); one commit.

        Returns the new metadata location.
        """
        table = self.load(name)
        if table.snapshot_by_id(snapshot_id) is None:
            raise ValueError(f"{self.identifier(name)} has no snapshot {snapshot_id}")
        table.manage_snapshots().set_current_snapshot(snapshot_id).commit()
        return _plain(table.metadata_location)

    def data_files(
        self, name: str, snapshot_id: int | None = None, partition: Mapping[str, Any] | None = None
    ) -> list[str]:
        """The Parquet files that make up the table now (or at ``snapshot_id``), or only those of one
        ``partition`` (column -> value). Writes are copy-on-write (no delete files), so these files ARE the rows:
        a warehouse load reads them to load the table "as of" a snapshot."""
        table = self.load(name)
        scan = table.scan(
            snapshot_id=snapshot_id, **({"row_filter": _partition_filter([dict(partition)])} if partition else {})
        )
        return sorted(_plain(task.file.file_path) for task in scan.plan_files())

    def read(
        self,
        name: str,
        snapshot_id: int | None = None,
        where: Mapping[str, Any] | None = None,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        """The table's rows now (or at ``snapshot_id``, with that snapshot's columns); only those whose columns
        equal ``where`` (column -> value), and only ``columns``, when given."""
        scan = self.load(name).scan(
            snapshot_id=snapshot_id,
            **({"row_filter": _partition_filter([dict(where)])} if where else {}),
            **({"selected_fields": tuple(columns)} if columns else {}),
        )
        return scan.to_arrow()

    def metadata_location(self, name: str) -> str:
        """The table's current ``metadata.json`` (what ``iceberg_scan`` reads)."""
        return _plain(self.load(name).metadata_location)

    def current_snapshot_id(self, name: str) -> int | None:
        """The snapshot the table reads now; None when the table does not exist or has never been written."""
        if not self.exists(name):
            return None
        snapshot = self.load(name).current_snapshot()
        return snapshot.snapshot_id if snapshot is not None else None

    def expire_snapshots(self, name: str, older_than: datetime) -> int:
        """Forget the snapshots taken before ``older_than`` (never the current one); return how many.

        Their files stay on disk: an orphan sweep reclaims them.
        """
        table = self.load(name)
        before = len(table.snapshots())
        table.maintenance.expire_snapshots().older_than(older_than).commit()
        return before - len(table.snapshots())


    def drop_non_iceberg_entry(self, name: str) -> bool:
        """On Glue: drop an entry named like the table that is not an Iceberg table (the Parquet table the Glue
        registration made before the processed zone became Iceberg), so that the Iceberg table can take the name.
        Returns whether one was dropped; never touches an Iceberg entry or one outside this lake's processed zone
        (refused by name), and does nothing locally. ``ensure_table`` calls it before creating a table."""
        if self.catalog_kind != "glue":
            return False
        glue = self.catalog.glue  # pyiceberg's boto3 Glue client, with the catalog's endpoint and region
        try:
            entry = glue.get_table(DatabaseName=self.namespace, Name=name)["Table"]
        except glue.exceptions.EntityNotFoundException:
            return False
        if str(entry.get("Parameters", {}).get("table_type", "")).upper() == "ICEBERG":
            return False
        location = str((entry.get("StorageDescriptor") or {}).get("Location", ""))
        if not location.startswith(f"{self.warehouse.rstrip('/')}/{zones.PROCESSED}"):
            raise StorageSettingError(
                f"the Glue table {self.namespace}.{name} is not an Iceberg table and not in this lake's processed "
                f"zone ({location}): it is not ours to replace; rename it or give this lake its own "
                "ECOMMERCE_GLUE_DATABASE"
            )
        glue.delete_table(DatabaseName=self.namespace, Name=name)
        return True

    # --- maintenance -------------------------------------------------------------------------------------------------
    def table_names(self) -> list[str]:
        """Every table of the namespace, by name."""
        return sorted(str(identifier[-1]) for identifier in self.catalog.list_tables(self.namespace))

    def partitions_to_compact(self, name: str, target_file_bytes: int) -> list[dict[str, Any]]:
        """The partitions of the current snapshot worth rewriting: more than one data file, averaging under
        ``target_file_bytes`` (a stream's batches, a day's re-runs). Each as column -> value."""
        table = self.load(name)
        if table.current_snapshot() is None:
            return []
        columns = self.partition_columns(table)
        out = []
        for row in table.inspect.partitions().to_pylist():
            files, size = row["file_count"], row["total_data_file_size_in_bytes"]
            if files > 1 and size / files < target_file_bytes:
                part = row.get("partition") or {}
                out.append({c: part.get(c) for c in columns})
        return out

    def referenced_files(self, name: str) -> set[str]:
        """Every file a live snapshot or the current metadata needs: data files, manifests, manifest lists and
        the metadata log. Any other file in the table's folder is an orphan (a killed writer's, or one only an
        expired snapshot referenced)."""
        table = self.load(name)
        keep = {_plain(table.metadata_location)}
        keep |= {_plain(entry.metadata_file) for entry in table.metadata.metadata_log}
        for snapshot in table.snapshots():
            keep.add(_plain(snapshot.manifest_list))
        if table.snapshots():
            keep |= {_plain(p) for p in table.inspect.all_manifests().column("path").to_pylist()}
            keep |= {_plain(p) for p in table.inspect.all_files().column("file_path").to_pylist()}
        return keep


# --- helpers of write ---------------------------------------------------------------------------------------------
def _partition_tuples(data: pa.Table, columns: Sequence[str]) -> list[dict[str, Any]]:
    """The distinct partitions ``data`` has rows in (one empty mapping for an unpartitioned table)."""
    if not columns:
        return [{}]
    return data.select(list(columns)).group_by(list(columns)).aggregate([]).to_pylist()


def _partition_filter(parts: Sequence[Mapping[str, Any]]) -> BooleanExpression:
    """``(a = x AND b = y) OR ...`` over the partitions (``IS NULL`` for a null value)."""
    from pyiceberg.expressions import AlwaysFalse, AlwaysTrue, And, EqualTo, IsNull, Or

    if not parts:
        return AlwaysFalse()
    terms = []
    for part in parts:
        conditions = [IsNull(c) if v is None else EqualTo(c, v) for c, v in part.items()]
        terms.append(reduce(And, conditions) if conditions else AlwaysTrue())
    return reduce(Or, terms)


def _check_rows_in_partitions(
    data: pa.Table, columns: Sequence[str], parts: Sequence[Mapping[str, Any]], table: str
) -> None:
    """Refuse slices that do not name every partition column, and rows outside the slices.

    A slice may name more columns than the partition columns (e.g. a stream batch inside its date partition):
    the overwrite then rewrites only the files of the partition that hold rows of the slice (copy-on-write).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if not parts:
        raise ValueError(f"no partition of {table} given to replace")
    for part in parts:
        if not set(columns) <= set(part):
            raise ValueError(
                f"{table} is partitioned by {list(columns)}; a partition was given as {dict(part)}"
            )
    if data.num_rows == 0 or not any(parts):
        return
    inside = pa.array([False] * data.num_rows)
    for part in parts:
        row = pa.array([True] * data.num_rows)
        for column, value in part.items():
            col = data.column(column)
            hit = (
                pc.is_null(col)
                if value is None
                else pc.fill_null(pc.equal(col, pa.scalar(value, col.type)), False)
            )
            row = pc.and_(row, hit)
        inside = pc.or_(inside, row)
    outside = data.num_rows - pc.sum(inside.cast(pa.int64())).as_py()
    if outside:
        raise ValueError(f"{outside} row(s) of the data for {table} lie outside the partitions to replace")


def _check_schema(identifier: str, table: Table, data_schema: pa.Schema) -> tuple[str, ...]:
    """The data's columns the table lacks; ``IcebergSchemaConflict`` for a column whose type changed."""
    from pyiceberg.catalog import Catalog
    from pyiceberg.types import DecimalType, DoubleType, FloatType, IntegerType, LongType, PrimitiveType

    current = table.schema()
    given = Catalog._convert_schema_if_needed(data_schema)  # the Iceberg types pyiceberg would write
    new: list[str] = []
    for column in given.fields:
        try:
            have = current.find_field(column.name).field_type
        except ValueError:
            new.append(column.name)
            continue
        want = column.field_type
        if not (isinstance(have, PrimitiveType) and isinstance(want, PrimitiveType)) or have == want:
            continue  # nested types: union_by_name decides and its error says why
        widening = (
            (isinstance(want, IntegerType) and isinstance(have, LongType))
            or (isinstance(want, FloatType) and isinstance(have, DoubleType))
            or (
                isinstance(want, DecimalType)
                and isinstance(have, DecimalType)
                and want.scale == have.scale
                and want.precision <= have.precision
            )
        )
        if not widening:
            raise IcebergSchemaConflict(identifier, column.name, str(have), str(want))
    return tuple(new)


def _new_fields_nullable(schema: pa.Schema, new_columns: Sequence[str]) -> pa.Schema:
    """``schema`` with the columns ``new_columns`` made nullable."""
    import pyarrow as pa

    return pa.schema([f.with_nullable(True) if f.name in new_columns else f for f in schema])


def _nested_differs(table: Table, data_schema: pa.Schema) -> bool:
    """Whether a nested column of the data differs from the table's (union_by_name then merges or refuses it)."""
    import pyarrow as pa

    current = table.schema().as_arrow()
    for f in data_schema:
        if (
            pa.types.is_struct(f.type) or pa.types.is_list(f.type) or pa.types.is_map(f.type)
        ) and f.name in current.names:
            if not current.field(f.name).type.equals(f.type, check_metadata=False):
                return True
    return False


def _cast_to(tx: Transaction, data: pa.Table) -> pa.Table:
    """``data`` with the table's types (as the transaction has the schema now), columns in the table's order."""
    import pyarrow as pa

    target = tx.table_metadata.schema().as_arrow()
    names = [n for n in target.names if n in data.column_names]
    fields = []
    for n in names:
        f = target.field(n)
        # a nullable data column cast to a required one is refused by pyiceberg when it holds a null: say so early
        if not f.nullable and data.column(n).null_count:
            raise ValueError(f"column {n!r} is required but {data.column(n).null_count} row(s) have no value")
        fields.append(f)
    return data.select(names).cast(pa.schema(fields))


def _commit_info(
    identifier: str, table: Table, commit_id: str, new_columns: tuple[str, ...], attempts: int
) -> IcebergCommit:
    """The figures of the snapshots one commit added (an overwrite adds a delete snapshot and an append)."""
    ours = [s for s in table.snapshots() if s.summary is not None and s.summary[COMMIT_ID] == commit_id]

    def total(key: str) -> int:
        return sum(int(s.summary[key] or 0) for s in ours if s.summary is not None)

    last = (
        max(ours, key=lambda s: (s.sequence_number or 0, s.timestamp_ms))
        if ours
        else table.current_snapshot()
    )
    total_records = (
        int(last.summary["total-records"] or 0) if last is not None and last.summary is not None else 0
    )
    return IcebergCommit(
        table=identifier,
        snapshot_id=last.snapshot_id if last else None,
        added_data_files=total("added-data-files"),
        added_files_size=total("added-files-size"),
        added_records=total("added-records"),
        deleted_records=total("deleted-records"),
        total_records=total_records,
        new_columns=new_columns,
        metadata_location=_plain(table.metadata_location),
        attempts=attempts,
        columns=tuple((f.name, str(f.field_type), f.required) for f in table.schema().fields),
    )


# --- the environment's table store --------------------------------------------------------------------------------
def build_iceberg(settings: Settings) -> IcebergTables:
    """The Iceberg tables of the environment.

    Locally: a SQLite catalog at ``<ECOMMERCE_DATA_DIR>/iceberg_catalog.db``, files in ``<lake>/processed/<table>/``.
    On AWS: the Glue database ``ECOMMERCE_GLUE_DATABASE``, files in ``s3://<bucket>/<prefix>/processed/<table>/``
    (``AWS_ENDPOINT_URL`` honoured for Glue and S3).
    """
    if settings.env != "aws":
        return IcebergTables(
            catalog_kind="sql",
            warehouse=settings.lake_dir.resolve().as_uri(),
            sqlite_path=str(settings.data_dir / CATALOG_FILE),
            namespace=LOCAL_NAMESPACE,
        )
    if not settings.s3_bucket:
        raise StorageSettingError("aws mode needs ECOMMERCE_S3_BUCKET (the lake's bucket)")
    root = (
        f"s3://{settings.s3_bucket}/{settings.s3_prefix}"
        if settings.s3_prefix
        else f"s3://{settings.s3_bucket}"
    )
    return IcebergTables(
        catalog_kind="glue",
        warehouse=root,
        namespace=settings.glue_database,
        region_name=settings.aws_region,
        endpoint_url=settings.aws_endpoint_url,
    )


# --- a table rebuilt whole, one part at a time ------------------------------------------------------------------
def replace_all_rows(
    tables: IcebergTables,
    name: str,
    schema: pa.Schema,
    parts: Callable[[], Iterable[pa.Table]],
    partition_by: Sequence[str] = (),
    properties: Mapping[str, str] | None = None,
) -> IcebergCommit:
    """Replace every row of the table ``name`` with the rows ``parts()`` yields, in ONE commit.

    For a zone rebuilt whole from its source on each run: the table then holds exactly these rows, so a partition
    the new rows lack is emptied too, and a re-run gives the same rows (one more commit). The table is created
    (``ensure_table`` with ``schema`` and ``partition_by``) when it does not exist. ``parts`` is called once per
    commit attempt and yields Arrow tables of ``schema`` (one partition each, say): each part's files are written
    before the next is asked for, so only one part is held in memory. The commit is a delete snapshot (every old
    data file) and an append snapshot (every new one), as ``IcebergTables.write``'s; new columns are added as
    nullable columns in it, a changed column type raises ``IcebergSchemaConflict`` and commits nothing.
    ``properties`` go into the snapshot summary.
    """
    from pyiceberg.expressions import AlwaysTrue
    from pyiceberg.io.pyarrow import _check_pyarrow_schema_compatible, _dataframe_to_data_files

    target = normalize_schema(schema)
    tables.ensure_table(name, target, partition_by)
    identifier = tables.identifier(name)

    def apply(table: Table, snapshot_properties: dict[str, str]) -> tuple[str, ...]:
        new_columns = _check_schema(identifier, table, target)
        summary = {**(properties or {}), **snapshot_properties}
        written: list[str] = []  # the write's uuid, which names every data file it writes
        from pyiceberg.exceptions import CommitStateUnknownException

        try:
            _replace(table, new_columns, summary, written)
        except CommitStateUnknownException:
            raise  # the catalog may hold the commit: its files may be referenced, so they stay
        except BaseException:
            # a failed attempt (a full disk, a lost race, an interrupt) takes its files with it: nothing of it is
            # referenced, and on a full disk they would hold the space the run needs to record its failure
            if written:
                _remove_files_of_write(table, written[0])
            raise
        return new_columns

    def _replace(table: Table, new_columns: tuple[str, ...], summary: dict[str, str], written: list[str]) -> None:
        with table.transaction() as tx:
            if new_columns or _nested_differs(table, target):
                with tx.update_schema() as update:
                    update.union_by_name(_new_fields_nullable(target, new_columns))
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_NO_MATCH_WARNING)
                tx.delete(AlwaysTrue(), snapshot_properties=summary)
            with tx.update_snapshot(snapshot_properties=summary).fast_append() as append:
                written.append(str(append.commit_uuid))
                for part in parts():
                    rows = _cast_to(tx, normalize_table(part))
                    if not rows.num_rows:
                        continue
                    _check_pyarrow_schema_compatible(
                        tx.table_metadata.schema(),
                        provided_schema=rows.schema,
                        format_version=tx.table_metadata.format_version,
                    )
                    for data_file in _dataframe_to_data_files(
                        table_metadata=tx.table_metadata, write_uuid=append.commit_uuid, df=rows, io=table.io
                    ):
                        append.append_data_file(data_file)

    return tables._commit(name, apply)


def replace_rows_with_files(
    tables: IcebergTables,
    name: str,
    schema: pa.Schema,
    files: Sequence[str],
    partition_by: Sequence[str] = (),
    partitions: Sequence[Mapping[str, Any]] | None = None,
    properties: Mapping[str, str] | None = None,
) -> IcebergCommit:
    """Replace the rows of the ``partitions`` (None: every row) of the table ``name`` with the rows of the Parquet
    ``files``, in ONE commit, without rewriting them.

    For rows another engine wrote (the Spark jobs of ``ECOMMERCE_ENGINE=spark``): the files, below the table's
    location, are added as they are (pyiceberg ``add_files``: columns matched by name, an identity partition's value
    read from the file's statistics, so each file holds one partition's rows and keeps the partition column). The
    commit is a delete snapshot (the partitions' old rows) and an append snapshot, as ``replace_all_rows``'s; the
    table is created with ``schema`` (the DuckDB path's, so both engines make the same table) when it does not
    exist; a column ``schema`` has and the table lacks is added (nullable) in the same commit. A file whose columns
    differ from the table's raises and commits nothing.
    """
    from pyiceberg.expressions import AlwaysTrue

    target = normalize_schema(schema)
    tables.ensure_table(name, target, partition_by)
    identifier = tables.identifier(name)

    def apply(table: Table, snapshot_properties: dict[str, str]) -> tuple[str, ...]:
        new_columns = _check_schema(identifier, table, target)
        summary = {**(properties or {}), **snapshot_properties}
        with table.transaction() as tx:
            if new_columns:
                with tx.update_schema() as update:
                    update.union_by_name(_new_fields_nullable(target, new_columns))
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_NO_MATCH_WARNING)
                tx.delete(AlwaysTrue() if partitions is None else _partition_filter(partitions),
                          snapshot_properties=summary)
            if files:
                tx.add_files(list(files), snapshot_properties=summary)
        return new_columns

    return tables._commit(name, apply)


def _remove_files_of_write(table: Table, write_uuid: str) -> int:
    """Delete the data files one write attempt left (their names carry its uuid); return how many."""
    from urllib.parse import urlparse

    from pyarrow.fs import FileSelector, FileType

    location = urlparse(f"{table.location().rstrip('/')}/data")
    scheme = location.scheme or "file"
    fs = table.io.fs_by_scheme(scheme, location.netloc)
    root = location.path if scheme == "file" else f"{location.netloc}{location.path}"
    removed = 0
    for info in fs.get_file_info(FileSelector(root, recursive=True, allow_not_found=True)):
        if info.type == FileType.File and write_uuid in info.base_name:
            fs.delete_file(info.path)
            removed += 1
    return removed
