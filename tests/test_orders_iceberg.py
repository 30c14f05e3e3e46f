"""The orders ELT's cleaned zone on the Iceberg tables ``orders_<source>`` (issue 15), on real parts.

Local mode: the real SQLite catalog and DuckDB warehouse of a fresh data dir, the assets materialized by Dagster;
the real PostgreSQL for the as-of load on another warehouse. aws mode: S3 and Glue on moto's server, the storage
built from the settings as the product does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import pyarrow as pa
import pytest

from ecommerce_assets.defs.orders import assets as A
from ecommerce_assets.lib.time_travel import AsOfSnapshot
from ecommerce_assets.storage.iceberg import COMMIT_ID, IcebergTables
from tests.conftest import MOTO_REGION

HEADER = "order_id,customer_id,product_id,order_date,quantity,amount,status,updated_at\n"
BATCH_1 = HEADER + "O1,C1,P1,2026-01-01,1,10.50,placed,\nO2,C2,P2,2026-01-01,2,20.00,placed,\n"
# O2 changed, O3 new, one row quarantined (quantity not a number)
BATCH_2 = (
    HEADER
    + "O2,C2,P2,2026-01-01,5,99.99,shipped,\nO3,C1,P3,2026-01-02,1,5.00,placed,\nO4,C1,P1,2026-01-02,x,1,,\n"
)
CUSTOMERS = (
    b'[{"customer_id": "C1", "customer_name": "Asha", "email": " Asha@Example.com ", "city": "Pune"},'
    b' {"customer_id": "C2", "customer_name": "Ravi", "email": "ravi@example.com", "city": "Goa"}]'
)


def _assets(source: str) -> list[dg.AssetsDefinition]:
    return {
        "orders": [A.raw_orders_files, A.cleaned_orders, A.load_orders],
        "customers": [A.raw_customers_files, A.cleaned_customers, A.load_customers],
        "products": [A.raw_products_files, A.cleaned_products, A.load_products],
    }[source]


def _land(lake: Any, source: str, date: str, body: str | bytes) -> None:
    name = {"orders": "orders.csv", "customers": "customers.json", "products": "products.csv"}[source]
    lake.write_bytes(f"landing/{source}/date={date}/{name}", body.encode() if isinstance(body, str) else body)


def _run(resources: dict, instance: dg.DagsterInstance, source: str) -> dg.ExecuteInProcessResult:
    """Register, clean and load ``source``."""
    result = dg.materialize(_assets(source), resources=resources, instance=instance)
    assert result.success
    return result


def _load(
    resources: dict,
    instance: dg.DagsterInstance,
    source: str,
    snapshot_id: Any = None,
    *,
    raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    """The warehouse load of ``source`` alone, as of ``snapshot_id`` when given."""
    load = _assets(source)[2]
    config = (
        {}
        if snapshot_id is None
        else {"ops": {f"raw_orders__{source}": {"config": {"snapshot_id": snapshot_id}}}}
    )
    return dg.materialize(
        [load], resources=resources, instance=instance, run_config=config, raise_on_error=raise_on_error
    )


def _md(result: dg.ExecuteInProcessResult, node: str) -> dict[str, Any]:
    return {k: v.value for k, v in result.asset_materializations_for_node(node)[0].metadata.items()}


def _commits(store: IcebergTables, name: str) -> list[str]:
    """The distinct commit ids of the table's snapshots, oldest first (one per write)."""
    seen: list[str] = []
    for snapshot in store.history(name):
        commit = snapshot.summary.get(COMMIT_ID)
        if commit and commit not in seen:
            seen.append(commit)
    return seen


def _sorted(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: r[key])


def _warehouse_rows(warehouse: Any, source: str) -> list[dict[str, Any]]:
    return _sorted(warehouse.query(f"SELECT * FROM raw_orders.{source}").to_pylist(), A.KEYS[source])  # noqa: S608


def _table_rows(store: IcebergTables, source: str, snapshot_id: int | None = None) -> list[dict[str, Any]]:
    return _sorted(store.read(A.iceberg_table(source), snapshot_id).to_pylist(), A.KEYS[source])


