"""Issue 17 on DuckDB and PostgreSQL: no order lost, SCD2 history in arrival time, point-in-time customer keys.

Three order batches go through the real registration, cleaning and warehouse load (with fixed arrival
stamps, so nothing depends on the day the test runs), then the Dagster dbt asset. The second batch is
committed after the first but stamped one hour before it (an out-of-order commit).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from dagster_dbt import DbtCliResource

from ecommerce_assets.defs.orders import assets as A
from ecommerce_assets.defs.orders import dbt as D
from ecommerce_assets.resources.dbt import DBT_PROJECT_DIR, dbt_executable
from ecommerce_assets.settings import Settings
from ecommerce_assets.storage.iceberg import build_iceberg

T1 = dt.datetime(2026, 1, 5, 10, 0, tzinfo=dt.UTC)  # batch 1 arrives
T2 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)  # batch 2: committed after batch 1, stamped before it
T3 = dt.datetime(2026, 1, 7, 12, 0, tzinfo=dt.UTC)  # batch 3: C1 moves to Pune, C3 arrives
BEGINNING = dt.datetime(1900, 1, 1)
HEAD = "order_id,customer_id,product_id,order_date,quantity,amount,status,updated_at\n"

BATCHES: dict[int, tuple[dt.datetime, str, dict[str, str]]] = {
    1: (T1, "2026-01-05", {
        "orders": HEAD + "O1,C1,P1,2026-01-01,1,10,placed,2026-01-01 09:00:00\n"
                         "O2,C2,P2,2026-01-02,2,20,placed,2026-01-02 09:00:00\n"
                         "O3,C1,P1,2026-01-04,3,30,placed,2026-01-04 09:00:00\n",
        "customers": json.dumps([
            {"customer_id": "C1", "customer_name": "Amit", "email": "amit@example.com", "city": "Kolkata"},
            {"customer_id": "C2", "customer_name": "Priya", "email": "priya@example.com", "city": "Delhi"},
        ]),
        "products": "product_id,product_name,category,price\nP1,Phone,Mobile,10\nP2,TV,Electronics,10\n",
    }),
    2: (T2, "2026-01-06", {
        "orders": HEAD + "O2,C2,P2,2026-01-02,5,50,shipped,2026-01-05 08:00:00\n"
                         "O4,C2,P1,2026-01-05,4,40,placed,2026-01-05 08:30:00\n",
    }),
    3: (T3, "2026-01-07", {
        "orders": HEAD + "O1,C1,P1,2026-01-01,1,10,delivered,2026-01-07 08:00:00\n"
                         "O5,C1,P2,2026-01-08,6,60,placed,2026-01-08 09:00:00\n"
                         "O6,C3,P1,2026-01-08,7,70,placed,2026-01-08 09:30:00\n",
        "customers": json.dumps([
            {"customer_id": "C1", "customer_name": "Amit", "email": "amit@example.com", "city": "Pune"},
            {"customer_id": "C3", "customer_name": "Rahul", "email": "rahul@example.com", "city": "Goa"},
        ]),
    }),
}
FINAL_ORDERS = {  # order_id -> (quantity, status, arrival of its latest version, city at the order date)
    "O1": (1, "delivered", T3, "Kolkata"),
    "O2": (5, "shipped", T2, "Delhi"),
    "O3": (3, "placed", T1, "Kolkata"),
    "O4": (4, "placed", T2, "Delhi"),
    "O5": (6, "placed", T3, "Pune"),
    "O6": (7, "placed", T3, "Goa"),
}


def naive(t: dt.datetime) -> dt.datetime:
    return t.astimezone(dt.UTC).replace(tzinfo=None)


def land_batch(lake, warehouse, batch: int) -> None:
    """Land, register (with the batch's fixed arrival stamp), clean and load one batch into raw_orders.*."""
    stamp, date, files = BATCHES[batch]
    for source, body in files.items():
        name = {"orders": "orders.csv", "customers": "customers.json", "products": "products.csv"}[source]
        lake.write_bytes(f"landing/{source}/date={date}/{name}", body.encode())
        assert A.register_source(lake, source, now=stamp)
        iceberg = build_iceberg(Settings())
        result = A.clean_from_lake(lake, source, iceberg)
        assert result.reconciles and not result.rejected_files
        A.load_warehouse(lake, warehouse, iceberg, source)


@pytest.fixture(scope="module", autouse=True)
def manifest() -> Path:
    return D.prepare_manifest()


def run_dbt(resources: dict) -> dg.ExecuteInProcessResult:
    result = dg.materialize([D.orders_dbt_models], resources=resources, raise_on_error=True)
    failed = [e.check_name for e in result.get_asset_check_evaluations()
              if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR]
    assert result.success and not failed, failed
    return result


def _history(resources: dict, query) -> None:
    lake, warehouse = resources["lake"], resources["warehouse"]
    for batch in (1, 2, 3):
        land_batch(lake, warehouse, batch)
        result = run_dbt(resources)
        checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
        assert checks["assert_every_staged_order_reaches_fct_orders"].passed

    # every order exactly once, its latest version
    rows = query("SELECT order_id, quantity, status, ingested_at FROM marts.fct_orders ORDER BY order_id")
    assert [r[0] for r in rows] == sorted(FINAL_ORDERS)
    for order_id, quantity, status, ingested_at in rows:
        want = FINAL_ORDERS[order_id]
        assert (quantity, status, ingested_at) == (want[0], want[1], naive(want[2])), order_id

    # SCD2 in arrival time: the first version open from the beginning of time, a change from its arrival
    dim = query("SELECT customer_id, city, valid_from, valid_to, recorded_at, is_current, version_number "
                "FROM marts.dim_customers ORDER BY customer_id, version_number")
    assert dim == [
        ("C1", "Kolkata", BEGINNING, naive(T3), naive(T1), False, 1),
        ("C1", "Pune", naive(T3), None, naive(T3), True, 2),
        ("C2", "Delhi", BEGINNING, None, naive(T1), True, 1),
        ("C3", "Goa", BEGINNING, None, naive(T3), True, 1),
    ]
    snap = query("SELECT customer_id, city, dbt_valid_from, dbt_valid_to FROM snapshots.customers_snapshot "
                 "ORDER BY customer_id, dbt_valid_from")
    assert snap[:2] == [("C1", "Kolkata", naive(T1), naive(T3)), ("C1", "Pune", naive(T3), None)]

    # the point-in-time join: each order with its customer's city at the order date, in one join
    cities = query("SELECT f.order_id, d.city FROM marts.fct_orders AS f "
                   "JOIN marts.dim_customers AS d ON d.customer_version_id = f.customer_version_id ORDER BY 1")
    assert cities == [(o, want[3]) for o, want in sorted(FINAL_ORDERS.items())]

    # a run with nothing new changes nothing
    before = query("SELECT order_id, customer_version_id, ingested_at FROM marts.fct_orders ORDER BY 1")
    run_dbt(resources)
    assert query("SELECT order_id, customer_version_id, ingested_at FROM marts.fct_orders ORDER BY 1") == before


@pytest.mark.slow
def test_three_batches_out_of_order_on_duckdb(local_resources: dict) -> None:
    wh = local_resources["warehouse"]

    def query(sql: str) -> list[tuple]:
        return [tuple(r.values()) for r in wh.query(sql).to_pylist()]

    _history(local_resources, query)


@pytest.mark.slow
@pytest.mark.postgres
def test_three_batches_out_of_order_on_postgres(local_resources: dict, postgres_db: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from ecommerce_assets.storage.warehouses.postgres import PostgresWarehouse

    info = psycopg.conninfo.conninfo_to_dict(postgres_db)
    for var, key, default in (("HOST", "host", "localhost"), ("PORT", "port", "5432"), ("USER", "user", "postgres"),
                              ("PASSWORD", "password", ""), ("DB", "dbname", "postgres")):
        monkeypatch.setenv(f"ECOMMERCE_PG_{var}", str(info.get(key) or default))
    resources = {
        **local_resources,
        "warehouse": PostgresWarehouse(dsn=postgres_db, lake=local_resources["lake"]),
        "dbt": DbtCliResource(project_dir=str(DBT_PROJECT_DIR), profiles_dir=str(DBT_PROJECT_DIR), target="postgres",
                              dbt_executable=dbt_executable()),
    }

    def query(sql: str) -> list[tuple]:
        with psycopg.connect(postgres_db) as con:
            return con.execute(sql).fetchall()

    _history(resources, query)


OLD_FILTER = "where ingested_at > (select coalesce(max(ingested_at), cast('1900-01-01' as timestamp)) from {{ this }})"


def _dbt_cli(project: Path, tmp: Path, *args: str) -> dict:
    out = subprocess.run(
        [dbt_executable(), *args, "--project-dir", str(project), "--profiles-dir", str(project),
         "--target-path", str(tmp / "target"), "--log-path", str(tmp / "logs")],
        capture_output=True, text=True, cwd=project, env={**os.environ, "ECOMMERCE_DBT_ENV": "ci"},
    )
    results = json.loads((tmp / "target" / "run_results.json").read_text())
    by_name = {r["unique_id"].split(".")[2]: r for r in results["results"]}
    return by_name | {"_returncode": out.returncode, "_stdout": out.stdout}


@pytest.mark.slow
def test_the_no_order_lost_test_fails_on_the_old_filter(local_resources: dict, tmp_path: Path) -> None:
    """The singular test catches the data loss of the old filter (`ingested_at > max(ingested_at)`)."""
    project = tmp_path / "dbt"
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))
    fct = project / "models" / "marts" / "fct_orders.sql"
    sql = fct.read_text()
    start, end = sql.index("    where o.ingested_at >="), sql.index("    {% endif %}")
    fct.write_text(sql[:start] + "    " + OLD_FILTER.replace("ingested_at", "o.ingested_at", 1) + "\n" + sql[end:])
    lake, wh = local_resources["lake"], local_resources["warehouse"]
    land_batch(lake, wh, 1)
    first = _dbt_cli(project, tmp_path, "build", "--exclude-resource-type", "unit_test")
    assert first["_returncode"] == 0, first["_stdout"]
    land_batch(lake, wh, 2)  # stamped one hour before batch 1: the old filter never reads it
    second = _dbt_cli(project, tmp_path, "build", "--exclude-resource-type", "unit_test")
    lost = second["assert_every_staged_order_reaches_fct_orders"]
    assert second["_returncode"] == 1 and lost["status"] == "fail" and lost["failures"] == 2, second["_stdout"]
    rows = wh.query("SELECT order_id FROM ci_staging.stg_orders EXCEPT SELECT order_id FROM ci_marts.fct_orders").to_pylist()
    assert rows == [{"order_id": "O4"}]  # O4 lost for good; O2's update (also stamped before) lost too
