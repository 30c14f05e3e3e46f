"""Issue 11, orders: the marts build from whatever has landed (files only, products API only, or both).

Each scenario starts from a fresh data dir and materializes the orders assets of the sources it has, the
dbt marts and the source-freshness checks with ``dg.materialize``. The products API is the real local HTTP
simulator. Sample batch 1: 4 orders (products P001-P003), 3 customers, 3 products in products.csv; the API
serves 5 products with ids 1-5, so with the API alone every order's product is unknown: kept, counted, WARN.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path

import dagster as dg
import pytest

from ecommerce_assets.defs.orders import assets as A
from ecommerce_assets.defs.orders import dbt as D
from ecommerce_assets.dev.products_api_sim import SAMPLE_PRODUCTS, ProductsApiSim
from ecommerce_assets.resources.products_api import ProductsApi
from ecommerce_assets.samples.orders import BATCH_DATES, FILES, sample_bytes

OPTIONAL = A.OPTIONAL_SOURCE_TAGS
PRODUCT_CHECK = "relationships_fct_orders_product_id__product_id__ref_dim_products_"
CUSTOMER_CHECK = "relationships_fct_orders_customer_id__customer_id__ref_dim_customers_"


@pytest.fixture(scope="module", autouse=True)
def manifest() -> Path:
    return D.prepare_manifest()


def file_assets(sources: Iterable[str]) -> list[dg.AssetsDefinition]:
    by_source = {
        "orders": (A.raw_orders_files, A.cleaned_orders, A.load_orders),
        "customers": (A.raw_customers_files, A.cleaned_customers, A.load_customers),
        "products": (A.raw_products_files, A.cleaned_products, A.load_products),
    }
    return [a for s in sources for a in by_source[s]]


API_ASSETS = [A.orders_raw_api_products, A.cleaned_api_products, A.load_api_products]


def land(lake, sources: Iterable[str]) -> None:
    for source in sources:
        lake.write_bytes(f"landing/{source}/date={BATCH_DATES[1]}/{FILES[source]}", sample_bytes(1, source))


def build(resources: dict, assets: list, selection: dg.AssetSelection | None = None,
          ) -> tuple[dg.ExecuteInProcessResult, dict[str, dg.AssetCheckEvaluation]]:
    result = dg.materialize([*assets, D.orders_dbt_models, D.orders_source_freshness], resources=resources,
                            selection=selection)
    assert result.success
    checks = {f"{e.asset_key.to_user_string()}:{e.check_name}": e for e in result.get_asset_check_evaluations()}
    errors = [k for k, e in checks.items() if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR]
    assert not errors, errors
    return result, {k.split(":", 1)[1] if not k.startswith("raw_orders/") else k: e for k, e in checks.items()}


def counts(resources: dict) -> dict[str, int]:
    wh = resources["warehouse"]
    return {t: wh.row_count(f"marts.{t}") for t in ("dim_customers", "dim_products", "fct_orders")}


def test_files_only(local_resources: dict) -> None:
    """orders.csv, customers.json and products.csv, no products API configured: every mart is built. As in
    the catch-up, the API's staging view is not selected (its source never landed): the run creates it empty."""
    land(local_resources["lake"], FILES)
    api_view = dg.AssetKey(["orders", "stg_api_products"])
    assert D.optional_views_to_create({dg.AssetKey(["orders", "dim_products"])}) == ["stg_api_products", "stg_products"]
    result, checks = build(local_resources, file_assets(FILES), dg.AssetSelection.all() - dg.AssetSelection.assets(api_view))
    assert api_view not in {e.materialization.asset_key for e in result.get_asset_materialization_events()}
    assert counts(local_resources) == {"dim_customers": 3, "dim_products": 3, "fct_orders": 4}
    assert checks[PRODUCT_CHECK].passed and checks[CUSTOMER_CHECK].passed
    assert "raw_orders/api_products:dbt_source_freshness" not in checks  # only loaded tables are checked
    for source in FILES:
        fresh = checks[f"raw_orders/{source}:dbt_source_freshness"]
        assert fresh.passed and fresh.metadata["status"].value == "pass", fresh.metadata
    sources = {r["source"] for r in local_resources["warehouse"].query("SELECT source FROM marts.dim_products").to_pylist()}
    assert sources == {"products_csv"}


def test_products_api_only(local_resources: dict) -> None:
    """orders.csv and customers.json, products from the API only: the orders of products the API does not
    know are kept, counted, and flagged by a WARN check that does not stop the marts."""
    land(local_resources["lake"], ["orders", "customers"])
    with ProductsApiSim() as sim:
        resources = {**local_resources, "products_api": ProductsApi(base_url=sim.url, backoff_seconds=0.01)}
        _, checks = build(resources, [*file_assets(["orders", "customers"]), *API_ASSETS])
    assert counts(local_resources) == {"dim_customers": 3, "dim_products": len(SAMPLE_PRODUCTS), "fct_orders": 4}
    unknown = checks[PRODUCT_CHECK]
    assert not unknown.passed and unknown.severity == dg.AssetCheckSeverity.WARN
    assert unknown.metadata["dagster_dbt/failed_row_count"].value == 4
    assert checks[CUSTOMER_CHECK].passed
    assert checks["raw_orders/api_products:dbt_source_freshness"].passed