def test_a_cleaned_run_commits_once_and_a_rerun_gives_the_same_rows_in_one_new_commit(
    local_resources: dict,
) -> None:
    lake, store = local_resources["lake"], local_resources["iceberg"]
    _land(lake, "orders", "2026-01-01", BATCH_1)
    _land(lake, "orders", "2026-01-02", BATCH_2)
    # the layout before Iceberg: the cleaning removes it
    lake.write_bytes("processed/orders/orders/cleaned.parquet", b"stale")
    with dg.instance_for_test() as instance:
        first = _run(local_resources, instance, "orders")
        rows_first, commits_first = _table_rows(store, "orders"), _commits(store, "orders_orders")
        second = dg.materialize([A.cleaned_orders], resources=local_resources, instance=instance)
        assert second.success
    rows_second, commits_second = _table_rows(store, "orders"), _commits(store, "orders_orders")

    assert len(commits_first) == 1 and [r["order_id"] for r in rows_first] == ["O1", "O2", "O3"]
    assert rows_second == rows_first  # same rows, every column
    assert commits_second[:1] == commits_first and len(commits_second) == 2  # exactly one new commit
    o2 = next(r for r in rows_second if r["order_id"] == "O2")
    assert (o2["quantity"], str(o2["amount"]), o2["status"]) == (5, "99.99", "shipped")  # latest wins

    md = _md(second, "orders__cleaned__orders")
    current = store.history("orders_orders")[-1]
    assert current.current and md["iceberg/snapshot_id"] == str(current.snapshot_id)
    assert md["iceberg/table"] == "processed.orders_orders"
    assert (
        md["iceberg/records_added"] == 3
        and md["iceberg/records_deleted"] == 3
        and md["iceberg/total_records"] == 3
    )
    files = store.data_files("orders_orders")
    assert md["iceberg/data_files_added"] == len(files) == 1
    assert md["iceberg/bytes_added"] == sum(Path(f).stat().st_size for f in files)
    assert md["dagster/uri"] == store.location("orders_orders") and md["dagster/row_count"] == 3
    assert md["rows_quarantined"] == 1 and md["rows_superseded"] == 1
    assert [c.name for c in md["dagster/column_schema"].columns][:3] == [
        "order_id",
        "customer_id",
        "product_id",
    ]
    assert _md(first, "orders__cleaned__orders")["iceberg/records_deleted"] == 0
    assert "iceberg" in A.cleaned_orders.specs_by_key[A.cleaned_asset_key("orders")].kinds

    # no plain cleaned Parquet any more; the quarantine stays a plain file
    assert not list(lake.list_objects("processed/orders/"))
    assert lake.exists("quarantine/orders/rows.parquet")
    con = lake.engine()
    try:
        bad = con.execute(
            "SELECT source_row, rule FROM read_parquet(?)", [lake.uri("quarantine/orders/rows.parquet")]
        )
        assert bad.fetchall() == [(3, "unparseable_quantity")]  # the third data row
    finally:
        con.close()


def test_the_warehouse_rows_equal_the_tables_rows(local_resources: dict) -> None:
    lake, store, warehouse = local_resources["lake"], local_resources["iceberg"], local_resources["warehouse"]
    _land(lake, "orders", "2026-01-01", BATCH_1)
    _land(lake, "orders", "2026-01-02", BATCH_2)
    _land(lake, "customers", "2026-01-01", CUSTOMERS)
    with dg.instance_for_test() as instance:
        orders = _run(local_resources, instance, "orders")
        _run(local_resources, instance, "customers")
    for source in ("orders", "customers"):
        assert _warehouse_rows(warehouse, source) == _table_rows(store, source)
    assert [r["email"] for r in _warehouse_rows(warehouse, "customers")] == [
        "asha@example.com",
        "ravi@example.com",
    ]
    md = _md(orders, "raw_orders__orders")
    assert md["iceberg/snapshot_id"] == str(store.current_snapshot_id("orders_orders"))
    assert md["iceberg/snapshot_is_current"] is True and md["rows_removed"] == 0
    assert md["dagster/row_count"] == md["snapshot_rows"] == 3


