"""The transactions pipeline on the Iceberg table ``transactions`` (issue 15), on real parts.

Local mode: the real SQLite catalog and DuckDB warehouse of a fresh data dir, the assets materialized by Dagster.
aws mode: S3 and Glue on moto's server, the storage built from the settings as the product does.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import pyarrow as pa

from ecommerce_assets.services.transactions_generator import PRODUCTS
from ecommerce_assets.storage.iceberg import COMMIT_ID, IcebergTables
from ecommerce_assets.transforms import transactions as tx
from tests.conftest import MOTO_REGION

DAY_A, DAY_B = "2026-11-20", "2026-11-21"


def _rec(day: str, i: int, **over: object) -> dict[str, Any]:
    p = PRODUCTS[i % len(PRODUCTS)]
    quantity = 1 + i % 4
    r = {"transaction_id": f"{day}-T{i}", "timestamp": f"{day}T{i % 24:02d}:15:00", "customer_id": f"C{i % 3}",
         "product_id": p.product_id, "product_name": p.product_name, "category": p.category,
         "quantity": quantity, "price": p.price, "total_amount": round(quantity * p.price, 2)}
    r.update(over)
    return r


def _land(lake: Any, day: str, n: int, *, bad: int = 0) -> None:
    """``n`` good records of ``day`` in one JSON array, and ``bad`` records that break a rule in another file."""
    lake.write_bytes(f"landing/transactions/date={day}/good.json", json.dumps([_rec(day, i) for i in range(n)]).encode())
    if bad:
        lake.write_bytes(f"landing/transactions/date={day}/bad.json",
                         json.dumps([_rec(day, 100 + i, quantity=0) for i in range(bad)]).encode())


def _materialize(resources: dict, instance: dg.DagsterInstance, day: str) -> dg.ExecuteInProcessResult:
    from ecommerce_assets.defs.transactions.assets import transactions, transactions_raw

    result = dg.materialize([transactions_raw, transactions], partition_key=day, resources=resources,
                            instance=instance)
    assert result.success
    return result


def _commits(store: IcebergTables) -> list[str]:
    """The distinct commit ids of the table's snapshots, oldest first (one per write)."""
    seen: list[str] = []
    for snapshot in store.history(tx.TABLE):
        commit = snapshot.summary.get(COMMIT_ID)
        if commit and commit not in seen:
            seen.append(commit)
    return seen


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    return table.sort_by([("date", "ascending"), ("transaction_id", "ascending")]).to_pylist()


def test_a_partition_run_commits_once_and_a_rerun_gives_the_same_rows_in_one_new_commit(
    local_resources: dict,
) -> None:
    lake, store, warehouse = local_resources["lake"], local_resources["iceberg"], local_resources["warehouse"]
    _land(lake, DAY_A, 6, bad=2)
    # the layout before Iceberg (or a Lambda's part file) for this date: the partition run removes it
    lake.write_bytes(f"processed/transactions/date={DAY_A}/part-old.parquet", b"stale")
    with dg.instance_for_test() as instance:
        first = _materialize(local_resources, instance, DAY_A)
        rows_first, commits_first = _rows(store.read(tx.TABLE)), _commits(store)
        second = _materialize(local_resources, instance, DAY_A)
    rows_second, commits_second = _rows(store.read(tx.TABLE)), _commits(store)

    assert len(commits_first) == 1 and len(rows_first) == 6
    assert rows_second == rows_first  # same rows, every column
    assert commits_second[:1] == commits_first and len(commits_second) == 2  # exactly one new commit
    assert {r["date"] for r in rows_second} == {dt.date.fromisoformat(DAY_A)}

    md = second.asset_materializations_for_node("transactions__processed")[0].metadata
    current = store.history(tx.TABLE)[-1]
    assert current.current and md["iceberg/snapshot_id"].value == str(current.snapshot_id)
    files = store.data_files(tx.TABLE)
    assert md["iceberg/data_files_added"].value == len(files) == 1
    assert md["iceberg/bytes_added"].value == sum(Path(f).stat().st_size for f in files)
    assert md["iceberg/records_added"].value == 6 and md["iceberg/records_deleted"].value == 6
    assert md["iceberg/total_records"].value == 6 and md["iceberg/new_columns"].value == []
    assert md["iceberg/metadata_location"].value == store.metadata_location(tx.TABLE)
    assert md["dagster/row_count"].value == 6 and md["records_quarantined"].value == 2
    first_md = first.asset_materializations_for_node("transactions__processed")[0].metadata
    assert first_md["iceberg/records_deleted"].value == 0

    # the view is re-pointed at the second commit; the quarantine stays plain files; no plain processed Parquet
    catalog = md["catalog"].value
    assert catalog["metadata_location"] == store.metadata_location(tx.TABLE) and catalog["table_type"] == "ICEBERG"
    got = warehouse.query("SELECT * FROM lake.transactions").to_pylist()
    assert _rows(pa.Table.from_pylist(got)) == rows_second
    assert not list(lake.list_objects(f"processed/transactions/date={DAY_A}/"))
    assert [o.key for o in lake.list_objects(f"quarantine/transactions/date={DAY_A}/")] == [
        f"quarantine/transactions/date={DAY_A}/records.parquet"]


