"""The seller catalog's cleaned snapshots on the Iceberg table ``catalog_snapshots`` (issue 15), on real parts.

Local mode: the catalog simulator over HTTP, the real SQLite Iceberg catalog and DuckDB warehouse of a fresh data
dir, the assets materialized by Dagster. aws mode: S3 and Glue on moto's server, the storage built from the
settings as the product does.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import duckdb
import pyarrow as pa

from ecommerce_assets.defs.catalog import assets as ca
from ecommerce_assets.defs.catalog.partitions import SELLERS_PARTITIONS
from ecommerce_assets.dev.catalog_sim import CatalogSimulator
from ecommerce_assets.resources.catalog_api import CatalogApiResource
from ecommerce_assets.storage.iceberg import COMMIT_ID, IcebergTables
from ecommerce_assets.transforms import catalog as tf
from tests.conftest import MOTO_REGION

SELLER_A, SELLER_B, SELLER_C = "A2L77EE7U53NWQ", "A1PA6795UKMFR9", "A3DEMOTECH8K2Q"  # the demo sellers
DAY_1, DAY_2 = "2024-05-01", "2024-05-02"
SNAPSHOT_ONLY = [ca.catalog_snapshot]
FETCH_AND_CLEAN = [ca.catalog_raw_pages, ca.catalog_snapshot]
SELLER_ASSETS = [ca.catalog_raw_pages, ca.catalog_snapshot, ca.amazon_data, ca.amazon_data_history]


def _with_api(resources: dict[str, Any], url: str, **api: Any) -> dict[str, Any]:
    """``resources`` with the catalog API client pointed at the simulator (no rate limit, short backoff)."""
    return {
        **resources,
        "catalog_api": CatalogApiResource(
            base_url=url, api_key="k", requests_per_second=0, backoff_base_seconds=0.01, **api
        ),
    }


def _instance(sellers: Sequence[str]) -> dg.DagsterInstance:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(SELLERS_PARTITIONS, list(sellers))
    return instance


def _run(
    resources: dict[str, Any],
    instance: dg.DagsterInstance,
    seller: str,
    date: str,
    assets: Sequence[dg.AssetsDefinition],
) -> dg.ExecuteInProcessResult:
    """Materialize ``assets`` of one seller, fetching and/or cleaning the pages of ``date``."""
    ops = {a.op.name for a in assets} & {"catalog__raw_pages", "catalog__snapshot"}
    result = dg.materialize(
        list(assets),
        partition_key=seller,
        resources=resources,
        instance=instance,
        run_config={"ops": {op: {"config": {"snapshot_date": date}} for op in ops}},
    )
    assert result.success
    return result


def _snapshot_md(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    md = result.asset_materializations_for_node(ca.SNAPSHOT_KEY.to_python_identifier())[-1].metadata
    return {k: v.value for k, v in md.items()}


def _commits(store: IcebergTables) -> list[str]:
    """The distinct commit ids of the table's snapshots, oldest first (one per write)."""
    seen: list[str] = []
    for snapshot in store.history(tf.TABLE):
        commit = snapshot.summary.get(COMMIT_ID)
        if commit and commit not in seen:
            seen.append(commit)
    return seen


