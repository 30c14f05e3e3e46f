"""A data dir written before the processed zone became Iceberg tables is converted, with counts checked: on the
first ``ecommerce-assets run``, or with ``ecommerce-assets table migrate`` (issue 15, ``storage.migration``)."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from ecommerce_assets.resources import build_resources
from ecommerce_assets.storage.migration import legacy_parts, migrate
from tests.conftest import RETAIL_SAMPLE_5000
from tests.pipeline_inputs import cli_env, landing, run_cli

GOLD = ("gold.customers", "gold.products", "gold.sales_transactions")


def _gold(db: Path) -> dict[str, list[tuple]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {t: sorted(con.execute(f"SELECT * EXCLUDE (_loaded_at) FROM {t}").fetchall(), key=repr)  # noqa: S608
                if "_loaded_at" in [c[0] for c in con.execute(f"DESCRIBE {t}").fetchall()]  # noqa: S608
                else sorted(con.execute(f"SELECT * FROM {t}").fetchall(), key=repr)  # noqa: S608
                for t in GOLD}
    finally:
        con.close()


def _static(data: Path):
    """The table ``online_retail_cleaned`` at the snapshot the data dir's catalog points at."""
    import sqlite3

    from pyiceberg.table import StaticTable

    con = sqlite3.connect(data / "iceberg_catalog.db")
    try:
        meta = con.execute(
            "SELECT metadata_location FROM iceberg_tables WHERE table_name = 'online_retail_cleaned'").fetchone()[0]
    finally:
        con.close()
    return StaticTable.from_metadata(meta)


def _cleaned_rows(data: Path) -> list[tuple]:
    return sorted((tuple(r.values()) for r in _static(data).scan().to_arrow().to_pylist()), key=repr)


def _columns(data: Path) -> list[str]:
    return [f.name for f in _static(data).schema().fields]


def test_the_first_run_over_a_parquet_data_dir_converts_it_and_the_warehouse_stays_the_same(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    data = Path(env["ECOMMERCE_DATA_DIR"])
    shutil.copy(RETAIL_SAMPLE_5000, landing(data, "online_retail") / RETAIL_SAMPLE_5000.name)
    first = run_cli(["run", "--pipeline", "retail"], env, tmp_path)
    assert first.returncode == 0, first.show()
    rows, gold = _cleaned_rows(data), _gold(data / "warehouse.duckdb")

    # the same data dir as the Parquet layout wrote it: one folder a month, the month in the path, no catalog
    table = pa.Table.from_pylist([dict(zip(_columns(data), r, strict=True)) for r in rows])
    legacy = data / "lake/processed/online_retail/cleaned"
    for month in sorted(set(table.column("invoice_month").to_pylist())):
        part = table.filter(pa.compute.equal(table["invoice_month"], month)).drop_columns(["invoice_month"])
        (legacy / f"invoice_month={month}").mkdir(parents=True)
        pq.write_table(part, legacy / f"invoice_month={month}" / "data_0.parquet")
    shutil.rmtree(data / "lake/processed/online_retail_cleaned")
    (data / "iceberg_catalog.db").unlink()

    again = run_cli(["run", "--pipeline", "retail"], env, tmp_path)
    assert again.returncode == 0, again.show()
    assert "migrating the processed zone's plain Parquet into Iceberg tables" in again.stdout, again.show()
    line = next(x for x in again.stdout.splitlines() if "migrated online_retail_cleaned" in x)
    assert f"{len(rows):,} legacy rows -> {len(rows):,} rows committed" in line, again.show()
    assert not legacy.exists() or not list(legacy.rglob("*.parquet"))
    assert _cleaned_rows(data) == rows
    assert _gold(data / "warehouse.duckdb") == gold
    nothing = run_cli(["table", "migrate"], env, tmp_path)
    assert nothing.returncode == 0 and "nothing to migrate" in nothing.stdout, nothing.show()


def test_every_legacy_layout_is_converted_once_and_a_partition_the_table_has_is_superseded(data_dir: Path) -> None:
    resources = build_resources()
    lake, iceberg = resources["lake"], resources["iceberg"]
    day1, day2 = dt.date(2024, 5, 1), dt.date(2024, 5, 2)
    tx = pa.table({"transaction_id": ["a", "b", "c"], "quantity": pa.array([1, 2, 3], pa.int64())})
    lake.write_bytes("processed/transactions/date=2024-05-01/transactions.parquet", _parquet(tx.slice(0, 2)))
    lake.write_bytes("processed/transactions/date=2024-05-02/transactions.parquet", _parquet(tx.slice(2, 1)))
    snap = pa.table({"asin": ["X1", "X2"], "seller_id": ["S1", "S1"],
                     "snapshot_date": pa.array([day1, day1], pa.date32())})
    lake.write_bytes("processed/catalog/snapshots/seller=S1/date=2024-05-01/products.parquet", _parquet(snap))
    customers = pa.table({"customer_id": ["C1", "C2", "C3"], "name": ["a", "b", "c"]})
    lake.write_bytes("processed/orders/customers/cleaned.parquet", _parquet(customers))
    lines = pa.table({"shard_id": ["s0", "s0"], "sequence_number": ["1", "2"], "quantity": pa.array([5, 6], pa.int64())})
    lake.write_bytes("processed/stream/order_lines/2024-05-01/batch-1-2.parquet", _parquet(lines))
    # the product already re-made 2024-05-02 after the change: the table's rows are the newer ones
    newer = pa.table({"transaction_id": ["c", "d"], "quantity": pa.array([3, 4], pa.int64()),
                      "date": pa.array([day2, day2], pa.date32())})
    iceberg.ensure_table("transactions", newer.schema, ["date"])
    iceberg.write("transactions", newer)

    assert len(legacy_parts(lake)) == 5
    done = {m.table: m for m in migrate(lake, iceberg)}
    assert {t: (m.partitions, m.superseded, m.legacy_rows, m.rows_committed) for t, m in done.items()} == {
        "transactions": (1, 1, 2, 2), "catalog_snapshots": (1, 0, 2, 2), "orders_customers": (1, 0, 3, 3),
        "stream_order_lines": (1, 0, 2, 2)}
    got = iceberg.read("transactions").sort_by("transaction_id")
    assert got.column("transaction_id").to_pylist() == ["a", "b", "c", "d"]
    assert got.column("date").to_pylist() == [day1, day1, day2, day2]
    assert iceberg.partition_columns(iceberg.load("catalog_snapshots")) == ("seller_id", "snapshot_date")
    stream = iceberg.read("stream_order_lines")
    assert set(stream.column("batch").to_pylist()) == {"batch-1-2"} and stream.num_rows == 2
    assert sorted(iceberg.read("orders_customers").column("customer_id").to_pylist()) == ["C1", "C2", "C3"]
    assert not legacy_parts(lake) and not list(lake.list_objects("processed/orders/"))
    assert migrate(lake, iceberg) == []  # nothing left: a second run is a no-op


def _parquet(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()
