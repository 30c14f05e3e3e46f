"""The Online Retail cleaned zone on the Iceberg table ``online_retail_cleaned`` (issue 15), on real parts.

The real SQLite catalog, lake folder and DuckDB warehouse of a fresh data dir; the retail assets and checks
materialized by Dagster; small CSV files written for each case (``tests.retail_helpers``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pyarrow as pa
import pytest

from ecommerce_assets.storage.iceberg import COMMIT_ID, IcebergTables, replace_all_rows
from ecommerce_assets.storage.warehouses.duckdb import warehouse_config
from ecommerce_assets.transforms import retail
from tests.retail_helpers import GOOD, write_csv

LANDED = "landing/online_retail/shop.csv"


def _line(invoice: str, date: str, customer: str = "17850.0", quantity: str = "6", stock: str = "85123A") -> list[str]:
    return [invoice, stock, GOOD[2], quantity, date, GOOD[5], customer, GOOD[7]]


# three months, two customers, one line a rule removes (quantity <= 0)
FIRST = [
    _line("536365", "12/1/2010 8:26"),
    _line("536366", "12/2/2010 9:00", customer="13047.0", stock="22633"),
    _line("C536367", "12/3/2010 9:00", quantity="-1"),
    _line("540001", "1/4/2011 10:00"),
    _line("545001", "2/5/2011 11:00", customer="13047.0"),
]
# the source landed again with other content: December is gone, a new customer in March
SECOND = [
    _line("540001", "1/4/2011 10:00"),
    _line("545001", "2/5/2011 11:00", customer="13047.0"),
    _line("548001", "3/6/2011 12:00", customer="12583.0", stock="22634"),
]


def _land(lake: Any, tmp_path: Path, rows: list[list[str]]) -> None:
    lake.write_bytes(LANDED, write_csv(tmp_path / f"shop-{len(rows)}.csv", rows).read_bytes())


def _assets() -> list[Any]:
    from ecommerce_assets.defs.retail import assets, checks

    return [assets.online_retail_raw, assets.online_retail_cleaned, checks.cleaned_checks, assets.gold_star_schema]


def _materialize(resources: dict, instance: dg.DagsterInstance, selection: list[str] | None = None) -> Any:
    result = dg.materialize(_assets(), resources=resources, instance=instance, selection=selection)
    assert result.success
    return result


def _cleaned_metadata(result: Any) -> dict[str, Any]:
    events = [e for e in result.get_asset_materialization_events() if e.asset_key.path == ["online_retail", "cleaned"]]
    return events[0].materialization.metadata


def _commits(store: IcebergTables) -> list[str]:
    """The distinct commit ids of the table's snapshots, oldest first (one per write)."""
    seen: list[str] = []
    for snapshot in store.history(retail.TABLE):
        commit = snapshot.summary.get(COMMIT_ID)
        if commit and commit not in seen:
            seen.append(commit)
    return seen


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    return table.sort_by([("invoicedate", "ascending"), ("invoiceno", "ascending")]).to_pylist()


