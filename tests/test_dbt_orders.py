"""The orders ELT end to end: two batches through Python assets and dbt, on DuckDB and on PostgreSQL.

Expected rows are derived here from the shipped sample files with the csv/json modules (independently
of the DuckDB transforms): the final orders are batch 1 overridden by batch 2 on order_id; a customer
whose city or (lower-cased) email differs between the batches has two versions, the others one.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from dagster_dbt import DbtCliResource

from ecommerce_assets.defs.orders import assets as A
from ecommerce_assets.defs.orders import dbt as D
from ecommerce_assets.dev.products_api_sim import SAMPLE_PRODUCTS, ProductsApiSim
from ecommerce_assets.resources.dbt import DBT_PROJECT_DIR, dbt_executable
from ecommerce_assets.resources.products_api import ProductsApi
from ecommerce_assets.samples.orders import land_batch, sample_bytes

ALL_ASSETS = [
    A.raw_orders_files, A.raw_customers_files, A.raw_products_files, A.orders_raw_api_products,
    A.cleaned_orders, A.cleaned_customers, A.cleaned_products, A.cleaned_api_products,
    A.load_orders, A.load_customers, A.load_products, A.load_api_products,
    D.orders_dbt_models,
]


def _orders(batch: int) -> dict[str, dict[str, str]]:
    return {r["order_id"]: r for r in csv.DictReader(io.StringIO(sample_bytes(batch, "orders").decode()))}


def _customers(batch: int) -> dict[str, dict[str, str]]:
    text = sample_bytes(batch, "customers").decode().strip()
    rows = json.loads(text) if text.startswith("[") else [json.loads(line) for line in text.splitlines()]
    return {r["customer_id"]: r for r in rows}


def expected_orders(batches: int) -> dict[str, dict[str, str]]:
    merged: dict[str, dict[str, str]] = {}
    for b in range(1, batches + 1):
        merged.update(_orders(b))
    return merged


def expected_versions() -> dict[str, list[str]]:
    """customer_id -> cities of its versions (oldest first) after both batches."""
    one, two = _customers(1), _customers(2)
    versions: dict[str, list[str]] = {}
    for cid in sorted(set(one) | set(two)):
        cities = []
        if cid in one:
            cities.append(one[cid]["city"])
        if cid in two and (cid not in one or (two[cid]["city"], two[cid]["email"].lower())
                           != (one[cid]["city"], one[cid]["email"].lower())):
            cities.append(two[cid]["city"])
        versions[cid] = cities
    return versions


@pytest.fixture(scope="module", autouse=True)
def manifest() -> Path:
    """The manifest comes from `dbt parse` (what CI runs before pytest)."""
    return D.prepare_manifest()


@pytest.fixture
def products_sim():
    with ProductsApiSim() as sim:
        yield sim


def run_all(resources: dict) -> dg.ExecuteInProcessResult:
    result = dg.materialize(ALL_ASSETS, resources=resources, raise_on_error=True)
    assert result.success
    return result


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def _pipeline_twice(resources: dict, query) -> None:
    lake = resources["lake"]
    land_batch(lake, 1)
    first = run_all(resources)
    assert all(e.passed for e in first.get_asset_check_evaluations()), [
        e.check_name for e in first.get_asset_check_evaluations() if not e.passed
    ]
    b1 = expected_orders(1)
    rows = query("SELECT order_id, quantity, amount FROM marts.fct_orders ORDER BY order_id")
    assert [r[0] for r in rows] == sorted(b1)

    land_batch(lake, 2)
    run_all(resources)
    final = expected_orders(2)
    rows = query("SELECT order_id, customer_id, quantity, amount, status FROM marts.fct_orders ORDER BY order_id")
    assert [r[0] for r in rows] == sorted(final)  # one row per order: nothing duplicated
    for order_id, customer_id, quantity, amount, status in rows:
        src = final[order_id]
        assert (customer_id, quantity, Decimal(str(amount))) == (src["customer_id"], int(src["quantity"]),
                                                                 Decimal(src["amount"]))
        assert status == (src.get("status") or None)
    updated = [o for o in _orders(2) if o in b1]
    assert updated, "batch 2 must update an order of batch 1"

    versions = expected_versions()
    dim = query("SELECT customer_id, city, email, valid_from, valid_to, is_current FROM marts.dim_customers "
                "ORDER BY customer_id, valid_from")
    got: dict[str, list[tuple]] = {}
    for cid, city, email, valid_from, valid_to, is_current in dim:
        got.setdefault(cid, []).append((city, email, valid_from, valid_to, is_current))
    assert {c: [v[0] for v in vs] for c, vs in got.items()} == versions
    moved = [c for c, cities in versions.items() if len(cities) == 2]
    assert moved, "batch 2 must move a customer"
    for vs in got.values():
        assert [v[4] for v in vs] == [False] * (len(vs) - 1) + [True]
        assert vs[-1][3] is None
        for older, newer in zip(vs, vs[1:], strict=False):
            assert older[3] == newer[2]  # the old row is closed when the new one opens
        assert all(v[1] == v[1].lower() for v in vs if v[1])

    # a third run with nothing new changes nothing (incremental + snapshot are idempotent)
    before_f = query("SELECT count(*) FROM marts.fct_orders")[0][0]
    before_d = query("SELECT count(*) FROM marts.dim_customers")[0][0]
    run_all(resources)
    assert query("SELECT count(*) FROM marts.fct_orders")[0][0] == before_f
    assert query("SELECT count(*) FROM marts.dim_customers")[0][0] == before_d
    api_ids = {str(p["id"]) for p in SAMPLE_PRODUCTS}
    dim_products = {r[0] for r in query("SELECT product_id FROM marts.dim_products")}
    csv_ids = {r["product_id"] for b in (1, 2) for r in csv.DictReader(io.StringIO(sample_bytes(b, "products").decode()))}
    assert dim_products == api_ids | csv_ids


@pytest.mark.slow
def test_pipeline_twice_on_duckdb(local_resources: dict, products_sim: ProductsApiSim) -> None:
    resources = {**local_resources, "products_api": ProductsApi(base_url=products_sim.url, backoff_seconds=0.01)}
    wh = resources["warehouse"]

    def query(sql: str) -> list[tuple]:
        return [tuple(r.values()) for r in wh.query(sql).to_pylist()]

    _pipeline_twice(resources, query)


@pytest.mark.slow
@pytest.mark.postgres
def test_pipeline_twice_on_postgres(local_resources: dict, products_sim: ProductsApiSim, postgres_db: str,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from ecommerce_assets.storage.warehouses.postgres import PostgresWarehouse

    info = psycopg.conninfo.conninfo_to_dict(postgres_db)
    for var, key, default in (("HOST", "host", "localhost"), ("PORT", "port", "5432"), ("USER", "user", "postgres"),
                              ("PASSWORD", "password", ""), ("DB", "dbname", "postgres")):
        monkeypatch.setenv(f"ECOMMERCE_PG_{var}", str(info.get(key) or default))
    lake = local_resources["lake"]
    resources = {
        **local_resources,
        "products_api": ProductsApi(base_url=products_sim.url, backoff_seconds=0.01),
        "warehouse": PostgresWarehouse(dsn=postgres_db, lake=lake),
        "dbt": DbtCliResource(project_dir=str(DBT_PROJECT_DIR), profiles_dir=str(DBT_PROJECT_DIR), target="postgres",
                              dbt_executable=dbt_executable()),
    }

    def query(sql: str) -> list[tuple]:
        with psycopg.connect(postgres_db) as con:
            return con.execute(sql).fetchall()

    _pipeline_twice(resources, query)


def test_unknown_customer_is_kept_and_flagged(local_resources: dict, products_sim: ProductsApiSim) -> None:
    resources = {**local_resources, "products_api": ProductsApi(base_url=products_sim.url, backoff_seconds=0.01)}
    lake = resources["lake"]
    land_batch(lake, 1)
    lake.write_bytes("landing/orders/date=2026-01-07/orders.csv",
                     b"order_id,customer_id,product_id,order_date,quantity,amount\nO9001,C999,P001,2026-01-07,1,1200\n")
    result = run_all(resources)
    checks = check_results(result)
    rel = checks["relationships_fct_orders_customer_id__customer_id__ref_dim_customers_"]
    assert not rel.passed and rel.severity == dg.AssetCheckSeverity.WARN
    assert checks["unique_fct_orders_order_id"].passed
    rows = resources["warehouse"].query("SELECT customer_id FROM marts.fct_orders WHERE order_id = 'O9001'").to_pylist()
    assert rows == [{"customer_id": "C999"}]


@pytest.mark.parametrize("target", ["redshift", "athena"])
def test_dbt_parse_offline_targets(target: str, tmp_path: Path) -> None:
    """The redshift and athena profiles are complete: dbt parses the project for them without a server."""
    out = subprocess.run(
        [dbt_executable(), "parse", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
         "--target", target, "--target-path", str(tmp_path / "target"), "--no-partial-parse"],
        capture_output=True, text=True, cwd=DBT_PROJECT_DIR, env={**os.environ, "DBT_LOG_PATH": str(tmp_path)},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    manifest = json.loads((tmp_path / "target" / "manifest.json").read_text())
    assert manifest["metadata"]["adapter_type"] == target
    fct = manifest["nodes"]["model.ecommerce.fct_orders"]["config"]
    assert fct["incremental_strategy"] == ("merge" if target == "athena" else "delete+insert")
    assert fct["unique_key"] == "order_id"
    assert manifest["nodes"]["snapshot.ecommerce.customers_snapshot"]["config"]["updated_at"] == "ingested_at"


def _compile(tmp_path: Path, target: str, env: dict[str, str], *args: str) -> tuple[dict, Path]:
    """`dbt compile` of the models, snapshot and data tests (unit tests need a warehouse) for ``target``."""
    out = subprocess.run(
        [dbt_executable(), "compile", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
         "--target", target, "--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs"),
         "--no-partial-parse", "--select", "resource_type:model resource_type:snapshot test_type:data", *args],
        capture_output=True, text=True, cwd=DBT_PROJECT_DIR, env={**os.environ, **env},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads((tmp_path / "target" / "manifest.json").read_text()), tmp_path / "target" / "compiled" / "ecommerce"


@pytest.mark.parametrize("target", ["redshift", "athena"])
def test_dbt_compile_offline_shows_iceberg_snapshot_and_merge(target: str, tmp_path: Path) -> None:
    """`dbt compile` for redshift and athena with no server (``offline_compile`` skips introspection): on
    Athena the snapshot and fct_orders are Iceberg tables, fct_orders merges on order_id, and the schemas
    come from ECOMMERCE_ATHENA_SCHEMA; the compiled fact shows the look-back filter in the adapter's SQL."""
    env = {"ECOMMERCE_DBT_ENV": "prod", "ECOMMERCE_ATHENA_SCHEMA": "shop"}
    manifest, compiled = _compile(tmp_path, target, env, "--no-populate-cache", "--vars", "{offline_compile: true}")
    snapshot = manifest["nodes"]["snapshot.ecommerce.customers_snapshot"]
    fct = manifest["nodes"]["model.ecommerce.fct_orders"]
    fct_sql = (compiled / "models" / "marts" / "fct_orders.sql").read_text()
    stg_sql = (compiled / "models" / "staging" / "stg_orders.sql").read_text()
    assert snapshot["config"]["strategy"] == "check" and snapshot["config"]["updated_at"] == "ingested_at"
    if target == "athena":
        assert snapshot["config"]["table_type"] == "iceberg" and fct["config"]["table_type"] == "iceberg"
        assert fct["config"]["incremental_strategy"] == "merge" and fct["config"]["unique_key"] == "order_id"
        assert (snapshot["schema"], fct["schema"]) == ("shop_snapshots", "shop_marts")
        assert "date_add('day', -3, max(t.ingested_at))" in fct_sql
        assert '"awsdatacatalog"."shop_marts"."fct_orders"' in fct_sql
        assert "cast(order_id as varchar) as order_id" in stg_sql
    else:
        assert fct["config"]["incremental_strategy"] == "delete+insert"
        assert (snapshot["schema"], fct["schema"]) == ("snapshots", "marts")
        assert " ".join(fct_sql.split()).count("dateadd( day, -3, max(t.ingested_at) )") == 1
        assert "cast(order_id as varchar(64)) as order_id" in stg_sql  # not Redshift's VARCHAR(65535)
    assert fct["config"]["contract"]["enforced"] and fct["config"]["persist_docs"] == {"relation": True, "columns": True}


