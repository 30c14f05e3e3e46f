"""Warehouse loads "as of" a snapshot of an Iceberg table: the run config every load from a processed table takes.

A load reads the table's current snapshot by default. With ``snapshot_id`` (from ``ecommerce-assets table history
<table>``, or the ``iceberg/snapshot_id`` of an earlier materialization) it reads that snapshot instead, so the
warehouse can be put back to what it held before a bad write without touching the table; ``ecommerce-assets table
rollback <table> <snapshot_id>`` moves the table itself back, and the next load follows it.
"""

from typing import Any

import dagster as dg
from pydantic import Field

from ecommerce_assets.storage.iceberg import IcebergTables, create_scan_view


class AsOfSnapshot(dg.Config):
    """Which snapshot of the source Iceberg table to load: empty for the current one."""

    snapshot_id: Any = Field(
        default=None,
        description=(
            "Load the source table as of this Iceberg snapshot: its id, a number or the same digits as text "
            "(`ecommerce-assets table history <table>` lists them). Empty: the table's current snapshot."
        ),
    )

    def snapshot(self) -> int | None:
        """The configured snapshot id: None (the current snapshot), an int, or its digits as text; a
        ``ValueError`` for anything else."""
        value = self.snapshot_id
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        text = str(value).strip()
        if isinstance(value, bool) or not isinstance(value, int | str) or not text.lstrip("-").isdigit():
            raise ValueError(f"snapshot_id must be a snapshot id (a whole number), not {value!r}")
        return int(text)


def bind_as_of(con, iceberg: IcebergTables, table: str, view: str, config: AsOfSnapshot) -> tuple[str, int]:
    """Create the view ``view`` of ``con`` over ``table`` at the configured snapshot; return the metadata file read
    and the snapshot id. ``dg.Failure`` when the table is empty or has no such snapshot (the message says how to
    list them)."""
    current = iceberg.current_snapshot_id(table)
    if current is None:
        raise dg.Failure(description=f"the Iceberg table {table} has no rows yet: materialize it first")
    wanted = config.snapshot() or current
    if wanted != current and wanted not in {s.snapshot_id for s in iceberg.history(table)}:
        raise dg.Failure(description=(
            f"the Iceberg table {table} has no snapshot {wanted} (expired, or another table's): "
            f"`ecommerce-assets table history {table}` lists them"))
    location = iceberg.metadata_location(table)
    create_scan_view(con, view, location, None if wanted == current else wanted)
    return location, wanted


def as_of_metadata(location: str, snapshot_id: int, config: AsOfSnapshot) -> dict:
    """What a load read, as metadata: the table's metadata file, the snapshot, and whether it was the current one."""
    return {
        "iceberg/metadata_location": dg.MetadataValue.path(location),
        "iceberg/snapshot_id": dg.MetadataValue.text(str(snapshot_id)),
        "iceberg/as_of": dg.MetadataValue.bool(config.snapshot() is not None),
    }