def _gold(data_dir: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True,
                         config=warehouse_config(str(data_dir / "duckdb_extensions")))
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_a_rerun_gives_the_same_rows_in_one_commit_and_counts_reconcile(
    data_dir: Path, local_resources: dict, tmp_path: Path
) -> None:
    lake, store = local_resources["lake"], local_resources["iceberg"]
    _land(lake, tmp_path, FIRST)
    # the plain Parquet layout before Iceberg: the cleaning run removes it (no reader looks there any more)
    lake.write_bytes("processed/online_retail/cleaned/invoice_month=2010-12/part_0.parquet", b"stale")
    with dg.instance_for_test() as instance:
        first = _materialize(local_resources, instance)
        rows_first, commits_first = _rows(store.read(retail.TABLE)), _commits(store)
        second = _materialize(local_resources, instance)
        checks = {e.asset_check_key.name: e.passed for e in second.get_asset_check_evaluations()}
    rows_second, commits_second = _rows(store.read(retail.TABLE)), _commits(store)

    assert len(rows_first) == 4 and len(commits_first) == 1
    assert rows_second == rows_first  # every column, every row
    assert commits_second[:1] == commits_first and len(commits_second) == 2  # exactly one new commit
    assert {r["invoice_month"] for r in rows_second} == {"2010-12", "2011-01", "2011-02"}
    assert all(checks.values()) and "counts_reconcile" in checks

    md = _cleaned_metadata(second)
    current = store.history(retail.TABLE)[-1]
    assert current.current and md["iceberg/snapshot_id"].value == str(current.snapshot_id)
    files = store.data_files(retail.TABLE)
    assert md["iceberg/data_files_added"].value == len(files) == 3  # one file a month
    assert md["iceberg/bytes_added"].value == sum(Path(f).stat().st_size for f in files)
    assert md["iceberg/records_added"].value == 4 and md["iceberg/records_deleted"].value == 4
    assert md["iceberg/total_records"].value == 4 and md["iceberg/new_columns"].value == []
    assert md["iceberg/metadata_location"].value == store.metadata_location(retail.TABLE)
    assert md["invoice_months"].value == ["2010-12", "2011-01", "2011-02"]
    assert _cleaned_metadata(first)["iceberg/records_deleted"].value == 0
    # rows in = rows out + rows quarantined, from the table and the quarantine file themselves
    manifest = json.loads(lake.read_bytes(retail_manifest()))
    quarantined = pq_rows(lake.uri("quarantine/online_retail/rows/quarantined_rows.parquet"))
    assert manifest["rows_in"] == 5 == md["iceberg/total_records"].value + quarantined
    assert md["rows_in"].value == 5 and md["rows_out"].value == 4 and md["rows_removed"].value == 1

    # the catalog view is re-pointed at the second commit; the old plain layout is gone
    assert md["catalog"].value["metadata_location"] == store.metadata_location(retail.TABLE)
    assert _gold(data_dir, "SELECT count(*) FROM lake.online_retail_cleaned") == [(4,)]
    assert not list(lake.list_objects("processed/online_retail/cleaned/"))
    assert _gold(data_dir, "SELECT count(*) FROM gold.sales_transactions") == [(4,)]


def retail_manifest() -> str:
    from ecommerce_assets.defs.retail.assets import CLEANED_MANIFEST

    return CLEANED_MANIFEST


def pq_rows(uri: str) -> int:
    return int(duckdb.sql("SELECT count(*) FROM read_parquet(?)", params=[uri]).fetchone()[0])


def test_months_gone_from_the_source_are_dropped_and_gold_follows_a_rollback(
    data_dir: Path, local_resources: dict, tmp_path: Path
) -> None:
    lake, store = local_resources["lake"], local_resources["iceberg"]
    _land(lake, tmp_path, FIRST)
    gold = ["gold/customers", "gold/products", "gold/sales_transactions"]
    with dg.instance_for_test() as instance:
        _materialize(local_resources, instance)
        first_snapshot = store.current_snapshot_id(retail.TABLE)
        _land(lake, tmp_path, SECOND)  # landed again with other content: the raw copy is replaced
        second = _materialize(local_resources, instance)
        months = sorted({r["invoice_month"] for r in store.read(retail.TABLE).to_pylist()})
        assert months == ["2011-01", "2011-02", "2011-03"]  # December is no longer in the source: dropped
        assert len(_commits(store)) == 2
        assert _cleaned_metadata(second)["iceberg/records_deleted"].value == 4
        assert _gold(data_dir, "SELECT customerid FROM gold.customers ORDER BY 1") == [
            ("12583",), ("13047",), ("17850",)]
        assert _gold(data_dir, "SELECT count(*) FROM gold.sales_transactions") == [(3,)]

        # the cleaned table rolled back to the first commit: a gold rebuild reads the table, not files on disk
        store.rollback(retail.TABLE, first_snapshot)
        rebuilt = _materialize(local_resources, instance, selection=gold)
        assert _gold(data_dir, "SELECT customerid FROM gold.customers ORDER BY 1") == [("13047",), ("17850",)]
        assert _gold(data_dir, "SELECT count(*) FROM gold.sales_transactions") == [(4,)]
        events = [e for e in rebuilt.get_asset_materialization_events() if e.asset_key.path == ["gold", "customers"]]
        assert events[0].materialization.metadata["iceberg/metadata_location"].value == \
            store.metadata_location(retail.TABLE)
    # both commits' data files are still on disk: a Parquet glob would have counted 7 lines
    data = [o for o in lake.list_objects(f"processed/{retail.TABLE}/data/") if o.key.endswith(".parquet")]
    assert len(data) == 6


