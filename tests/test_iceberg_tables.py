"""The processed zone's Iceberg tables (``storage.iceberg``), on real parts.

A real SQLite catalog in a temporary data dir, real Parquet and metadata files, DuckDB reading them through the
offline iceberg extension, real processes racing and a real SIGKILL; Glue and S3 on moto's server.
"""

from __future__ import annotations

import json
import multiprocessing
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import boto3
import duckdb
import pyarrow as pa
import pytest

from ecommerce_assets.settings import Settings
from ecommerce_assets.storage.iceberg import (
    COMMIT_ID,
    IcebergSchemaConflict,
    IcebergTables,
    build_iceberg,
    install_iceberg_extensions,
    load_iceberg,
)
from tests.conftest import MOTO_REGION

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = pa.schema(
    [
        pa.field("date", pa.date32(), nullable=False),
        pa.field("id", pa.int64(), nullable=False),
        pa.field("amount", pa.float64()),
        pa.field("run", pa.string()),
    ]
)
DAY1, DAY2, DAY3 = date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 3)


def rows(day: date, ids: range, run: str = "r1") -> pa.Table:
    return pa.Table.from_pylist(
        [{"date": day, "id": i, "amount": i * 1.5, "run": run} for i in ids], schema=SCHEMA
    )


def sorted_rows(table: pa.Table) -> list[dict[str, Any]]:
    return table.sort_by([("date", "ascending"), ("id", "ascending")]).to_pylist()


def metadata_version(location: str) -> int:
    return int(Path(location).name.split("-")[0])


def duck() -> duckdb.DuckDBPyConnection:
    """A DuckDB connection as the product opens them (no implicit extension download), iceberg loaded."""
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    load_iceberg(con)
    return con


@pytest.fixture
def tables(data_dir: Path) -> IcebergTables:
    """The local Iceberg tables of a fresh data dir, built from the settings as the product does."""
    store = build_iceberg(Settings())
    store.ensure_table("orders", SCHEMA, ["date"])
    return store


def commits(store: IcebergTables, name: str) -> list[str]:
    """The distinct commit ids of the table's snapshots, in order (one per write)."""
    seen: list[str] = []
    for snap in store.history(name):
        cid = snap.summary.get(COMMIT_ID)
        if cid and cid not in seen:
            seen.append(cid)
    return seen


def test_build_iceberg_local_uses_the_data_dir_and_the_processed_zone(data_dir: Path) -> None:
    store = build_iceberg(Settings())
    assert store.catalog_kind == "sql"
    store.ensure_table("orders", SCHEMA, ["date"])
    assert (data_dir / "iceberg_catalog.db").is_file()
    meta = Path(store.metadata_location("orders"))
    assert meta.is_relative_to(data_dir / "lake" / "processed" / "orders" / "metadata")
    # ensure_table again returns the same table; another partitioning is refused
    assert store.ensure_table("orders", SCHEMA, ["date"]).metadata_location.endswith(meta.name)
    with pytest.raises(ValueError, match="partitioned by"):
        store.ensure_table("orders", SCHEMA, ["id"])


def test_rewriting_a_partition_is_idempotent_one_commit_per_write(tables: IcebergTables) -> None:
    first = tables.write("orders", pa.concat_tables([rows(DAY1, range(3)), rows(DAY2, range(3, 5))]))
    assert (first.added_records, first.deleted_records, first.total_records) == (5, 0, 5)
    assert first.added_data_files == 2 and first.added_files_size > 0
    before = sorted_rows(tables.read("orders"))

    again = tables.write("orders", rows(DAY1, range(3)), [{"date": DAY1}])
    assert sorted_rows(tables.read("orders")) == before
    assert (again.added_records, again.deleted_records, again.total_records) == (3, 3, 5)
    assert metadata_version(again.metadata_location) == metadata_version(first.metadata_location) + 1
    assert again.snapshot_id != first.snapshot_id
    assert len(commits(tables, "orders")) == 2  # each write is one commit (its delete and append snapshots)

    # another run's rows replace the partition's, never add to them; DAY2 is untouched
    tables.write("orders", rows(DAY1, range(2), run="r2"), [{"date": DAY1}])
    now = tables.read("orders")
    day1 = [r for r in sorted_rows(now) if r["date"] == DAY1]
    assert [(r["id"], r["run"]) for r in day1] == [(0, "r2"), (1, "r2")]
    assert now.num_rows == 4


