"""Probes for the fault tests of PostgreSQL loads, the Dagster daemon and a full disk.

``tests/faults.py`` reads a local data dir (DuckDB warehouse, lake folder); the probes here read what it
does not:

* PostgreSQL (``pg_figures``, ``pg_backends``): every table of a database with its rows, the sums of its
  numeric columns, duplicate rows and duplicate keys, read by a separate psycopg connection (a reader, as a
  dashboard would be); the server's view of the product's connections (``pg_stat_activity``).
* An S3 lake on moto (``s3_lake_figures``): Parquet rows per dataset, raw and quarantined files, in-flight
  names left behind.
* A Dagster instance (``SensorTicks``): the latest tick of a sensor and the runs it reserved, read through
  ``DagsterInstance.from_config`` the way the daemon's own storage is read, never written.
* ``python -m tests.fault_probes check DATA_DIR OUT.json``: the figures of a local data dir
  (``faults.figures``), its unreadable and in-flight files and its gold Parquet per file, written as JSON to
  ``OUT.json``. The disk-full test runs it inside the mount namespace whose tmpfs holds the data dir.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# columns whose value is the time a load happened, never a figure of the data (as in tests/faults.py)
VOLATILE_COLUMNS = (
    "_ingested_at",
    "_loaded_at",
    "loaded_at",
    "dbt_valid_from",
    "dbt_valid_to",
    "dbt_updated_at",
    "dbt_scd_id",
    "valid_from",
    "valid_to",
    "_snapshot_at",
    "updated_at",
    "run_started_at",
)
PG_NUMERIC = ("smallint", "integer", "bigint", "numeric", "real", "double precision")
# the natural keys of the Online Retail star schema: one row per customer, one per stock code
KEYS = {"gold.customers": ("customerid",), "gold.products": ("stockcode",)}
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")


# --- PostgreSQL ------------------------------------------------------------------------------------------
def pg_figures(dsn: str, lock_timeout_s: float = 60.0) -> dict[str, dict[str, Any]]:
    """Every base table of the database at ``dsn``, as a separate reader sees it: ``{"schema.table": {rows,
    duplicate_rows, duplicate_keys (star-schema tables), sum(<numeric column>)...}}``.

    The reader waits at most ``lock_timeout_s`` for a lock a writer holds (a transaction in flight)."""
    import psycopg
    from psycopg import sql

    out: dict[str, dict[str, Any]] = {}
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute("SELECT set_config('lock_timeout', %s, false)", [f"{int(lock_timeout_s * 1000)}ms"])
        tables = con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE' AND table_schema <> ALL(%s) ORDER BY 1, 2",
            [list(SYSTEM_SCHEMAS)],
        ).fetchall()
        for schema, table in tables:
            cols = con.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
                [schema, table],
            ).fetchall()
            name = sql.Identifier(schema, table)
            stable = [c for c, _t in cols if c.lower() not in VOLATILE_COLUMNS]
            numeric = [c for c, t in cols if c.lower() not in VOLATILE_COLUMNS and t in PG_NUMERIC]
            sums = [sql.SQL("round(sum({})::numeric, 4)::float8").format(sql.Identifier(c)) for c in numeric]
            row = con.execute(
                sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join([sql.SQL("count(*)"), *sums]), name)
            ).fetchone()
            assert row is not None
            distinct = row[0]
            if stable:
                distinct = con.execute(
                    sql.SQL("SELECT count(*) FROM (SELECT DISTINCT {} FROM {}) AS d").format(
                        sql.SQL(", ").join(map(sql.Identifier, stable)), name
                    )
                ).fetchone()[0]  # type: ignore[index]
            figure: dict[str, Any] = {"rows": row[0], "duplicate_rows": row[0] - distinct}
            figure |= {f"sum({c})": v for c, v in zip(numeric, row[1:], strict=True)}
            key = KEYS.get(f"{schema}.{table}")
            if key:
                figure["duplicate_keys"] = con.execute(
                    sql.SQL("SELECT count(*) - count(DISTINCT ({})) FROM {}").format(
                        sql.SQL(", ").join(map(sql.Identifier, key)), name
                    )
                ).fetchone()[0]  # type: ignore[index]
            out[f"{schema}.{table}"] = figure
    return out


@dataclass(frozen=True)
class Backend:
    """One server process of the product's connections, as ``pg_stat_activity`` shows it."""

    pid: int
    state: str | None
    in_transaction: bool
    query: str


def pg_backends(monitor: Any, database: str) -> list[Backend]:
    """The client backends connected to ``database`` (the monitor's own connection left out)."""
    rows = monitor.execute(
        "SELECT pid, state, xact_start IS NOT NULL, coalesce(query, '') FROM pg_stat_activity "
        "WHERE datname = %s AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
        [database],
    ).fetchall()
    return [Backend(pid, state, bool(tx), query) for pid, state, tx, query in rows]