def test_a_load_as_of_an_older_snapshot_restores_the_older_rows(local_resources: dict) -> None:
    lake, store, warehouse = local_resources["lake"], local_resources["iceberg"], local_resources["warehouse"]
    _land(lake, "orders", "2026-01-01", BATCH_1)
    with dg.instance_for_test() as instance:
        _run(local_resources, instance, "orders")
        old_snapshot, old_rows = store.current_snapshot_id("orders_orders"), _table_rows(store, "orders")
        _land(lake, "orders", "2026-01-02", BATCH_2)
        _run(local_resources, instance, "orders")
        new_rows = _table_rows(store, "orders")
        assert _warehouse_rows(warehouse, "orders") == new_rows and len(new_rows) == 3

        # undo the load: as of the first snapshot (the id as text, as the launchpad gives it); O3 goes, O2 is old
        undo = _load(local_resources, instance, "orders", str(old_snapshot))
        assert undo.success
        assert _warehouse_rows(warehouse, "orders") == old_rows and [r["order_id"] for r in old_rows] == [
            "O1",
            "O2",
        ]
        md = _md(undo, "raw_orders__orders")
        assert md["iceberg/snapshot_id"] == str(old_snapshot) and md["iceberg/snapshot_is_current"] is False
        assert md["rows_removed"] == 1 and md["dagster/row_count"] == 2
        assert _table_rows(store, "orders") == new_rows  # the Iceberg table itself is untouched

        # the default load reads the current snapshot again; after a rollback of the table, its new current one
        assert _load(local_resources, instance, "orders").success
        assert _warehouse_rows(warehouse, "orders") == new_rows
        store.rollback("orders_orders", old_snapshot)
        assert _load(local_resources, instance, "orders").success
        assert _warehouse_rows(warehouse, "orders") == old_rows

        # a snapshot the table never had fails the load and leaves the warehouse as it was
        missing = _load(local_resources, instance, "orders", 12345, raise_on_error=False)
    assert not missing.success
    failure = next(e for e in missing.all_events if e.event_type_value == "STEP_FAILURE")
    assert "has no snapshot 12345" in str(failure.event_specific_data)
    assert _warehouse_rows(warehouse, "orders") == old_rows


def test_the_as_of_load_works_on_postgres(local_resources: dict, postgres_db: str) -> None:
    from ecommerce_assets.storage.warehouses.postgres import PostgresWarehouse

    lake, store = local_resources["lake"], local_resources["iceberg"]
    warehouse = PostgresWarehouse(dsn=postgres_db, lake=lake)
    _land(lake, "orders", "2026-01-01", BATCH_1)
    A.register_source(lake, "orders")
    A.clean_from_lake(lake, "orders", store)
    first = A.load_warehouse(lake, warehouse, store, "orders")
    _land(lake, "orders", "2026-01-02", BATCH_2)
    A.register_source(lake, "orders")
    A.clean_from_lake(lake, "orders", store)
    latest = A.load_warehouse(lake, warehouse, store, "orders")
    assert (first.rows, latest.rows, latest.rows_removed) == (2, 3, 0)
    warehouse.execute(
        "CREATE VIEW raw_orders.v_orders AS SELECT order_id FROM raw_orders.orders"
    )  # as dbt's views

    undo = A.load_warehouse(lake, warehouse, store, "orders", first.snapshot_id)
    assert (undo.rows, undo.rows_removed, undo.current) == (2, 1, False)
    got = warehouse.query(
        "SELECT order_id, quantity, amount FROM raw_orders.orders ORDER BY order_id"
    ).to_pylist()
    assert [(r["order_id"], r["quantity"], str(r["amount"])) for r in got] == [
        ("O1", 1, "10.50"),
        ("O2", 2, "20.00"),
    ]
    assert warehouse.row_count("raw_orders.v_orders") == 2  # the view over the table lives on


