"""An Iceberg table of the processed zone: its history, and a rollback (or roll-forward) to one of its snapshots.

`table history <table>` prints one line per live snapshot, oldest first: the snapshot id, when it was committed
(UTC), the operation, the records it added and deleted, the table's total records after it, the partition and
the Dagster run id of the write when its summary has them. `*` marks the snapshot the table reads now; `~` a
snapshot in the middle of a commit (the delete half of a partition overwrite), a state no reader ever saw.

`table migrate` converts the plain Parquet processed zone of a data dir written before Iceberg into the tables,
with counts checked (``storage.migration``); `ecommerce-assets run` does it first when legacy files are there.

`table rollback <table> <snapshot_id>` makes that snapshot the current one (any listed snapshot not marked `~`,
back or forward) in one catalog commit, then re-points the readers as a write does (the DuckDB view
`lake.<table>` locally; in aws mode the Glue `ICEBERG` entry, which the commit itself updates, is checked) and
prints what changed. Tables computed from it (the analytics) read the new snapshot at their next materialization.

The storage is the product's (`storage/build.py`, part `iceberg`): the SQLite catalog in ECOMMERCE_DATA_DIR
locally, the Glue database ECOMMERCE_GLUE_DATABASE in aws mode. Exits 0 when done; 2 on an unknown table or
snapshot, a `~` snapshot or invalid settings (one `error:` line); 1 when the catalog or the lake failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ecommerce_assets.storage.iceberg import IcebergSnapshot, IcebergTables

NAME = "table"
HELP = "an Iceberg table of the processed zone: its snapshot history, or a rollback to one of its snapshots"

PARTITION_KEY = (
    "ecommerce.partition"  # the summary keys the transactions write sets (transforms.transactions)
)
RUN_ID_KEY = "dagster.run-id"
OPERATION_KEY = "ecommerce.operation"  # e.g. ``compact`` (IcebergTables.compact)
NUMERIC = {"added", "deleted", "total"}  # right-aligned
COLUMNS = ("snapshot_id", "committed_at_utc", "operation", "added", "deleted", "total", "partition", "run_id")


class TableCommandError(Exception):
    """A one-line refusal (unknown table or snapshot, storage not configured): printed, exit 2."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The actions ``history TABLE`` and ``rollback TABLE SNAPSHOT_ID``."""
    sub = parser.add_subparsers(dest="table_command", metavar="ACTION", required=True)
    history = sub.add_parser(
        "history",
        help="list the table's snapshots, oldest first (* marks the current one)",
        description="One line per live snapshot of the Iceberg table, oldest first.",
    )
    history.add_argument("table", help="the Iceberg table, e.g. transactions")
    rollback = sub.add_parser(
        "rollback",
        help="make a snapshot the table's current one (back or forward) and re-point the readers",
        description="Set the current snapshot of the Iceberg table (any snapshot `table history` lists), then "
        "re-point lake.<table> (DuckDB view locally, Glue in aws mode) as a write does.",
    )
    rollback.add_argument("table", help="the Iceberg table, e.g. transactions")
    rollback.add_argument("snapshot_id", type=int, help="a snapshot id from `ecommerce-assets table history`")
    sub.add_parser(
        "migrate",
        help="convert the plain Parquet processed zone of an older data dir into the Iceberg tables",
        description="Convert every legacy Parquet partition of the processed zone into its Iceberg table, one "
        "commit per partition, check its rows against the legacy files, then delete them (storage.migration). "
        "`ecommerce-assets run` does this first whenever legacy files are there.",
    )


def main(args: argparse.Namespace) -> int:
    """Run the action: 0 when done, 2 on a refusal (one ``error:`` line), 1 when the catalog or lake failed."""
    try:
        storage = _storage()
        if args.table_command == "history":
            return _history(storage["iceberg"], args.table)
        if args.table_command == "migrate":
            return _migrate(storage["lake"], storage["iceberg"])
        return _rollback(storage["iceberg"], storage["table_catalog"], args.table, args.snapshot_id)
    except TableCommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the catalog or the lake failed: one line, not a traceback
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        print(f"error: table {args.table_command} failed: {type(exc).__name__}: {first}", file=sys.stderr)
        return 1


def _migrate(lake: Any, tables: IcebergTables) -> int:
    """Convert the legacy partitions; one line per table, or one saying there was nothing to convert."""
    from ecommerce_assets.storage.migration import migrate

    done = migrate(lake, tables, log=print)
    if not done:
        print("nothing to migrate: no plain Parquet of the layout before Iceberg in the processed zone")
    return 0


def _storage() -> dict[str, Any]:
    """The product's storage parts ``iceberg`` and ``table_catalog`` (``build_storage``), or a refusal."""
    from ecommerce_assets.settings import get_settings
    from ecommerce_assets.storage.build import build_storage

    storage = build_storage(get_settings())
    if "iceberg" not in storage:
        raise TableCommandError(
            f"the Iceberg tables are not configured: {storage['problems'].get('iceberg')}"
        )
    return storage


def _name(tables: IcebergTables, table: str) -> str:
    """``table`` as the catalog names it inside the namespace (``processed.transactions`` -> ``transactions``);
    a refusal naming the tables there when it does not exist."""
    name = table.removeprefix(f"{tables.namespace}.")
    if "." in name or not name or not tables.exists(name):
        known = sorted(ident[-1] for ident in tables.catalog.list_tables(tables.namespace))
        raise TableCommandError(
            f"no Iceberg table {table!r} in the {_catalog_label(tables)} "
            f"(tables: {', '.join(known) if known else 'none yet'})"
        )
    return name