def wait_backends_gone(monitor: Any, database: str, timeout: float = 30.0) -> list[Backend]:
    """Wait until no client backend of ``database`` is left (a killed client's are ended by the server when
    it reads end-of-file on the socket); return those still there after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        left = pg_backends(monitor, database)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


# --- an S3 lake on moto ------------------------------------------------------------------------------------
def s3_lake_figures(
    endpoint: str, bucket: str, prefix: str, region: str = "us-east-1", glue_database: str | None = None
) -> dict[str, Any]:
    """The lake's datasets below ``s3://bucket/prefix/``: the rows of each Iceberg table at the snapshot the Glue
    database ``glue_database`` points at (its folder's files are not figures: a killed writer leaves files no
    snapshot references), Parquet rows of each gold file and of the quarantine; the raw and landing file
    counts; the quarantined files; in-flight (``.tmp-``) objects left."""
    import boto3
    import pyarrow as pa
    import pyarrow.parquet as pq

    s3 = boto3.client(
        "s3", endpoint_url=endpoint, region_name=region, aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    root = prefix.strip("/") + "/"
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=root):
        keys += [o["Key"][len(root) :] for o in page.get("Contents", [])]
    out: dict[str, Any] = {"in-flight objects": sorted(k for k in keys if "/.tmp-" in f"/{k}")}
    counted: dict[str, int] = {}
    tables = sorted({k.split("/")[1] for k in keys if k.startswith("processed/") and k.endswith(".metadata.json")})
    if tables and glue_database:
        from pyiceberg.catalog.glue import GlueCatalog

        glue = GlueCatalog(
            "figures", **{"glue.endpoint": endpoint, "s3.endpoint": endpoint, "glue.region": region,
                          "s3.region": region, "glue.access-key-id": "testing", "glue.secret-access-key": "testing",
                          "s3.access-key-id": "testing", "s3.secret-access-key": "testing"}
        )
        for name in tables:
            if not glue.table_exists(f"{glue_database}.{name}"):
                continue
            table = glue.load_table(f"{glue_database}.{name}")
            if table.current_snapshot() is not None:
                counted[f"iceberg {name} rows"] = sum(t.file.record_count for t in table.scan().plan_files())
    for key in sorted(keys):
        if "/.tmp-" in f"/{key}":
            continue
        if key.startswith("processed/") and key.split("/")[1] in tables:
            continue  # an Iceberg table's file: counted through the catalog above
        zone = key.split("/", 1)[0]
        if zone in ("landing", "raw") or key.startswith("quarantine/online_retail/files/"):
            unit = "/".join(key.split("/")[:2]) + " files"
            counted[unit] = counted.get(unit, 0) + 1
            continue
        if not key.endswith(".parquet"):
            continue
        try:
            body = s3.get_object(Bucket=bucket, Key=root + key)["Body"].read()
            rows = pq.read_metadata(pa.BufferReader(body)).num_rows
        except Exception as exc:  # noqa: BLE001 - listed but not readable: what a reader would hit
            out.setdefault("unreadable objects", []).append(f"{key}: {type(exc).__name__}: {str(exc)[:200]}")
            continue
        counted[f"{key} rows"] = counted.get(f"{key} rows", 0) + rows
    out.update(sorted(counted.items()))
    return out


# --- a Dagster instance ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TickView:
    """The latest tick of a sensor: its status, the run ids it reserved, those already created as runs."""

    tick_id: int
    status: str
    reserved: tuple[str, ...]
    created: tuple[str, ...]
    run_keys: tuple[str, ...]  # those of the run requests it reserved runs for

    @property
    def submitting(self) -> bool:
        """Started, its runs reserved, some of them created and some not yet: the daemon is mid-tick."""
        return self.status == "STARTED" and 0 < len(self.created) < len(self.reserved)


class SensorTicks:
    """Read-only view of one sensor's ticks and runs in the instance at ``home`` (``DAGSTER_HOME``)."""

    def __init__(self, home: Path, sensor: str) -> None:
        import dagster as dg

        self.instance = dg.DagsterInstance.from_config(str(home))
        self.sensor = sensor
        self._ids: tuple[str, str] | None = None

    def _origin(self) -> tuple[str, str] | None:
        from dagster._core.definitions.run_request import InstigatorType

        if self._ids is None:
            for state in self.instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
                if state.name == self.sensor:
                    self._ids = (state.instigator_origin_id, state.selector_id)
        return self._ids

    def latest(self) -> TickView | None:
        """The sensor's latest tick (None before its first)."""
        ids = self._origin()
        if ids is None:
            return None
        ticks = self.instance.get_ticks(ids[0], ids[1], limit=1)
        if not ticks:
            return None
        tick = ticks[0]
        reserved = tuple(r for r in (tick.tick_data.reserved_run_ids or []) if r)
        created = tuple(r for r in reserved if self.instance.has_run(r))
        keys = tuple(r.run_key for r in (tick.tick_data.run_requests or []) if r.run_key)
        return TickView(tick.tick_id, tick.status.value, reserved, created, keys)

    def runs(self) -> list[Any]:
        """Every run the sensor asked for (``DagsterRun``), oldest first."""
        import dagster as dg

        runs = self.instance.get_runs(filters=dg.RunsFilter(tags={"dagster/sensor_name": self.sensor}))
        return list(reversed(runs))

    def statuses(self, run_ids: Iterable[str]) -> dict[str, str]:
        """``{run id: status}`` of the runs that exist."""
        out = {}
        for run_id in run_ids:
            run = self.instance.get_run_by_id(run_id)
            if run is not None:
                out[run_id] = run.status.value
        return out


