"""Warehouse loads "as of" a snapshot of an Iceberg table: the run config every load from a processed table takes.

A load reads the table's current snapshot by default. With ``snapshot_id`` (from ``ecommerce-assets table history
<table>``, or the ``iceberg/snapshot_id`` of an earlier materialization) it reads that snapshot instead, so the
warehouse can be put back to what it held before a bad write without touching the table; ``ecommerce-assets table
rollback <table> <snapshot_id>`` moves the table itself back, and the next load follows it.
"""

import dagster as dg

from ecommerce_assets.storage.iceberg import IcebergTables, create_scan_view


class AsOfSnapshot(dg.Config):
    """Which snapshot of the source Iceberg table to load: empty for the current one."""

    snapshot_id: str | None = None  # text: a 64-bit id survives every JSON and YAML reader


def bind_as_of(con, iceberg: IcebergTables, table: str, view: str, config: AsOfSnapshot) -> tuple[str, int]:
    """Create the view ``view`` of ``con`` over ``table`` at the configured snapshot; return the metadata file read
    and the snapshot id. ``dg.Failure`` when the table is empty or has no such snapshot (the message says how to
    list them)."""
    current = iceberg.current_snapshot_id(table)
    if current is None:
        raise dg.Failure(description=f"the Iceberg table {table} has no rows yet: materialize it first")
    wanted = int(config.snapshot_id) if config.snapshot_id else current
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
        "iceberg/as_of": dg.MetadataValue.bool(bool(config.snapshot_id)),
    }