def test_schema_names_per_environment(tmp_path: Path, data_dir: Path) -> None:
    """dev, CI and production never write the same schemas: ``<env>_<schema>`` except in prod."""
    names = {}
    for env in ("prod", "ci", "dev_alice"):
        out = subprocess.run(
            [dbt_executable(), "parse", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
             "--target-path", str(tmp_path / env), "--log-path", str(tmp_path / "logs"), "--no-partial-parse"],
            capture_output=True, text=True, cwd=DBT_PROJECT_DIR, env={**os.environ, "ECOMMERCE_DBT_ENV": env},
        )
        assert out.returncode == 0, out.stdout
        nodes = json.loads((tmp_path / env / "manifest.json").read_text())["nodes"]
        names[env] = nodes["model.ecommerce.fct_orders"]["schema"]
    assert names == {"prod": "marts", "ci": "ci_marts", "dev_alice": "dev_alice_marts"}
    out = subprocess.run(
        [dbt_executable(), "parse", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
         "--target-path", str(tmp_path / "bad"), "--log-path", str(tmp_path / "logs"), "--no-partial-parse"],
        capture_output=True, text=True, cwd=DBT_PROJECT_DIR, env={**os.environ, "ECOMMERCE_DBT_ENV": "Prod; drop"},
    )
    assert out.returncode != 0 and "ECOMMERCE_DBT_ENV must be a lower-case identifier" in out.stdout


