"""The Glue Data Catalog: Parquet tables (and their ``date=`` partitions) over the S3 lake, for Athena.

``register_parquet_table`` is idempotent: it creates the database and table or updates the table when
its columns or location changed, and adds only the partitions Glue does not know yet
(``BatchCreatePartition``, 100 per call). ``register_lake_prefix`` does it for one lake prefix: it lists
the ``date=`` folders, reads the Parquet schema with the lake's DuckDB engine and registers the table.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ecommerce_assets.storage import zones
from ecommerce_assets.storage.base import StorageModel
from ecommerce_assets.storage.lake import Lake

if TYPE_CHECKING:
    import pyarrow as pa

PARTITION_BATCH = 100  # BatchCreatePartition accepts at most 100 partitions per call
PARQUET_SERDE = {
    "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
    "Parameters": {"serialization.format": "1"},
}
PARQUET_INPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
PARQUET_OUTPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
_GLUE_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_PARTITION = re.compile(r"(?:^|/)([A-Za-z_][A-Za-z0-9_]*)=([^/]+)/")


def glue_type(t: pa.DataType) -> str:
    """The Hive/Athena type of an Arrow type (what Glue stores for a Parquet column)."""
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        return glue_type(t.value_type)
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_int8(t) or pa.types.is_uint8(t):
        return "tinyint" if pa.types.is_int8(t) else "smallint"
    if pa.types.is_int16(t) or pa.types.is_uint16(t):
        return "smallint" if pa.types.is_int16(t) else "int"
    if pa.types.is_int32(t):
        return "int"
    if pa.types.is_uint32(t) or pa.types.is_int64(t):
        return "bigint"
    if pa.types.is_uint64(t):
        return "decimal(20,0)"
    if pa.types.is_float16(t) or pa.types.is_float32(t):
        return "float"
    if pa.types.is_float64(t):
        return "double"
    if pa.types.is_decimal(t):
        return f"decimal({t.precision},{t.scale})"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_timestamp(t):
        return "timestamp"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "binary"
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return f"array<{glue_type(t.value_type)}>"
    if pa.types.is_struct(t):
        return "struct<" + ",".join(f"{f.name}:{glue_type(f.type)}" for f in t) + ">"
    if pa.types.is_map(t):
        return f"map<{glue_type(t.key_type)},{glue_type(t.item_type)}>"
    raise TypeError(f"no Glue/Athena type for Arrow type {t}")


def glue_name(name: str) -> str:
    """Glue lower-cases names; refuse anything that is not a plain identifier."""
    lowered = name.lower()
    if not _GLUE_NAME.match(lowered):
        raise ValueError(f"not a valid Glue database/table/column name: {name!r}")
    return lowered


def partition_values(key: str, partition_keys: Sequence[str]) -> list[str] | None:
    """The values of ``partition_keys`` in a key like ``.../date=2026-11-22/file.parquet`` (None if absent)."""
    found = dict(_PARTITION.findall(key))
    if not all(k in found for k in partition_keys):
        return None
    return [found[k] for k in partition_keys]


@dataclass(frozen=True)
class TableRegistration:
    """What one registration did, for asset metadata."""

    database: str
    table: str
    location: str
    action: str  # created | updated | unchanged
    partitions_added: int
    partitions_total: int


def parquet_table_roots(lake: Lake, zone: str = zones.PROCESSED) -> dict[str, str]:
    """Every Parquet table folder below ``zone``: ``{glue table name: lake prefix}``.

    A table folder is the path up to its first ``key=value/`` partition folder, or the folder of its files:
    ``processed/online_retail/cleaned/invoice_month=.../x.parquet`` -> ``online_retail_cleaned``.

    An Iceberg table's folder (one with ``metadata/*.metadata.json``) is no Parquet table: its data files are read
    through its metadata (superseded files stay until a sweep), and its Glue entry is the Iceberg catalog's. Every
    file below it is skipped.
    """
    objects = list(lake.list_objects(zone))
    iceberg = iceberg_table_roots(objects)
    roots: dict[str, str] = {}
    for obj in objects:
        if not obj.key.endswith(".parquet") or "/_" in obj.key[len(zone) - 1 :]:
            continue  # skip _superseded/, _manifests/ and similar bookkeeping folders
        if any(obj.key.startswith(root) for root in iceberg):
            continue
        parts = obj.key.split("/")[:-1]
        cut = next((i for i, p in enumerate(parts) if "=" in p), len(parts))
        prefix = "/".join(parts[:cut]) + "/"
        name = re.sub(r"[^a-z0-9_]", "_", prefix[len(zone) :].strip("/").lower()) or "root"
        roots.setdefault(name, prefix)
    return dict(sorted(roots.items()))


def iceberg_table_roots(objects: Iterable[Any]) -> list[str]:
    """The folders (``.../``) among the lake ``objects`` that hold an Iceberg table (``metadata/*.metadata.json``)."""
    return sorted({
        o.key[: o.key.rindex("/metadata/") + 1] for o in objects
        if o.key.endswith(".metadata.json") and "/metadata/" in o.key
    })


class GlueCatalog(StorageModel):
    """Registers lake Parquet as Glue tables for Athena (aws mode only)."""

    region_name: str | None = None
    endpoint_url: str | None = None
    default_database: str = "ecommerce"

    def client(self) -> Any:
        import boto3

        return boto3.client("glue", region_name=self.region_name, endpoint_url=self.endpoint_url)

    def ensure_database(self, database: str, glue: Any | None = None) -> None:
        from botocore.exceptions import ClientError

        glue = glue or self.client()
        try:
            glue.create_database(DatabaseInput={"Name": glue_name(database)})
        except ClientError as err:
            if err.response["Error"]["Code"] != "AlreadyExistsException":
                raise

    def table_exists(self, database: str, table: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client().get_table(DatabaseName=glue_name(database), Name=glue_name(table))
            return True
        except ClientError as err:
            if err.response["Error"]["Code"] == "EntityNotFoundException":
                return False
            raise

    def get_table(self, database: str, table: str) -> dict[str, Any]:
        return self.client().get_table(DatabaseName=glue_name(database), Name=glue_name(table))["Table"]

    def register_iceberg_table(self, tables: Any, name: str, database: str, table: str) -> dict[str, Any]:
        """Check that the Iceberg table ``name`` of ``tables`` is the Glue table ``database.table``, and describe it.

        pyiceberg's Glue catalog keeps the Glue entry itself (``table_type=ICEBERG`` and the current
        ``metadata_location``, updated by every commit), so there is nothing to register: a different name or
        database, or an entry that is not that table's, is refused.
        """
        if tables.catalog_kind != "glue" or glue_name(tables.namespace) != glue_name(database) or name != table:
            raise ValueError(
                f"the Iceberg table {tables.identifier(name)} is the Glue table {tables.namespace}.{name}; "
                f"it cannot also be registered as {database}.{table}"
            )
        entry = self.get_table(database, table)
        parameters = entry.get("Parameters", {})
        location = tables.metadata_location(name)
        if parameters.get("table_type", "").upper() != "ICEBERG" or parameters.get("metadata_location") != location:
            raise RuntimeError(
                f"Glue's {database}.{table} is not the Iceberg table at {location}: {parameters}"
            )
        return {"table": f"{glue_name(database)}.{glue_name(table)}", "table_type": "ICEBERG",
                "metadata_location": location, "snapshot_id": tables.current_snapshot_id(name)}

    def partitions(self, database: str, table: str) -> list[list[str]]:
        """Every registered partition's values, sorted."""
        glue = self.client()
        values: list[list[str]] = []
        paginator = glue.get_paginator("get_partitions")
        for page in paginator.paginate(DatabaseName=glue_name(database), TableName=glue_name(table)):
            values.extend(list(p["Values"]) for p in page.get("Partitions", []))
        return sorted(values)

    def register_parquet_table(
        self,
        database: str,
        table: str,
        location: str,
        schema: pa.Schema,
        partition_keys: Sequence[str] = (),
        partitions: Iterable[Sequence[str]] = (),
        description: str = "",
    ) -> TableRegistration:
        """Create or update ``database.table`` over the Parquet at ``location`` and add new partitions."""
        from botocore.exceptions import ClientError

        glue = self.client()
        db, name = glue_name(database), glue_name(table)
        location = location if location.endswith("/") else location + "/"
        self.ensure_database(db, glue)
        part_names = [glue_name(k) for k in partition_keys]
        columns = [
            {"Name": glue_name(f.name), "Type": glue_type(f.type)} for f in schema if f.name.lower() not in part_names
        ]
        table_input = {
            "Name": name,
            "Description": description,
            "TableType": "EXTERNAL_TABLE",
            "Parameters": {"classification": "parquet", "EXTERNAL": "TRUE"},
            "PartitionKeys": [{"Name": k, "Type": "string"} for k in part_names],
            "StorageDescriptor": {
                "Columns": columns,
                "Location": location,
                "InputFormat": PARQUET_INPUT,
                "OutputFormat": PARQUET_OUTPUT,
                "SerdeInfo": PARQUET_SERDE,
            },
        }
        action = "created"
        try:
            current = glue.get_table(DatabaseName=db, Name=name)["Table"]
        except ClientError as err:
            if err.response["Error"]["Code"] != "EntityNotFoundException":
                raise
            glue.create_table(DatabaseName=db, TableInput=table_input)
        else:
            sd = current.get("StorageDescriptor", {})
            same = (
                sd.get("Columns") == columns
                and sd.get("Location") == location
                and current.get("PartitionKeys", []) == table_input["PartitionKeys"]
            )
            action = "unchanged" if same else "updated"
            if not same:
                glue.update_table(DatabaseName=db, TableInput=table_input)

        added = 0
        if part_names:
            known = {tuple(v) for v in self.partitions(db, name)} if action != "created" else set()
            wanted = sorted({tuple(v) for v in partitions} - known)
            for start in range(0, len(wanted), PARTITION_BATCH):
                batch = wanted[start : start + PARTITION_BATCH]
                inputs = [
                    {
                        "Values": list(values),
                        "StorageDescriptor": {
                            **table_input["StorageDescriptor"],
                            "Location": location
                            + "/".join(f"{k}={v}" for k, v in zip(part_names, values, strict=True))
                            + "/",
                        },
                    }
                    for values in batch
                ]
                result = glue.batch_create_partition(DatabaseName=db, TableName=name, PartitionInputList=inputs)
                errors = [
                    e for e in result.get("Errors", []) if e["ErrorDetail"]["ErrorCode"] != "AlreadyExistsException"
                ]
                if errors:
                    raise RuntimeError(f"Glue refused partitions of {db}.{name}: {errors[:3]}")
                added += len(batch) - len(result.get("Errors", []))
            total = len(known) + added
        else:
            total = 0
        return TableRegistration(db, name, location, action, added, total)

    def register_lake_prefix(
        self, lake: Lake, prefix: str, database: str, table: str, partition_keys: Sequence[str] | None = None
    ) -> TableRegistration:
        """Register the Parquet files below the lake ``prefix`` as ``database.table``.

        Partition folders (``date=YYYY-MM-DD/``, or the ``key=value/`` folders the files sit in) become Glue partitions; a prefix
        without them is registered unpartitioned. The schema comes from the files (DuckDB, no data read).
        """
        prefix = prefix if prefix.endswith("/") else prefix + "/"
        keys = [o.key for o in lake.list_objects(prefix) if o.key.endswith(".parquet")]
        if not keys:
            raise FileNotFoundError(f"no Parquet files below {lake.uri(prefix)}")
        if partition_keys is None:  # the key=value folders of the first file, e.g. ("date",)
            partition_keys = [k for k, _ in _PARTITION.findall(keys[0][len(prefix) :])]
        found = [partition_values(k[len(prefix) :], partition_keys) for k in keys]
        partitioned = all(v is not None for v in found)
        con = lake.engine()
        try:
            schema = (
                con.execute(
                    "SELECT * FROM read_parquet(?, hive_partitioning = false, union_by_name = true) LIMIT 0",
                    [[lake.uri(k) for k in keys]],
                )
                .to_arrow_table()
                .schema
            )
        finally:
            con.close()
        return self.register_parquet_table(
            database,
            table,
            lake.uri(prefix),
            schema,
            partition_keys=partition_keys if partitioned else (),
            partitions=[v for v in found if v is not None] if partitioned else (),
            description=f"Parquet in {lake.uri(prefix)}",
        )
