"""``lakehouse/iceberg_maintenance``: compaction, snapshot expiry and the orphan sweep of every Iceberg table.

Per table, in this order:

1. **Compact**: each partition of the current snapshot with more than one data file, averaging under
   ``target_file_mb``, is rewritten with its own rows in one commit (the rows do not change; a stream's
   micro-batches or a day's re-runs become one file).
2. **Expire**: snapshots older than ``keep_days`` (default 7) are forgotten, never the current one: time travel and
   ``ecommerce-assets table rollback`` reach back that far.
3. **Sweep orphans**: a file in the table's folder that no live snapshot or the current metadata references, and
   older than ``orphan_grace_hours`` (default 72), is deleted. The grace period protects a writer that has written
   its files and not yet committed them.
"""


import datetime as dt
import time

import dagster as dg

from ecommerce_assets.storage import zones
from ecommerce_assets.storage.iceberg import IcebergTables
from ecommerce_assets.storage.lake import Lake

GROUP = "lakehouse"
MAINTENANCE_KEY = dg.AssetKey(["lakehouse", "iceberg_maintenance"])


class MaintenanceConfig(dg.Config):
    """How far back time travel reaches, how old an unreferenced file must be, and what a small file is."""

    keep_days: float = 7.0
    orphan_grace_hours: float = 72.0
    target_file_mb: int = 128
    now_epoch: float | None = None  # default: the clock; a test or a replay of a missed week sets it


def maintain_table(
    iceberg: IcebergTables, lake: Lake, name: str, config: MaintenanceConfig, log: dg.DagsterLogManager | None = None
) -> dict[str, int]:
    """Compact, expire and sweep one table; return what was done (partitions compacted, snapshots expired,
    orphan files and bytes deleted, data files before and after)."""
    now = config.now_epoch if config.now_epoch is not None else time.time()
    before = len(iceberg.data_files(name)) if iceberg.current_snapshot_id(name) is not None else 0
    partitions = iceberg.partitions_to_compact(name, config.target_file_mb * 1024 * 1024)
    if partitions:
        iceberg.compact(name, partitions)
    expired = iceberg.expire_snapshots(
        name, dt.datetime.fromtimestamp(now - config.keep_days * 86400, tz=dt.UTC)
    )
    keep = iceberg.referenced_files(name)
    folder = f"{zones.PROCESSED}{name}/"
    orphans, freed = 0, 0
    for obj in list(lake.list_objects(folder)):
        uri = lake.uri(obj.key).removeprefix("file://")
        if uri in keep or obj.last_modified > now - config.orphan_grace_hours * 3600:
            continue
        lake.delete_prefix(obj.key)
        orphans, freed = orphans + 1, freed + obj.size
        if log:
            log.info(f"{name}: deleted orphan {obj.key} ({obj.size} bytes)")
    after = len(iceberg.data_files(name)) if iceberg.current_snapshot_id(name) is not None else 0
    return {"partitions_compacted": len(partitions), "snapshots_expired": expired, "orphan_files_deleted": orphans,
            "orphan_bytes_deleted": freed, "data_files_before": before, "data_files_after": after}


@dg.asset(
    key=MAINTENANCE_KEY,
    group_name=GROUP,
    kinds={"iceberg"},
    description=(
        "Weekly upkeep of every Iceberg table of the processed zone: compact partitions of many small files, "
        "expire snapshots older than 7 days (time travel and rollback reach back that far), delete orphan files "
        "older than 72 hours. Rows never change; the metadata gives the figures per table."
    ),
)
def iceberg_maintenance(
    context: dg.AssetExecutionContext,
    config: MaintenanceConfig,
    lake: dg.ResourceParam[Lake],
    iceberg: dg.ResourceParam[IcebergTables],
) -> dg.MaterializeResult:
    done = {}
    for name in iceberg.table_names():
        done[name] = maintain_table(iceberg, lake, name, config, context.log)
        context.log.info(f"{name}: {done[name]}")
    totals = {k: sum(d[k] for d in done.values()) for k in next(iter(done.values()), {})}
    return dg.MaterializeResult(metadata={
        "tables": dg.MetadataValue.json(done),
        **{k: dg.MetadataValue.int(v) for k, v in totals.items()},
        "keep_days": config.keep_days,
        "orphan_grace_hours": config.orphan_grace_hours,
    })