@pytest.mark.slow
def test_dbt_unit_tests_pass_in_ci(local_resources: dict, tmp_path: Path) -> None:
    """CI runs the dbt unit tests (the API-wins rule of dim_products, the incremental look-back of fct_orders)
    with `dbt build`; the product's production builds leave them out."""
    lake, wh = local_resources["lake"], local_resources["warehouse"]
    land_batch(lake, 1)
    for source in ("orders", "customers"):
        A.register_source(lake, source)
        A.clean_from_lake(lake, source, local_resources["iceberg"])
        A.load_warehouse(lake, wh, local_resources["iceberg"], source)
    out = subprocess.run(
        [dbt_executable(), "build", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
         "--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs")],
        capture_output=True, text=True, cwd=DBT_PROJECT_DIR, env={**os.environ, "ECOMMERCE_DBT_ENV": "ci"},
    )
    assert out.returncode == 0, out.stdout
    results = json.loads((tmp_path / "target" / "run_results.json").read_text())["results"]
    unit = {r["unique_id"].rsplit(".", 1)[-1]: r["status"] for r in results if r["unique_id"].startswith("unit_test.")}
    assert unit == {"dim_products_api_row_wins_over_the_csv_row": "pass",
                    "fct_orders_incremental_reads_back_over_the_lookback": "pass"}
    assert wh.row_count("ci_marts.fct_orders") == 4  # CI's schemas, not production's
    assert D.dbt_build_args() == ["build", "--exclude-resource-type", "unit_test"]  # production (the default)


def test_orders_dbt_definitions_load_without_dbt_on_path(tmp_path: Path) -> None:
    """`.venv/bin/ecommerce-assets ui` from a shell whose PATH lacks the venv: the code location loads the
    orders dbt definitions under `dagster dev` (DAGSTER_IS_DEV_CLI=1 re-parses the project) with the dbt
    beside the interpreter, never one looked up on PATH."""
    venv_python = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "python"
    minimal_path = "/usr/bin:/bin"
    assert shutil.which("dbt", path=minimal_path) is None  # else this test could not fail
    env = {"PATH": minimal_path, "HOME": str(tmp_path), "DAGSTER_IS_DEV_CLI": "1",
           "ECOMMERCE_DATA_DIR": str(tmp_path / "data"), "DAGSTER_HOME": str(tmp_path)}
    out = subprocess.run(
        [str(venv_python), "-c", "import ecommerce_assets.defs.orders.dbt as d; "
         "print(len(d.orders_dbt_models.keys), d.orders_dbt_models.op.tags and 'ok')"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-1] == "ok" and int(out.stdout.split()[-2]) >= 8, out.stdout