def test_the_cleaned_checks_read_the_iceberg_table(local_resources: dict, tmp_path: Path) -> None:
    """A bad line committed to the table (not produced by the rules) fails the blocking gates that read it."""
    from ecommerce_assets.defs.retail import checks

    lake, store = local_resources["lake"], local_resources["iceberg"]
    _land(lake, tmp_path, FIRST)
    with dg.instance_for_test() as instance:
        _materialize(local_resources, instance)
        rows = store.read(retail.TABLE)
        bad = rows.slice(0, 1).set_column(3, "quantity", pa.array([-5], pa.int64()))
        store.write(retail.TABLE, bad, [{"invoice_month": "2010-12"}])
        result = dg.materialize(_assets(), resources=local_resources, instance=instance, raise_on_error=False,
                                selection=dg.AssetSelection.checks(checks.cleaned_checks))
    evaluations = {e.asset_check_key.name: e.passed for e in result.get_asset_check_evaluations()}
    assert evaluations["positive_quantity"] is False and evaluations["no_null_invoiceno"] is True
    assert evaluations["counts_reconcile"] is False  # the table no longer holds the rows the manifest counted


def test_replace_all_rows_writes_each_part_before_asking_for_the_next(tmp_path: Path) -> None:
    """The memory bound: only one part is held while its files are written; a re-run is one commit."""
    store = IcebergTables(catalog_kind="sql", warehouse=(tmp_path / "lake").as_uri(),
                          sqlite_path=str(tmp_path / "catalog.db"))
    months = ["2011-01", "2011-02", "2011-03"]
    schema = pa.schema([("invoice_month", pa.string()), ("n", pa.int64())])
    data_dir = tmp_path / "lake" / "processed" / "t" / "data"
    seen: list[int] = []

    def parts() -> Any:
        for i, month in enumerate(months):
            seen.append(len(list(data_dir.rglob("*.parquet"))) if data_dir.exists() else 0)
            yield pa.table({"invoice_month": [month] * (i + 1), "n": list(range(i + 1))}, schema=schema)

    commit = replace_all_rows(store, "t", schema, parts, ("invoice_month",), {"dagster.run-id": "r1"})
    assert seen == [0, 1, 2]  # part k is asked for once the files of parts 0..k-1 are written
    assert commit.added_data_files == 3 and commit.added_records == 6 and commit.total_records == 6
    again = replace_all_rows(store, "t", schema, parts, ("invoice_month",))
    assert again.deleted_records == 6 and again.total_records == 6
    assert len({s.summary[COMMIT_ID] for s in store.history("t")}) == 2
    assert sorted(store.read("t").to_pylist(), key=lambda r: (r["invoice_month"], r["n"])) == sorted(
        store.read("t", commit.snapshot_id).to_pylist(), key=lambda r: (r["invoice_month"], r["n"]))
    # a source with no rows empties the table (one commit, the schema kept)
    empty = replace_all_rows(store, "t", schema, lambda: iter(()), ("invoice_month",))
    assert empty.total_records == 0 and store.read("t").num_rows == 0


def test_a_new_column_is_added_in_the_commit(tmp_path: Path) -> None:
    store = IcebergTables(catalog_kind="sql", warehouse=(tmp_path / "lake").as_uri(),
                          sqlite_path=str(tmp_path / "catalog.db"))
    schema = pa.schema([("invoice_month", pa.string()), ("n", pa.int64())])
    replace_all_rows(store, "t", schema, lambda: iter([pa.table({"invoice_month": ["2011-01"], "n": [1]})]),
                     ("invoice_month",))
    wider = schema.append(pa.field("note", pa.string()))
    commit = replace_all_rows(
        store, "t", wider,
        lambda: iter([pa.table({"invoice_month": ["2011-01"], "n": [1], "note": ["x"]}, schema=wider)]),
        ("invoice_month",),
    )
    assert commit.new_columns == ("note",) and store.read("t").to_pylist() == [
        {"invoice_month": "2011-01", "n": 1, "note": "x"}]