def _catalog_label(tables: IcebergTables) -> str:
    """Where the catalog is, for people: the Glue database, or the local SQLite file and namespace."""
    if tables.catalog_kind == "glue":
        return f"Glue database {tables.namespace}"
    return f"local catalog {tables.sqlite_path} (namespace {tables.namespace})"


def _committed_at(timestamp_ms: int) -> str:
    """The commit time in UTC, to the millisecond (ISO 8601, ``Z``)."""
    moment = dt.datetime.fromtimestamp(timestamp_ms / 1000, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{timestamp_ms % 1000:03d}Z"


def _operation(snapshot: IcebergSnapshot) -> str:
    """The snapshot's Iceberg operation, with the product's own (``overwrite(compact)``) when it set one."""
    extra = snapshot.summary.get(OPERATION_KEY)
    return f"{snapshot.operation}({extra})" if extra else snapshot.operation


def intermediate(snapshots: list[IcebergSnapshot]) -> dict[int, IcebergSnapshot]:
    """The snapshots followed by a later one of the same commit (``ecommerce.commit-id``), each mapped to the
    commit's last snapshot: a partition overwrite adds a delete and then an append, and readers only ever saw the
    table after the append."""
    from ecommerce_assets.storage.iceberg import COMMIT_ID

    last: dict[str, IcebergSnapshot] = {}
    for s in snapshots:  # oldest first
        if s.summary.get(COMMIT_ID):
            last[s.summary[COMMIT_ID]] = s
    return {
        s.snapshot_id: last[s.summary[COMMIT_ID]]
        for s in snapshots
        if s.summary.get(COMMIT_ID) and last[s.summary[COMMIT_ID]].snapshot_id != s.snapshot_id
    }


def _total(snapshot: IcebergSnapshot | None) -> str:
    """The table's record count after ``snapshot`` (``0`` for no snapshot, ``?`` when the summary lacks it)."""
    if snapshot is None:
        return "0"
    return snapshot.summary.get("total-records", "?")


def history_rows(snapshots: list[IcebergSnapshot]) -> list[tuple[str, ...]]:
    """The cells of each snapshot's line, in ``COLUMNS`` order (``-`` where the summary has nothing)."""
    return [
        (
            str(s.snapshot_id),
            _committed_at(s.timestamp_ms),
            _operation(s),
            s.summary.get("added-records", "0"),
            s.summary.get("deleted-records", "0"),
            _total(s),
            s.summary.get(PARTITION_KEY) or "-",
            s.summary.get(RUN_ID_KEY) or "-",
        )
        for s in snapshots
    ]


def _history(tables: IcebergTables, table: str) -> int:
    """Print the title line, the column names and one aligned line per snapshot, oldest first."""
    name = _name(tables, table)
    snapshots = tables.history(name)
    current = next((s for s in snapshots if s.current), None)
    partial = intermediate(snapshots)
    print(
        f"{tables.identifier(name)}: {len(snapshots)} snapshot(s), current "
        f"{current.snapshot_id if current else 'none'} (marked *; ~ marks the middle of a commit), "
        f"{_catalog_label(tables)}"
    )
    rows = [COLUMNS, *history_rows(snapshots)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    marks = [" ", *("*" if s.current else "~" if s.snapshot_id in partial else " " for s in snapshots)]
    for mark, row in zip(marks, rows, strict=True):
        cells = (
            cell.rjust(w) if column in NUMERIC else cell.ljust(w)
            for cell, w, column in zip(row, widths, COLUMNS, strict=True)
        )
        print(f"{mark} " + "  ".join(cells).rstrip())
    return 0


def _rollback(tables: IcebergTables, table_catalog: Any, table: str, snapshot_id: int) -> int:
    """Make ``snapshot_id`` current (one commit; none when it already is), re-point the readers, say what changed."""
    name = _name(tables, table)
    history = tables.history(name)
    snapshots = {s.snapshot_id: s for s in history}
    target = snapshots.get(snapshot_id)
    if target is None:
        raise TableCommandError(
            f"{tables.identifier(name)} has no snapshot {snapshot_id} "
            f"(see `ecommerce-assets table history {name}`)"
        )
    end = intermediate(history).get(snapshot_id)
    if end is not None and not target.current:
        raise TableCommandError(
            f"snapshot {snapshot_id} of {tables.identifier(name)} is the middle of a commit ({target.operation}), "
            f"a state no reader ever saw; that commit ends at snapshot {end.snapshot_id}"
        )
    before = next((s for s in snapshots.values() if s.current), None)
    if before is not None and before.snapshot_id == snapshot_id:
        print(
            f"{tables.identifier(name)}: snapshot {snapshot_id} is already the current one "
            f"({_total(before)} rows); nothing committed"
        )
    else:
        tables.rollback(name, snapshot_id)
        direction = "back" if before is not None and target.timestamp_ms < before.timestamp_ms else "forward"
        print(
            f"{tables.identifier(name)}: current snapshot "
            f"{before.snapshot_id if before else 'none'} -> {snapshot_id} (rolled {direction}); "
            f"rows {_total(before)} -> {_total(target)}"
        )
    # the readers, exactly as a write re-points them (transactions/processed): the view, or Glue's entry checked
    registration = table_catalog.register_iceberg_table(tables, name, table_catalog.default_database, name)
    print(
        f"readers: {registration['table']} reads snapshot {registration['snapshot_id']} "
        f"({registration['metadata_location']})"
    )
    print(
        "tables computed from it (the analytics) keep their rows until they are next materialized, "
        "then read this snapshot"
    )
    return 0