def test_write_refuses_rows_outside_the_partitions_and_can_empty_one(tables: IcebergTables) -> None:
    tables.write("orders", pa.concat_tables([rows(DAY1, range(2)), rows(DAY2, range(2, 4))]))
    location = tables.metadata_location("orders")
    with pytest.raises(ValueError, match="1 row.* outside the partitions"):
        tables.write(
            "orders", pa.concat_tables([rows(DAY1, range(2)), rows(DAY3, range(9, 10))]), [{"date": DAY1}]
        )
    assert tables.metadata_location("orders") == location
    emptied = tables.write("orders", rows(DAY1, range(0)), [{"date": DAY2}])
    assert emptied.deleted_records == 2 and emptied.total_records == 2
    assert {r["date"] for r in tables.read("orders").to_pylist()} == {DAY1}


def test_a_new_column_is_added_nullable_and_old_rows_read_null(tables: IcebergTables) -> None:
    tables.write("orders", rows(DAY1, range(2)))
    version = metadata_version(tables.metadata_location("orders"))
    wider = rows(DAY2, range(2, 4)).append_column(
        pa.field("coupon", pa.string(), nullable=False), pa.array(["A", "B"])
    )
    commit = tables.write("orders", wider)
    assert commit.new_columns == ("coupon",)
    assert metadata_version(commit.metadata_location) == version + 1  # schema change and rows in one commit
    field = tables.load("orders").schema().find_field("coupon")
    assert not field.required
    got = {(r["id"], r["coupon"]) for r in tables.read("orders").to_pylist()}
    assert got == {(0, None), (1, None), (2, "A"), (3, "B")}
    # data without the new column still writes (the column reads null)
    tables.write("orders", rows(DAY1, range(2), run="r2"))
    assert {r["coupon"] for r in tables.read("orders").to_pylist() if r["date"] == DAY1} == {None}


def test_a_type_conflict_raises_and_leaves_the_table_unchanged(tables: IcebergTables) -> None:
    tables.write("orders", rows(DAY1, range(2)))
    location, before = tables.metadata_location("orders"), sorted_rows(tables.read("orders"))
    bad = pa.table({"date": pa.array([DAY2]), "id": pa.array([7], pa.int64()), "amount": pa.array(["12.50"])})
    with pytest.raises(IcebergSchemaConflict) as caught:
        tables.write("orders", bad)
    assert (caught.value.column, caught.value.table_type, caught.value.data_type) == (
        "amount",
        "double",
        "string",
    )
    assert "'amount'" in str(caught.value) and "double" in str(caught.value) and "string" in str(caught.value)
    assert tables.metadata_location("orders") == location
    assert sorted_rows(tables.read("orders")) == before
    # a widening is not a conflict: int32 ids into the long column
    ok = pa.table(
        {"date": pa.array([DAY2]), "id": pa.array([7], pa.int32()), "amount": pa.array([1.0], pa.float32())}
    )
    assert tables.write("orders", ok).added_records == 1


def test_history_and_rollback_restore_the_previous_rows(tables: IcebergTables) -> None:
    first = tables.write("orders", rows(DAY1, range(3)))
    kept = sorted_rows(tables.read("orders"))
    second = tables.write("orders", rows(DAY1, range(10, 12), run="bad"))
    history = tables.history("orders")
    assert [s.snapshot_id for s in history if s.current] == [second.snapshot_id]
    assert first.snapshot_id in [s.snapshot_id for s in history]
    assert sorted_rows(tables.read("orders", snapshot_id=first.snapshot_id)) == kept  # time travel

    assert tables.rollback("orders", first.snapshot_id) == tables.metadata_location("orders")
    assert sorted_rows(tables.read("orders")) == kept
    assert [s.snapshot_id for s in tables.history("orders") if s.current] == [first.snapshot_id]
    tables.rollback("orders", second.snapshot_id)  # and forward again
    assert {r["run"] for r in tables.read("orders").to_pylist()} == {"bad"}
    with pytest.raises(ValueError, match="no snapshot"):
        tables.rollback("orders", 12345)