def test_a_snapshot_without_rows_loads_an_empty_table(local_resources: dict) -> None:
    lake, store, warehouse = local_resources["lake"], local_resources["iceberg"], local_resources["warehouse"]
    _land(lake, "products", "2026-01-01", "product_id,product_name,category,price\nP1,Pen,Office,-1\n")
    with dg.instance_for_test() as instance:
        result = _run(local_resources, instance, "products")
    md = _md(result, "orders__cleaned__products")
    assert (
        md["iceberg/total_records"] == 0
        and md["iceberg/data_files_added"] == 0
        and md["rows_quarantined"] == 1
    )
    assert store.data_files("orders_products") == []
    assert warehouse.table_exists("raw_orders.products") and warehouse.row_count("raw_orders.products") == 0
    columns = warehouse.query("SELECT * FROM raw_orders.products").column_names
    assert columns[:4] == ["product_id", "product_name", "category", "price"]


def test_an_older_table_without_a_column_is_evolved_in_the_cleanings_commit(local_resources: dict) -> None:
    """The table as an earlier version of the pipeline made it (no ``status``): the column is added, nullable,
    in the commit of the rows."""
    lake, store = local_resources["lake"], local_resources["iceberg"]
    _land(lake, "orders", "2026-01-01", BATCH_1)
    A.register_source(lake, "orders")
    A.clean_from_lake(lake, "orders", store)
    schema = store.load("orders_orders").schema().as_arrow()
    store.catalog.drop_table(store.identifier("orders_orders"))
    store.ensure_table("orders_orders", schema.remove(schema.get_field_index("status")))

    with dg.instance_for_test() as instance:
        result = dg.materialize([A.cleaned_orders], resources=local_resources, instance=instance)
    md = _md(result, "orders__cleaned__orders")
    assert md["iceberg/new_columns"] == ["status"] and len(_commits(store, "orders_orders")) == 1
    status = next(f for f in store.load("orders_orders").schema().fields if f.name == "status")
    assert not status.required
    assert store.read("orders_orders").column("status").to_pylist() == ["placed", "placed"]


def test_a_snapshot_id_that_is_not_a_number_is_refused() -> None:
    def parse(value: object) -> int | None:
        return AsOfSnapshot(snapshot_id=value).snapshot()

    assert parse(None) is None and parse(" ") is None
    assert parse("7234567890123456789") == 7234567890123456789 == parse(7234567890123456789)
    for bad in ("abc", 1.5, True, [1]):
        with pytest.raises(ValueError, match="snapshot_id must be"):
            parse(bad)


def test_on_aws_the_cleaned_rows_are_a_glue_iceberg_table_that_replaces_the_old_parquet_entry(
    aws_storage: dict[str, Any], moto_endpoint: str
) -> None:
    lake, store, catalog = aws_storage["lake"], aws_storage["iceberg"], aws_storage["table_catalog"]
    assert store.catalog_kind == "glue"
    # an existing deployment: the old cleaned.parquet, registered by aws/glue_processed_tables under the same name
    old = pa.table({"order_id": ["OLD"]})
    con = lake.engine()
    try:
        con.register("old", old)
        con.execute("COPY old TO ? (FORMAT parquet)", [lake.uri("processed/orders/orders/cleaned.parquet")])
    finally:
        con.close()
    catalog.register_lake_prefix(lake, "processed/orders/orders/", catalog.default_database, "orders_orders")
    glue = boto3.client("glue", endpoint_url=moto_endpoint, region_name=MOTO_REGION)
    assert "table_type" not in glue.get_table(DatabaseName=store.namespace, Name="orders_orders")[
        "Table"
    ].get("Parameters", {})

    _land(lake, "orders", "2026-01-01", BATCH_1)
    A.register_source(lake, "orders")
    result = A.clean_from_lake(lake, "orders", store)
    assert result.commit is not None and result.commit.added_records == 2
    assert result.commit.metadata_location.startswith(
        f"s3://{lake.bucket}/lake/processed/orders_orders/metadata/"
    )
    entry = glue.get_table(DatabaseName=store.namespace, Name="orders_orders")["Table"]
    assert entry["Parameters"]["table_type"] == "ICEBERG"
    assert entry["Parameters"]["metadata_location"] == result.commit.metadata_location
    assert not list(lake.list_objects("processed/orders/"))
    files = store.data_files("orders_orders")
    assert files and all(
        f.startswith(f"s3://{lake.bucket}/lake/processed/orders_orders/data/") for f in files
    )
    assert [r["order_id"] for r in _table_rows(store, "orders")] == ["O1", "O2"]