def test_the_analytics_read_the_iceberg_tables_current_snapshot(local_resources: dict) -> None:
    from ecommerce_assets.defs.transactions.assets import analytics_assets

    lake, store, warehouse = local_resources["lake"], local_resources["iceberg"], local_resources["warehouse"]
    _land(lake, DAY_A, 4)
    _land(lake, DAY_B, 3)
    selection = [a.key for a in analytics_assets]
    with dg.instance_for_test() as instance:
        _materialize(local_resources, instance, DAY_A)
        after_a = store.history(tx.TABLE)[-1].snapshot_id
        _materialize(local_resources, instance, DAY_B)
        assert dg.materialize(analytics_assets, resources=local_resources, instance=instance,
                              selection=selection).success
        trend = warehouse.query("SELECT CAST(day AS VARCHAR) AS d, transactions FROM "
                                "analytics.transactions_daily_trend ORDER BY 1").to_pylist()
        assert trend == [{"d": DAY_A, "transactions": 4}, {"d": DAY_B, "transactions": 3}]

        # the table rolled back to its first commit: the analytics follow the table, not files on disk
        store.rollback(tx.TABLE, after_a)
        result = dg.materialize(analytics_assets, resources=local_resources, instance=instance, selection=selection)
        assert result.success
        trend = warehouse.query("SELECT CAST(day AS VARCHAR) AS d, transactions FROM "
                                "analytics.transactions_daily_trend ORDER BY 1").to_pylist()
        assert trend == [{"d": DAY_A, "transactions": 4}]
        md = result.asset_materializations_for_node("analytics__transactions_daily_trend")[0].metadata
        assert md["iceberg/metadata_location"].value == store.metadata_location(tx.TABLE)
    # both dates' data files are still on disk: a Parquet glob would have counted 7
    assert sum(1 for o in lake.list_objects("processed/transactions/data/") if o.key.endswith(".parquet")) == 2


def test_an_older_table_without_a_column_is_evolved_in_the_partitions_commit(local_resources: dict) -> None:
    lake, store = local_resources["lake"], local_resources["iceberg"]
    _land(lake, DAY_A, 3)
    objects = list(lake.list_objects(f"landing/transactions/date={DAY_A}/"))
    full = tx.transform_partition(lake, DAY_A, objects, tables=store)
    schema = store.load(tx.TABLE).schema().as_arrow()
    # the table as an earlier version of the pipeline made it: no source_file
    store.catalog.drop_table(store.identifier(tx.TABLE))
    store.ensure_table(tx.TABLE, schema.remove(schema.get_field_index("source_file")), tx.PARTITION_BY)

    with dg.instance_for_test() as instance:
        result = _materialize(local_resources, instance, DAY_A)
    md = result.asset_materializations_for_node("transactions__processed")[0].metadata
    assert md["iceberg/new_columns"].value == ["source_file"]
    assert len(_commits(store)) == 1  # the schema change and the rows: one commit
    rows = store.read(tx.TABLE)
    assert rows.num_rows == full.records_out == 3 and rows.column("source_file").null_count == 0


def test_a_partition_with_no_good_record_left_is_emptied(local_resources: dict) -> None:
    lake, store = local_resources["lake"], local_resources["iceberg"]
    _land(lake, DAY_A, 2)
    _land(lake, DAY_B, 3)
    for day in (DAY_A, DAY_B):
        tx.transform_partition(lake, day, list(lake.list_objects(f"landing/transactions/date={day}/")), tables=store)
    # day B again, its only file now refused whole
    lake.delete_prefix(f"landing/transactions/date={DAY_B}/")
    lake.write_bytes(f"landing/transactions/date={DAY_B}/x.json", b"not json at all")
    result = tx.transform_partition(lake, DAY_B, list(lake.list_objects(f"landing/transactions/date={DAY_B}/")),
                                    tables=store)
    assert result.commit is not None and result.commit.deleted_records == 3 and result.commit.total_records == 2
    assert {str(r["date"]) for r in store.read(tx.TABLE).to_pylist()} == {DAY_A}


def test_on_aws_the_partition_lands_in_the_glue_iceberg_table_and_the_analytics_read_it_from_s3(
    aws_storage: dict[str, Any], moto_endpoint: str
) -> None:
    from ecommerce_assets.storage.glue_table_catalog import parquet_table_roots

    lake, store, catalog = aws_storage["lake"], aws_storage["iceberg"], aws_storage["table_catalog"]
    assert store.catalog_kind == "glue"
    _land(lake, DAY_A, 5, bad=1)
    objects = list(lake.list_objects(f"landing/transactions/date={DAY_A}/"))
    result = tx.transform_partition(lake, DAY_A, objects, tables=store)
    assert result.commit is not None and result.commit.added_records == 5 and result.records_quarantined == 1
    assert result.commit.metadata_location.startswith(f"s3://{lake.bucket}/lake/processed/transactions/metadata/")

    registration = catalog.register_iceberg_table(store, tx.TABLE, catalog.default_database, tx.TABLE)
    assert registration["table_type"] == "ICEBERG"
    glue = boto3.client("glue", endpoint_url=moto_endpoint, region_name=MOTO_REGION)
    entry = glue.get_table(DatabaseName=catalog.default_database, Name=tx.TABLE)["Table"]
    assert entry["Parameters"]["table_type"] == "ICEBERG"
    assert entry["Parameters"]["metadata_location"] == result.commit.metadata_location
    # the Glue Parquet registration of the processed zone leaves the Iceberg table's folder alone
    assert not any(p.startswith("processed/transactions/") for p in parquet_table_roots(lake).values())

    con = lake.engine()
    try:
        tx.bind_iceberg(con, store)
        key = "processed/analytics/transactions/daily_trend.parquet"
        with lake.writing(key) as out:
            assert tx.write_analytics(con, "daily_trend", out) == 1
        assert con.execute("SELECT transactions FROM read_parquet(?)", [lake.uri(key)]).fetchone() == (5,)
    finally:
        con.close()