def test_data_files_compact_and_expire(tables: IcebergTables) -> None:
    for k in range(3):  # three re-writes of DAY2 leave one file for it
        tables.write("orders", rows(DAY2, range(10 * k, 10 * k + 2)), [{"date": DAY2}])
    tables.write("orders", rows(DAY1, range(3)))
    files = tables.data_files("orders")
    assert len(files) == 2 and all(Path(f).is_file() for f in files)
    # pile small files into DAY1 with plain appends (what a compaction is for), then compact it
    table = tables.load("orders")
    table.append(rows(DAY1, range(3, 5)))
    table.append(rows(DAY1, range(5, 6)))
    assert sum("date=2024-01-01" in f for f in tables.data_files("orders")) == 3
    before = sorted_rows(tables.read("orders"))
    commit = tables.compact("orders", [{"date": DAY1}])
    assert sorted_rows(tables.read("orders")) == before
    assert sum("date=2024-01-01" in f for f in tables.data_files("orders")) == 1
    assert commit.deleted_records == commit.added_records == 6
    assert tables.history("orders")[-1].summary["ecommerce.operation"] == "compact"

    current = tables.load("orders").current_snapshot()
    expired = tables.expire_snapshots("orders", datetime.fromtimestamp(current.timestamp_ms / 1000 + 1, UTC))
    assert expired >= 5
    assert [s.snapshot_id for s in tables.history("orders")] == [current.snapshot_id]
    assert sorted_rows(tables.read("orders")) == before


def test_types_iceberg_refuses_are_normalised_before_writing(tables: IcebergTables) -> None:
    data = pa.table(
        {
            "date": pa.array([DAY3]),
            "id": pa.array([1], pa.int64()),
            "at_ns": pa.array([1_700_000_000_123_456_789], pa.timestamp("ns")),
            "at_london": pa.array([1_700_000_000_000_000], pa.timestamp("us", tz="Europe/London")),
            "big": pa.array([2**31 + 5], pa.uint32()),
            "huge": pa.array([2**64 - 1], pa.uint64()),
            "nothing": pa.array([None], pa.null()),
            "tag": pa.array(["x"]).dictionary_encode(),
        }
    )
    tables.write("orders", data)
    got = tables.read("orders").to_pylist()[0]
    assert got["at_ns"] == datetime(2023, 11, 14, 22, 13, 20, 123456)
    assert got["at_london"] == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert got["big"] == 2**31 + 5 and int(got["huge"]) == 2**64 - 1
    assert got["nothing"] is None and got["tag"] == "x"
    schema = tables.load("orders").schema()
    assert str(schema.find_field("big").field_type) == "long"
    assert str(schema.find_field("at_london").field_type) == "timestamptz"


def test_duckdb_iceberg_scan_equals_pyiceberg_at_every_snapshot(
    tables: IcebergTables, data_dir: Path
) -> None:
    tables.write("orders", pa.concat_tables([rows(DAY1, range(3)), rows(DAY2, range(3, 5))]))
    tables.write("orders", rows(DAY1, range(1), run="r2"))
    tables.write("orders", rows(DAY3, range(7, 9)).append_column("coupon", pa.array(["A", None])))
    meta = tables.metadata_location("orders")
    con = duck()
    now = con.execute("SELECT * FROM iceberg_scan(?)", [meta]).to_arrow_table()
    assert sorted_rows(now) == sorted_rows(tables.read("orders"))
    for snap in tables.history("orders"):
        duck_rows = con.execute(
            "SELECT * FROM iceberg_scan(?, snapshot_from_id => ?)", [meta, snap.snapshot_id]
        )
        assert sorted_rows(duck_rows.to_arrow_table()) == sorted_rows(tables.read("orders", snap.snapshot_id))
    # a fresh connection that only knows an extension directory loads iceberg by name (dbt-duckdb's way)
    ext = install_iceberg_extensions(data_dir / "duckdb_extensions")
    fresh = duckdb.connect(
        config={
            "extension_directory": str(ext),
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        }
    )
    fresh.execute("LOAD iceberg")
    assert fresh.execute("SELECT count(*) FROM iceberg_scan(?)", [meta]).fetchone() == (now.num_rows,)