def _sorted(rows: pa.Table | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows in one order (seller, date, ASIN), for comparing row sets whatever the files' order."""
    rows = rows.to_pylist() if isinstance(rows, pa.Table) else rows
    return sorted(rows, key=lambda r: (r["seller_id"], str(r.get("snapshot_date")), r["asin"]))


def _partition(store: IcebergTables, seller: str, date: str) -> list[dict[str, Any]]:
    return _sorted(
        store.read(tf.TABLE, where={"seller_id": seller, "snapshot_date": dt.date.fromisoformat(date)})
    )


def _distinct_asins(sim: CatalogSimulator, seller: str, first: int | None = None) -> int:
    return len({e["asin"] for e in sim.catalog.sellers[seller][:first]})


def _gold(warehouse: Any, table: str, seller: str | None = None) -> list[dict[str, Any]]:
    """The rows of a gold table (of one seller), without the ``seller`` column the warehouse load adds from the
    Hive folder ``seller=<id>/`` of the loaded file (always the row's seller_id)."""
    where, params = ("WHERE seller_id = ?", [seller]) if seller else ("", None)
    rows = warehouse.query(f"SELECT * FROM {table} {where}", params).to_pylist()  # noqa: S608 - test constants
    for row in rows:
        assert row.pop("seller", row["seller_id"]) == row["seller_id"]
    return rows


def _by_asin_and_date(row: dict[str, Any]) -> tuple[str, str]:
    return row["asin"], str(row["snapshot_date"])


def _legacy_snapshot(lake: Any, seller: str, date: str, out: Path) -> str:
    """The seller/date snapshot as the pipeline wrote it before Iceberg: one Parquet file, from the raw pages."""
    prefix = f"raw/catalog/seller={seller}/date={date}/"
    results = [
        tf.clean_page(lake.read_bytes(o.key), seller, date, page=int(o.name[5:-5]), source=o.key)
        for o in lake.list_objects(prefix)
        if o.key.endswith(".json")
    ]
    results.sort(key=lambda r: r.page or 0)
    tf.build_snapshot(duckdb.connect(), results, parquet_uri=str(out))
    return str(out)


def test_a_partition_rerun_commits_once_with_the_same_rows(local_resources: dict) -> None:
    lake, store, warehouse = local_resources["lake"], local_resources["iceberg"], local_resources["warehouse"]
    instance = _instance([SELLER_A])
    with CatalogSimulator(port=0) as sim:
        first = _run(_with_api(local_resources, sim.url), instance, SELLER_A, DAY_1, FETCH_AND_CLEAN)
        expected = _distinct_asins(sim, SELLER_A)
    rows_first, commits_first = _sorted(store.read(tf.TABLE)), _commits(store)
    second = _run(local_resources, instance, SELLER_A, DAY_1, SNAPSHOT_ONLY)  # the pages are in raw/ already
    rows_second, commits_second = _sorted(store.read(tf.TABLE)), _commits(store)

    assert len(commits_first) == 1 and len(rows_first) == expected
    assert rows_second == rows_first  # the same rows, every column
    assert commits_second[:1] == commits_first and len(commits_second) == 2  # exactly one new commit
    assert {(r["seller_id"], r["snapshot_date"]) for r in rows_second} == {(SELLER_A, dt.date(2024, 5, 1))}
    assert store.load(tf.TABLE).schema().as_arrow().names == tf.OUTPUT_COLUMNS
    assert store.partition_columns(store.load(tf.TABLE)) == tf.PARTITION_BY

    md, md_first = _snapshot_md(second), _snapshot_md(first)
    current = store.history(tf.TABLE)[-1]
    assert current.current and md["iceberg/snapshot_id"] == str(current.snapshot_id)
    assert current.summary["ecommerce.partition"] == f"seller_id={SELLER_A},snapshot_date={DAY_1}"
    assert md["dagster/uri"] == store.location(tf.TABLE)
    assert store.location(tf.TABLE).removeprefix("file://") == lake.uri("processed/catalog_snapshots")
    assert md["iceberg/records_added"] == md["iceberg/records_deleted"] == md["dagster/row_count"] == expected
    assert md_first["iceberg/records_deleted"] == 0 and md["iceberg/total_records"] == expected
    assert md["iceberg/data_files_added"] == len(store.data_files(tf.TABLE)) == 1
    assert md["reconciles"] is True and md["rows_out"] == expected
    assert "| asin |" in md["preview"] and md["preview"].count("\n") == 11  # header, rule, 10 rows
    assert md["catalog"]["table_type"] == "ICEBERG" and md["catalog"]["snapshot_id"] == current.snapshot_id
    # lake.catalog_snapshots is re-pointed at the new commit
    assert _sorted(warehouse.query("SELECT * FROM lake.catalog_snapshots")) == rows_second

    # the CSV export holds the same rows; no plain Parquet snapshot any more
    folder = f"processed/catalog/snapshots/seller={SELLER_A}/date={DAY_1}/"
    assert [o.name for o in lake.list_objects(folder)] == ["products.csv"]
    exported = list(csv.DictReader(io.StringIO(lake.read_bytes(folder + "products.csv").decode())))
    assert list(exported[0]) == tf.OUTPUT_COLUMNS
    assert sorted(r["asin"] for r in exported) == [r["asin"] for r in rows_second]
    assert md["csv_uri"] == lake.uri(folder + "products.csv")


def test_sellers_and_dates_are_separate_partitions_and_a_rerun_leaves_the_others_alone(
    local_resources: dict,
) -> None:
    store = local_resources["iceberg"]
    instance = _instance([SELLER_A, SELLER_B])
    with CatalogSimulator(port=0) as day1:
        res1 = _with_api(local_resources, day1.url)
        _run(res1, instance, SELLER_A, DAY_1, FETCH_AND_CLEAN)
        _run(res1, instance, SELLER_B, DAY_1, FETCH_AND_CLEAN)
        sizes = {
            (SELLER_A, DAY_1): _distinct_asins(day1, SELLER_A),
            (SELLER_B, DAY_1): _distinct_asins(day1, SELLER_B),
        }
    with CatalogSimulator(port=0, seed=99) as day2:  # another day: a partly different listing
        _run(_with_api(local_resources, day2.url), instance, SELLER_A, DAY_2, FETCH_AND_CLEAN)
        sizes[(SELLER_A, DAY_2)] = _distinct_asins(day2, SELLER_A)

    parts = list(sizes)
    held = {p: len(_partition(store, *p)) for p in parts}
    assert held == sizes
    spec = {
        tuple(str(v) for v in row["partition"].values())
        for row in store.load(tf.TABLE).inspect.partitions().to_pylist()
    }
    assert spec == set(parts)  # three partitions, one per seller and date
    files = {
        p: store.data_files(
            tf.TABLE, partition={"seller_id": p[0], "snapshot_date": dt.date.fromisoformat(p[1])}
        )
        for p in parts
    }
    rows = {p: _partition(store, *p) for p in parts}

    result = _run(local_resources, instance, SELLER_A, DAY_1, SNAPSHOT_ONLY)
    md = _snapshot_md(result)
    assert md["iceberg/records_deleted"] == md["iceberg/records_added"] == sizes[(SELLER_A, DAY_1)]
    for p in parts:
        now = store.data_files(
            tf.TABLE, partition={"seller_id": p[0], "snapshot_date": dt.date.fromisoformat(p[1])}
        )
        assert _partition(store, *p) == rows[p]  # same rows everywhere
        if p == (SELLER_A, DAY_1):
            assert now != files[p]  # its files rewritten
        else:
            assert now == files[p]  # the other partitions' files untouched
    assert len(store.data_files(tf.TABLE, partition={"seller_id": SELLER_A})) == 2  # both dates of seller A


def test_gold_tables_read_the_table_and_give_the_same_rows_as_before(
    local_resources: dict, tmp_path: Path
) -> None:
    """The demo's sellers on one date give gold.amazon_data 158 and gold.amazon_data_history 158 rows, exactly
    the rows the old per-snapshot Parquet files gave; a second date of one seller: the latest row per ASIN."""
    lake, store, warehouse = local_resources["lake"], local_resources["iceberg"], local_resources["warehouse"]
    sellers = [SELLER_A, SELLER_B, SELLER_C]
    instance = _instance(sellers)
    with CatalogSimulator(port=0) as sim:
        resources = _with_api(local_resources, sim.url)
        for seller in sellers:
            result = _run(resources, instance, seller, DAY_1, SELLER_ASSETS)
    assert warehouse.row_count("gold.amazon_data") == 158
    assert warehouse.row_count("gold.amazon_data_history") == 158
    md = result.asset_materializations_for_node(ca.AMAZON_DATA_KEY.to_python_identifier())[-1].metadata
    assert md["iceberg/snapshot_id"].value == str(store.current_snapshot_id(tf.TABLE))
    assert md["snapshot_files"].value == 1 and md["snapshots"].value == 1

    with CatalogSimulator(port=0, seed=99) as day2:
        result = _run(_with_api(local_resources, day2.url), instance, SELLER_A, DAY_2, SELLER_ASSETS)
    md = result.asset_materializations_for_node(ca.HISTORY_KEY.to_python_identifier())[-1].metadata
    assert (
        md["iceberg/snapshot_id"].value == str(store.current_snapshot_id(tf.TABLE))
        and md["snapshots"].value == 2
    )

    # gold.amazon_data = the row of the latest snapshot per seller and ASIN, as the table holds them
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for row in store.read(tf.TABLE).to_pylist():
        key = (row["seller_id"], row["asin"])
        if key not in latest or row["snapshot_date"] > latest[key]["snapshot_date"]:
            latest[key] = row
    gold = _gold(warehouse, "gold.amazon_data")
    assert _sorted(gold) == _sorted(list(latest.values()))

    # the same gold rows as the plain Parquet snapshots gave before (the old SQL over the old files)
    con = duckdb.connect()
    for seller in sellers:
        dates = [DAY_1, DAY_2] if seller == SELLER_A else [DAY_1]
        old = [_legacy_snapshot(lake, seller, d, tmp_path / f"{seller}-{d}.parquet") for d in dates]
        for table, sql, params in (
            ("gold.amazon_data", tf.LATEST_SNAPSHOT_SQL, [old]),
            ("gold.amazon_data_history", tf.HISTORY_SQL, [old, seller]),
        ):
            before = con.execute(sql, params).to_arrow_table().to_pylist()
            now = _gold(warehouse, table, seller)
            assert sorted(now, key=_by_asin_and_date) == sorted(before, key=_by_asin_and_date), (
                seller,
                table,
            )


def test_quarantine_and_counts_reconcile_and_a_snapshot_with_no_good_row_empties_its_partition(
    local_resources: dict,
) -> None:
    lake, store, warehouse = local_resources["lake"], local_resources["iceberg"], local_resources["warehouse"]
    instance = _instance([SELLER_A, SELLER_B])
    with CatalogSimulator(port=0) as good:
        _run(_with_api(local_resources, good.url), instance, SELLER_A, DAY_1, SELLER_ASSETS)
        a_rows = _partition(store, SELLER_A, DAY_1)
    with CatalogSimulator(port=0, malformed_pages={2}) as sim:  # seller B: page 1 (48), page 2 (12) malformed
        result = _run(
            _with_api(local_resources, sim.url, max_retries=1), instance, SELLER_B, DAY_1, SELLER_ASSETS
        )
        first_page = _distinct_asins(sim, SELLER_B, 48)
    md = _snapshot_md(result)
    assert md["bad_pages"] == 1 and md["reconciles"] is True
    assert md["products_in"] == md["rows_out"] + md["quarantined_rows"] + sum(md["removed"].values())
    assert md["rows_out"] == md["dagster/row_count"] == first_page == len(_partition(store, SELLER_B, DAY_1))
    quarantine = f"quarantine/catalog/seller={SELLER_B}/date={DAY_1}/"
    assert {o.name for o in lake.list_objects(quarantine)} == {"page=2.json", "reasons.json"}
    gold_b = "SELECT count(*) AS n FROM gold.amazon_data WHERE seller_id = ?"
    assert warehouse.query(gold_b, [SELLER_B]).to_pylist() == [{"n": first_page}]

    # the date's pages again, none readable now: the partition is emptied in one commit, seller A untouched
    raw = f"raw/catalog/seller={SELLER_B}/date={DAY_1}/"
    lake.delete_prefix(raw)
    lake.write_bytes(raw + "page=1.json", b"<html>gateway timeout</html>")
    commits = len(_commits(store))
    result = _run(
        local_resources,
        instance,
        SELLER_B,
        DAY_1,
        [ca.catalog_snapshot, ca.amazon_data, ca.amazon_data_history],
    )
    md = _snapshot_md(result)
    assert len(_commits(store)) == commits + 1
    assert (
        md["dagster/row_count"] == 0
        and md["iceberg/records_deleted"] == first_page
        and md["reconciles"] is True
    )
    assert _partition(store, SELLER_B, DAY_1) == [] and not store.data_files(
        tf.TABLE, partition={"seller_id": SELLER_B}
    )
    assert _partition(store, SELLER_A, DAY_1) == a_rows
    assert {o.name for o in lake.list_objects(quarantine)} == {"page=1.json", "reasons.json"}
    # the gold tables follow the table: seller B has no row left, seller A keeps its own
    assert warehouse.query(gold_b, [SELLER_B]).to_pylist() == [{"n": 0}]
    assert warehouse.query(gold_b, [SELLER_A]).to_pylist() == [{"n": len(a_rows)}]
    gold_md = result.asset_materializations_for_node(ca.AMAZON_DATA_KEY.to_python_identifier())[-1].metadata
    assert gold_md["snapshot_files"].value == 0 and gold_md["seller_rows"].value == 0


def test_gold_tables_before_any_snapshot_fail_naming_the_asset(local_resources: dict) -> None:
    result = dg.materialize(
        [ca.amazon_data],
        partition_key=SELLER_A,
        resources=local_resources,
        instance=_instance([SELLER_A]),
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "catalog/snapshot" in str(failure.event_specific_data.error)


def test_on_aws_the_snapshot_lands_in_the_glue_iceberg_table_and_the_gold_sql_reads_it_from_s3(
    aws_storage: dict[str, Any], moto_endpoint: str
) -> None:
    from ecommerce_assets.storage.glue_table_catalog import parquet_table_roots

    lake, store, catalog = aws_storage["lake"], aws_storage["iceberg"], aws_storage["table_catalog"]
    assert store.catalog_kind == "glue"
    resources = {"lake": lake, "iceberg": store, "table_catalog": catalog}
    instance = _instance([SELLER_A])
    with CatalogSimulator(port=0) as sim:
        result = _run(_with_api(resources, sim.url), instance, SELLER_A, DAY_1, FETCH_AND_CLEAN)
        expected = _distinct_asins(sim, SELLER_A)
    _run(resources, instance, SELLER_A, DAY_1, SNAPSHOT_ONLY)  # a re-run: one more commit, the same rows
    md = _snapshot_md(result)
    assert md["dagster/row_count"] == expected and md["catalog"]["table_type"] == "ICEBERG"
    assert len(_commits(store)) == 2 and len(_partition(store, SELLER_A, DAY_1)) == expected

    glue = boto3.client("glue", endpoint_url=moto_endpoint, region_name=MOTO_REGION)
    entry = glue.get_table(DatabaseName=store.namespace, Name=tf.TABLE)["Table"]
    assert entry["Parameters"]["table_type"] == "ICEBERG"
    location = store.metadata_location(tf.TABLE)
    assert entry["Parameters"]["metadata_location"] == location
    assert location.startswith(f"s3://{lake.bucket}/lake/processed/catalog_snapshots/metadata/")
    files = store.data_files(tf.TABLE, partition={"seller_id": SELLER_A})
    assert files and all(
        f.startswith(f"s3://{lake.bucket}/lake/processed/catalog_snapshots/data/") for f in files
    )
    # the CSV export stays a plain file; the Glue Parquet registration has no table for the snapshots
    folder = f"processed/catalog/snapshots/seller={SELLER_A}/date={DAY_1}/"
    assert [o.name for o in lake.list_objects(folder)] == ["products.csv"]
    assert not any("catalog" in name for name in parquet_table_roots(lake))

    con = lake.engine()  # what gold.amazon_data runs: the old SQL over the table's data files, read from S3
    try:
        gold = con.execute(tf.LATEST_SNAPSHOT_SQL, [files]).to_arrow_table()
    finally:
        con.close()
    assert gold.num_rows == expected and _sorted(gold) == _partition(store, SELLER_A, DAY_1)