def test_products_api_alone(local_resources: dict) -> None:
    """Nothing landed, the products API fetched: as the catch-up does, only the API's assets and what they
    reach (stg_api_products, dim_products) are selected; dim_products builds without products.csv's view."""
    with ProductsApiSim() as sim:
        resources = {**local_resources, "products_api": ProductsApi(base_url=sim.url, backoff_seconds=0.01)}
        reached = dg.AssetSelection.assets(*API_ASSETS, dg.AssetKey(["orders", "stg_api_products"]),
                                           dg.AssetKey(["orders", "dim_products"]))
        result, checks = build(resources, API_ASSETS, reached)
    built = {e.materialization.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert {"orders/dim_products", "orders/stg_api_products"} <= built and "orders/fct_orders" not in built
    wh = local_resources["warehouse"]
    assert wh.row_count("marts.dim_products") == len(SAMPLE_PRODUCTS)
    assert not wh.table_exists("marts.fct_orders") and not wh.table_exists("raw_orders.products")


def test_files_and_products_api(local_resources: dict) -> None:
    """Both product sources: the union, the API row winning for an id in both (none in the sample)."""
    land(local_resources["lake"], FILES)
    with ProductsApiSim() as sim:
        resources = {**local_resources, "products_api": ProductsApi(base_url=sim.url, backoff_seconds=0.01)}
        _, checks = build(resources, [*file_assets(FILES), *API_ASSETS])
    assert counts(local_resources) == {"dim_customers": 3, "dim_products": 3 + len(SAMPLE_PRODUCTS), "fct_orders": 4}
    assert checks[PRODUCT_CHECK].passed


def test_a_stale_source_fails_its_freshness_check(local_resources: dict) -> None:
    """A table whose newest file arrived 10 days ago is past error_after (7 days): ERROR, failed. An optional
    source that never landed passes its check; a required one fails it (WARN)."""
    lake, wh = local_resources["lake"], local_resources["warehouse"]
    land(lake, ["orders"])
    A.register_source(lake, "orders", now=dt.datetime.now(dt.UTC) - dt.timedelta(days=10))
    A.clean_from_lake(lake, "orders", local_resources["iceberg"])
    result = dg.materialize([A.load_orders, D.orders_source_freshness], resources=local_resources,
                            selection=dg.AssetSelection.assets(A.load_orders).without_checks()
                            | dg.AssetSelection.checks(*(D.freshness_check_key(s) for s in ("orders", "customers", "products"))))
    checks = {e.asset_key.path[-1]: e for e in result.get_asset_check_evaluations()}
    check = checks["orders"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert check.metadata["status"].value == "error" and check.metadata["age_hours"].value >= 240
    assert wh.row_count("raw_orders.orders") == 4
    assert checks["products"].passed and checks["products"].metadata["status"].value == "not loaded"
    assert not checks["customers"].passed and checks["customers"].severity == dg.AssetCheckSeverity.WARN


@pytest.mark.parametrize("landed", [["orders", "customers", "products"], ["orders", "customers", "api_products"]])
def test_no_mart_waits_for_a_source_that_never_landed(landed: list[str], local_resources: dict) -> None:
    """The catch-up contract: an asset the landed sources do not reach, but that a mart reached by them
    depends on, is tagged ``ecommerce/optional_source`` (so it never blocks that mart)."""
    defs = dg.Definitions(assets=[*file_assets(FILES), *API_ASSETS, D.orders_dbt_models], resources=local_resources)
    graph = defs.resolve_asset_graph()
    reached = {k for s in landed for k in (A.raw_asset_key(s), A.cleaned_asset_key(s), A.warehouse_asset_key(s))}
    for key in graph.toposorted_asset_keys:
        if any(p in reached for p in graph.get(key).parent_keys):
            reached.add(key)
    marts = {dg.AssetKey(["orders", m]) for m in ("dim_customers", "dim_products", "fct_orders")}
    assert marts <= reached
    for key in reached:
        for parent in graph.get(key).parent_keys:
            node = graph.get(parent)
            if parent not in reached and node.is_materializable:
                assert node.tags.get("ecommerce/optional_source") == "true", f"{key.to_user_string()} waits for {parent.to_user_string()}"
    for source in A.OPTIONAL_SOURCES:  # and every asset of an optional source carries the tag
        for key in (A.raw_asset_key(source), A.cleaned_asset_key(source), A.warehouse_asset_key(source)):
            assert graph.get(key).tags.get("ecommerce/optional_source") == "true"