def _race_writer(
    fields: dict[str, Any], day: date, ids: list[int], barrier: Any, rounds: int, out: Any
) -> None:
    """One process of a race: every round starts with the other writer's (a barrier) and re-writes a partition.

    Puts the commit attempts of each round on ``out`` (2 or more: that round lost a race and was re-applied).
    """
    store = IcebergTables(**fields)
    store.read("orders")  # imports and the catalog connection before the first round, not inside it
    attempts = []
    for n in range(rounds):
        barrier.wait(timeout=60)
        attempts.append(
            store.write("orders", rows(day, range(*ids), run=f"{day}-{n}"), [{"date": day}]).attempts
        )
    out.put(attempts)


def race(store: IcebergTables, writers: list[tuple[date, list[int]]], rounds: int) -> list[int]:
    """Run the writers in their own (spawned) processes, round by round; return every round's attempts."""
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(len(writers)), ctx.Queue()
    jobs = [
        ctx.Process(target=_race_writer, args=(store.model_dump(), day, ids, barrier, rounds, out))
        for day, ids in writers
    ]
    for job in jobs:
        job.start()
    attempts = [a for _ in jobs for a in out.get(timeout=150)]
    for job in jobs:
        job.join(timeout=30)
    assert [job.exitcode for job in jobs] == [0] * len(jobs)
    return attempts


def test_two_processes_writing_different_partitions_concurrently_both_land(tables: IcebergTables) -> None:
    race(tables, [(DAY1, [0, 4]), (DAY2, [100, 106])], rounds=4)
    got = tables.read("orders").to_pylist()
    assert sorted(r["id"] for r in got if r["date"] == DAY1) == list(range(4))
    assert sorted(r["id"] for r in got if r["date"] == DAY2) == list(range(100, 106))
    assert {r["run"] for r in got} == {
        f"{DAY1}-3",
        f"{DAY2}-3",
    }  # each partition holds its writer's last round
    assert len(commits(tables, "orders")) == 8  # no write lost
    assert int(tables.load("orders").current_snapshot().summary["total-records"]) == 10


KILLED_WRITER = textwrap.dedent("""
    import json, sys
    from datetime import date, timedelta
    import pyarrow as pa
    from ecommerce_assets.storage.iceberg import IcebergTables
    from tests.test_iceberg_tables import rows
    store = IcebergTables(**json.loads(sys.argv[1]))
    n = 0
    while True:  # every round re-writes the five partitions, one commit each: 4 rows tagged with the round
        for k in range(5):
            day = date(2024, 1, 1) + timedelta(days=k)
            store.write("orders", rows(day, range(4), run=f"round{n}"), [{"date": day}])
        n += 1
""")


def test_a_sigkilled_writer_leaves_the_last_commit_readable_and_consistent(tables: IcebergTables) -> None:
    base = tables.write("orders", rows(DAY1, range(4), run="base"))
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, json.dumps(tables.model_dump())], cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while (
            metadata_version(tables.metadata_location("orders"))
            < metadata_version(base.metadata_location) + 7
        ):
            assert proc.poll() is None, "the writer stopped by itself"
            assert time.monotonic() < deadline, "the writer made no progress"
            time.sleep(0.05)
        time.sleep(0.13)  # well inside a later write
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    after = IcebergTables(**tables.model_dump())  # a fresh catalog, as the next run would open it
    got = after.read("orders")
    by_day: dict[date, list[dict[str, Any]]] = {}
    for r in got.to_pylist():
        by_day.setdefault(r["date"], []).append(r)
    for day, day_rows in by_day.items():
        assert sorted(r["id"] for r in day_rows) == [0, 1, 2, 3], day  # never half a partition, never doubled
        assert len({r["run"] for r in day_rows}) == 1, day
    assert int(after.load("orders").current_snapshot().summary["total-records"]) == got.num_rows
    assert duck().execute(
        "SELECT count(*) FROM iceberg_scan(?)", [after.metadata_location("orders")]
    ).fetchone() == (got.num_rows,)
    # the next write commits normally on top of whatever the killed one left
    assert (
        after.write("orders", rows(DAY1, range(4), run="next"), [{"date": DAY1}]).total_records
        == got.num_rows
    )