def test_gold_loaded_as_of_yesterdays_snapshot_restores_yesterdays_rows_without_touching_the_table(
    data_dir: Path, local_resources: dict, tmp_path: Path
) -> None:
    lake, store = local_resources["lake"], local_resources["iceberg"]
    gold = ["gold/customers", "gold/products", "gold/sales_transactions"]
    query = "SELECT customerid, count(*) FROM gold.sales_transactions GROUP BY 1 ORDER BY 1"
    with dg.instance_for_test() as instance:
        _land(lake, tmp_path, FIRST)
        _materialize(local_resources, instance)
        yesterday, yesterdays_gold = store.current_snapshot_id(retail.TABLE), _gold(data_dir, query)
        _land(lake, tmp_path, SECOND)  # today's landing: a bad load, say
        _materialize(local_resources, instance)
        today = store.current_snapshot_id(retail.TABLE)
        assert _gold(data_dir, query) != yesterdays_gold

        result = dg.materialize(
            _assets(), resources=local_resources, instance=instance, selection=gold,
            run_config={"ops": {"gold_star_schema": {"config": {"snapshot_id": str(yesterday)}}}},
        )
        assert result.success
        assert _gold(data_dir, query) == yesterdays_gold
        assert store.current_snapshot_id(retail.TABLE) == today  # the table itself was not moved
        md = next(e for e in result.get_asset_materialization_events()
                  if e.asset_key.path == ["gold", "customers"]).materialization.metadata
        assert (md["iceberg/snapshot_id"].value, md["iceberg/as_of"].value) == (str(yesterday), True)

        unknown = dg.materialize(
            _assets(), resources=local_resources, instance=instance, selection=gold, raise_on_error=False,
            run_config={"ops": {"gold_star_schema": {"config": {"snapshot_id": "12345"}}}},
        )
        assert not unknown.success
        failure = next(e for e in unknown.all_events if e.event_type_value == "STEP_FAILURE")
        assert "table history online_retail_cleaned" in str(failure.event_specific_data.error)
        assert _gold(data_dir, query) == yesterdays_gold  # a refused load changes nothing


def test_a_write_that_fails_midway_takes_its_files_with_it_and_the_table_is_unchanged(tmp_path: Path) -> None:
    """A failed attempt (here the source fails after two parts were written: a full disk behaves the same) leaves
    no data file behind, so the space it took is free again for the run to record its failure."""
    store = IcebergTables(catalog_kind="sql", warehouse=(tmp_path / "lake").as_uri(),
                          sqlite_path=str(tmp_path / "catalog.db"))
    schema = pa.schema([("invoice_month", pa.string()), ("n", pa.int64())])
    data_dir = tmp_path / "lake" / "processed" / "t" / "data"
    first = replace_all_rows(store, "t", schema, lambda: iter([pa.table({"invoice_month": ["2011-01"], "n": [1]},
                                                                         schema=schema)]), ("invoice_month",))
    before = sorted(p.name for p in data_dir.rglob("*.parquet"))

    def failing() -> Any:
        for month in ("2011-02", "2011-03"):
            yield pa.table({"invoice_month": [month] * 3, "n": [1, 2, 3]}, schema=schema)
        assert len(list(data_dir.rglob("*.parquet"))) == len(before) + 2  # both parts' files were written
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        replace_all_rows(store, "t", schema, failing, ("invoice_month",))
    assert sorted(p.name for p in data_dir.rglob("*.parquet")) == before
    assert store.current_snapshot_id("t") == first.snapshot_id
    assert store.read("t").to_pylist() == [{"invoice_month": "2011-01", "n": 1}]