# --- a local data dir, read from inside a mount namespace ------------------------------------------------
def tmpfs_kib(folder: Path) -> int:
    """What the files below ``folder`` take on a tmpfs: whole 4 KiB pages per file."""
    if not folder.exists():
        return 0
    return sum(math.ceil(p.stat().st_size / 4096) * 4 for p in folder.rglob("*") if p.is_file())


def local_units(data_dir: Path) -> dict[str, Any]:
    """The units of the Online Retail pipeline one write puts in place: the cleaned Iceberg table (rows),
    each gold Parquet file (rows), the quarantined rows, each ``gold.*`` warehouse table (figures)."""
    import pyarrow.parquet as pq

    from tests import faults

    lake = data_dir / "lake"
    units: dict[str, Any] = {}
    cleaned = faults.iceberg_tables(data_dir).get("online_retail_cleaned")
    units["cleaned rows"] = cleaned.rows if cleaned is not None else None  # the Iceberg table's current snapshot
    for p in sorted((lake / "processed/online_retail/gold").glob("*.parquet")):
        units[f"gold/{p.name} rows"] = pq.read_metadata(p).num_rows
    quarantine = lake / "quarantine/online_retail/rows/quarantined_rows.parquet"
    units["quarantined rows"] = pq.read_metadata(quarantine).num_rows if quarantine.exists() else None
    for key, figure in faults.figures(data_dir).items():
        if key.startswith("warehouse gold."):
            units[key] = figure
    return units


def check(data_dir: Path, out: Path) -> int:
    """Write the figures of ``data_dir`` as a user would check them to ``out`` (JSON); 0 when written."""
    from tests import faults

    result: dict[str, Any] = {}
    for name, probe in (
        ("figures", lambda: faults.figures(data_dir)),
        ("units", lambda: local_units(data_dir)),
        ("unreadable", lambda: faults.unreadable_files(data_dir / "lake")),
        ("temporary", lambda: faults.temporary_files(data_dir / "lake")),
    ):
        try:
            result[name] = probe()
        except Exception as exc:  # noqa: BLE001 - what a reader cannot open is itself the finding
            result[f"{name} error"] = f"{type(exc).__name__}: {str(exc)[:400]}"
    out.write_text(json.dumps(result, indent=1, sort_keys=True, default=str))
    return 0


if __name__ == "__main__":  # python -m tests.fault_probes check DATA_DIR OUT.json
    if sys.argv[1:2] != ["check"] or len(sys.argv) != 4:
        sys.exit("usage: python -m tests.fault_probes check DATA_DIR OUT.json")
    sys.exit(check(Path(sys.argv[2]), Path(sys.argv[3])))


# --- the Dagster daemon ------------------------------------------------------------------------------------
class Daemon:
    """``dagster-daemon run -m ecommerce_assets.definitions`` (the venv's) in its own session, output to ``log``:
    the daemon the deployment runs (deploy/), on the instance at ``DAGSTER_HOME`` of ``env``."""

    def __init__(self, env: Mapping[str, str], log: Path) -> None:
        self.env, self.log = dict(env), log
        self.proc: Any = None

    def start(self) -> Any:
        """Start the daemon; its ``Popen`` (leader of its own process group)."""
        import subprocess

        from tests.daemon import LOCATION, ROOT

        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-m", LOCATION],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self.proc

    def stop(self, bound: float = 30.0) -> float:
        """SIGTERM to the daemon's process group; whatever is left after ``bound`` s is killed. The seconds."""
        import os
        import signal

        from tests.daemon import descendants, running

        assert self.proc is not None, "not started"
        seen = descendants(self.proc.pid) | {self.proc.pid}
        began = time.monotonic()
        os.killpg(self.proc.pid, signal.SIGTERM)
        while time.monotonic() - began < bound and (self.proc.poll() is None or running(seen)):
            time.sleep(0.2)
        for pid in running(seen):
            os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        return time.monotonic() - began

    def kill_everything(self) -> None:
        """After a failed test: nothing the daemon started may outlive it."""
        import os
        import signal

        from tests.daemon import descendants, running

        if self.proc is None:
            return
        for pid in running(descendants(self.proc.pid) | {self.proc.pid}):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)

    def tail(self, lines: int = 40) -> str:
        from tests.faults import tail

        return tail(self.log, lines)