@pytest.fixture
def glue_tables(moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> IcebergTables:
    """aws mode against moto: a fresh bucket and Glue database, the store built from the settings."""
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    database = f"db_{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name=MOTO_REGION).create_bucket(Bucket=bucket)
    for name, value in {
        "ECOMMERCE_ENV": "aws",
        "AWS_ENDPOINT_URL": moto_endpoint,
        "ECOMMERCE_S3_BUCKET": bucket,
        "ECOMMERCE_S3_PREFIX": "lake",
        "ECOMMERCE_GLUE_DATABASE": database,
        "ECOMMERCE_DATA_DIR": str(tmp_path / "data"),
    }.items():
        monkeypatch.setenv(name, value)
    return build_iceberg(Settings())


def test_on_glue_the_table_is_an_iceberg_table_athena_can_read(
    glue_tables: IcebergTables, moto_endpoint: str
) -> None:
    from ecommerce_assets.storage.s3_lake import configure_s3

    store = glue_tables
    store.ensure_table("orders", SCHEMA, ["date"])
    store.write("orders", pa.concat_tables([rows(DAY1, range(3)), rows(DAY2, range(3, 5))]))
    store.write("orders", rows(DAY1, range(2), run="r2").append_column("coupon", pa.array(["A", "B"])))
    glue = boto3.client("glue", endpoint_url=moto_endpoint, region_name=MOTO_REGION)
    entry = glue.get_table(DatabaseName=store.namespace, Name="orders")["Table"]
    assert entry["Parameters"]["table_type"] == "ICEBERG"
    assert entry["Parameters"]["metadata_location"] == store.metadata_location("orders")
    assert entry["StorageDescriptor"]["Location"].endswith("/lake/processed/orders")
    assert "coupon" in [c["Name"] for c in entry["StorageDescriptor"]["Columns"]]
    assert store.metadata_location("orders").startswith(f"{store.warehouse}/processed/orders/metadata/")

    got = store.read("orders")
    assert sorted((r["id"], r["run"], r["coupon"]) for r in got.to_pylist()) == [
        (0, "r2", "A"),
        (1, "r2", "B"),
        (3, "r1", None),
        (4, "r1", None),
    ]
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    configure_s3(con, region=MOTO_REGION, endpoint_url=moto_endpoint)
    load_iceberg(con)
    from_duckdb = con.execute(
        "SELECT * FROM iceberg_scan(?)", [store.metadata_location("orders")]
    ).to_arrow_table()
    assert sorted_rows(from_duckdb) == sorted_rows(got)


def test_two_processes_rewriting_the_same_partition_leave_one_writers_rows(tables: IcebergTables) -> None:
    """Same partition: the loser's commit is refused (ValidationException), re-applied, and wins whole, never mixed."""
    attempts = race(tables, [(DAY1, [0, 4]), (DAY1, [100, 103])], rounds=6)
    assert max(attempts) >= 2, f"no round raced (attempts {attempts}): the retry path was not exercised"
    ids = sorted(r["id"] for r in tables.read("orders").to_pylist())
    assert ids in (list(range(4)), list(range(100, 103)))
    assert len(commits(tables, "orders")) == 12
    assert int(tables.load("orders").current_snapshot().summary["total-records"]) == len(ids)


def test_a_table_of_another_lake_in_the_same_catalog_is_refused_by_name(tmp_path: Path) -> None:
    from ecommerce_assets.storage.base import StorageSettingError

    catalog = str(tmp_path / "shared_catalog.db")
    first = IcebergTables(catalog_kind="sql", warehouse=(tmp_path / "lake_a").as_uri(), sqlite_path=catalog)
    second = IcebergTables(catalog_kind="sql", warehouse=(tmp_path / "lake_b").as_uri(), sqlite_path=catalog)
    schema = pa.schema([("id", pa.int64())])
    first.ensure_table("events", schema)
    with pytest.raises(StorageSettingError, match="another deployment uses the same catalog namespace"):
        second.ensure_table("events", schema)
