"""Asset metadata in one shape for every asset: row count, column schema, a preview and URIs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import dagster as dg

from ecommerce_assets.storage.iceberg import IcebergCommit
from ecommerce_assets.storage.lake import Lake
from ecommerce_assets.storage.registration import Registration

if TYPE_CHECKING:
    import pyarrow as pa

PREVIEW_ROWS = 10


def column_schema(schema: pa.Schema) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name=f.name, type=str(f.type)) for f in schema])


def markdown_preview(table: pa.Table, rows: int = PREVIEW_ROWS) -> str:
    """A Markdown table of the first ``rows`` rows (what the Dagster UI shows as a preview)."""
    head = table.slice(0, rows)
    names = head.column_names
    if not names:
        return "(no columns)"
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for row in head.to_pylist():
        cells = []
        for name in names:
            value = row[name]
            text = "" if value is None else str(value)
            cells.append(text.replace("|", "\\|").replace("\n", " ")[:80])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table_metadata(
    row_count: int,
    preview: pa.Table,
    *,
    uri: str | Sequence[str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Metadata for a table-like asset: ``dagster/row_count``, ``dagster/column_schema``, preview, URI."""
    md: dict[str, Any] = {
        "dagster/row_count": int(row_count),
        "dagster/column_schema": column_schema(preview.schema),
        "preview": dg.MetadataValue.md(markdown_preview(preview)),
    }
    if isinstance(uri, str):
        md["dagster/uri"] = dg.MetadataValue.path(uri)
    elif uri:
        md["uris"] = dg.MetadataValue.json(list(uri))
    for key, value in (extra or {}).items():
        md[key] = value
    return md


def warehouse_table_metadata(warehouse: Any, table: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Metadata for a warehouse table, read back from the warehouse itself."""
    from ecommerce_assets.storage.warehouses.base import quote_ident

    preview = warehouse.query(f"SELECT * FROM {quote_ident(table)} LIMIT {PREVIEW_ROWS}")  # noqa: S608
    rows = warehouse.row_count(table)
    md = table_metadata(rows, preview, uri=warehouse.uri(table), extra=extra)
    md["dagster/table_name"] = table
    return md


def registration_metadata(reg: Registration, lake: Lake, raw_prefix: str) -> dict[str, Any]:
    """What one landing->raw registration did, as the metadata of the asset that ran it."""
    return {
        "newly_registered": len(reg.registered),
        "newly_registered_keys": dg.MetadataValue.json(reg.registered[:100]),
        "unchanged": reg.unchanged,
        "superseded": reg.superseded,
        "quarantined_at_landing": len(reg.rejected),
        "quarantined_at_landing_files": dg.MetadataValue.json(reg.rejected[:100]),
        "raw_files": len(reg.raw_files),
        "raw_bytes": sum(o.size for o in reg.raw_files),
        "dagster/uri": dg.MetadataValue.path(lake.uri(raw_prefix)),
    }


def iceberg_commit_metadata(commit: IcebergCommit) -> dict[str, Any]:
    """What one Iceberg commit did, as asset metadata: the snapshot to time-travel or roll back to, the files and
    bytes it added, and the table's column schema as Iceberg has it after the commit (the asset page shows it)."""
    return {
        "iceberg/table": dg.MetadataValue.text(commit.table),
        # a snapshot id is a 64-bit number: as text, so that no JSON reader rounds it
        "iceberg/snapshot_id": dg.MetadataValue.text(str(commit.snapshot_id)),
        "iceberg/data_files_added": dg.MetadataValue.int(commit.added_data_files),
        "iceberg/bytes_added": dg.MetadataValue.int(commit.added_files_size),
        "iceberg/records_added": dg.MetadataValue.int(commit.added_records),
        "iceberg/records_deleted": dg.MetadataValue.int(commit.deleted_records),
        "iceberg/total_records": dg.MetadataValue.int(commit.total_records),
        "iceberg/new_columns": dg.MetadataValue.json(list(commit.new_columns)),
        "iceberg/metadata_location": dg.MetadataValue.path(commit.metadata_location),
        "iceberg/commit_attempts": dg.MetadataValue.int(commit.attempts),
        **(
            {"dagster/column_schema": dg.TableSchema(columns=[
                dg.TableColumn(name=name, type=type_, constraints=dg.TableColumnConstraints(nullable=not required))
                for name, type_, required in commit.columns
            ])}
            if commit.columns
            else {}
        ),
    }
