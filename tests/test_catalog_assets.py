"""The real catalog assets materialized into a temporary lake + DuckDB, against the simulator over HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from ecommerce_assets.defs.catalog import assets as ca
from ecommerce_assets.defs.catalog import checks as cc
from ecommerce_assets.defs.catalog import sensors as cs
from ecommerce_assets.defs.catalog.partitions import SELLERS_PARTITIONS, add_catalog_seller, load_sellers
from ecommerce_assets.dev.catalog_sim import CatalogSimulator, distributor_inventory_rows
from ecommerce_assets.resources import build_resources
from ecommerce_assets.resources.catalog_api import KEY_ENV_VAR, CatalogApiResource
from ecommerce_assets.samples.catalog import DISTRIBUTOR_KEY, seed
from ecommerce_assets.settings import get_settings

SELLERS = ["A2L77EE7U53NWQ", "A1PA6795UKMFR9"]


@pytest.fixture
def sim():
    with CatalogSimulator(port=0) as s:
        yield s


SELLER_ASSETS = [ca.catalog_raw_pages, ca.catalog_snapshot, ca.amazon_data, ca.amazon_data_history]
SHARED_ASSETS = [ca.distributor_inventory, ca.distributor_availability_matches, ca.catalog_sourcing_report,
                 cc.match_scores_in_range]

def resources_for(url: str, key: str = "k", **api) -> dict:
    res = build_resources()
    res["catalog_api"] = CatalogApiResource(base_url=url, api_key=key, requests_per_second=0,
                                            backoff_base_seconds=0.01, **api)
    return res


def instance_with(sellers: list[str]) -> dg.DagsterInstance:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(SELLERS_PARTITIONS, sellers)
    return instance


def fetch(resources: dict, instance: dg.DagsterInstance, seller: str, date: str | None = None,
          assets=None, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    assets = assets or SELLER_ASSETS
    ops = {a.op.name for a in assets} & {"catalog__raw_pages", "catalog__snapshot"}
    run_config = {"ops": {op: {"config": {"snapshot_date": date}} for op in ops}} if date else None
    return dg.materialize(assets, partition_key=seller, resources=resources, instance=instance,
                          run_config=run_config, raise_on_error=raise_on_error)


def counts(wh, sql: str, params=None) -> list[tuple]:
    t = wh.query(sql, params)
    return [tuple(r.values()) for r in t.to_pylist()]


def test_whole_graph_then_rerun_is_idempotent(data_dir: Path, sim: CatalogSimulator) -> None:
    settings = get_settings()
    resources = resources_for(sim.url)
    lake, wh = resources["lake"], resources["warehouse"]
    seed(settings, lake)
    instance = instance_with(SELLERS)
    for seller in SELLERS:
        result = fetch(resources, instance, seller, "2024-05-01")
        assert result.success
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        assert checks == {"pages_vs_total_products": True, "no_duplicate_asins": True, "price_parse_failures": True}
    shared = dg.materialize(SHARED_ASSETS, resources=resources, instance=instance)
    assert shared.success
    assert {e.check_name: e.passed for e in shared.get_asset_check_evaluations()} == {"match_scores_in_range": True}

    # raw pages exactly as served
    raw = lake.read_bytes(f"raw/catalog/seller={SELLERS[0]}/date=2024-05-01/page=1.json")
    assert json.loads(raw)["data"]["products"] == sim.catalog.sellers[SELLERS[0]][:48]
    # gold.amazon_data: one row per seller and ASIN, as many as each seller's distinct ASINs
    per_seller = dict(counts(wh, "SELECT seller_id, count(*) FROM gold.amazon_data GROUP BY 1"))
    assert per_seller == {s: len({e["asin"] for e in sim.catalog.sellers[s]}) for s in SELLERS}
    assert counts(wh, "SELECT count(*) FROM (SELECT seller_id, asin FROM gold.amazon_data GROUP BY ALL HAVING count(*) > 1)") == [(0,)]
    assert wh.row_count("gold.distributor_inventory") == len(distributor_inventory_rows())
    methods = dict(counts(wh, "SELECT match_method, count(*) FROM gold.distributor_availability_matches GROUP BY 1"))
    assert set(methods) == {"asin", "gtin", "title_brand"}
    mat = shared.asset_materializations_for_node(ca.MATCHES_KEY.to_python_identifier())[-1]
    assert mat.metadata["supplied_by_method"].value == methods
    assert mat.metadata["supplied"].value == sum(methods.values())
    report = lake.read_bytes("processed/catalog/reports/latest/sourcing_report.csv").decode().splitlines()
    assert len(report) == 1 + sum(per_seller.values())  # every seller product, supplied or not
    html = lake.read_bytes("processed/catalog/reports/latest/sourcing_report.html").decode()
    assert "Supplied, ranked by estimated margin" in html and "Not supplied" in html

    before = {t: wh.row_count(t) for t in ("gold.amazon_data", "gold.amazon_data_history",
                                          "gold.distributor_inventory", "gold.distributor_availability_matches")}
    for seller in SELLERS:
        assert fetch(resources, instance, seller, "2024-05-01").success
    assert dg.materialize(SHARED_ASSETS, resources=resources, instance=instance).success
    assert {t: wh.row_count(t) for t in before} == before


def test_history_shows_changes_between_snapshots(data_dir: Path) -> None:
    seller = SELLERS[0]
    instance = instance_with([seller])
    with CatalogSimulator(port=0) as day1:
        r1 = resources_for(day1.url)
        assert fetch(r1, instance, seller, "2024-05-01").success
        asins1 = {e["asin"] for e in day1.catalog.sellers[seller]}
    with CatalogSimulator(port=0, seed=99) as day2:  # another day: a partly different listing
        r2 = resources_for(day2.url)
        assert fetch(r2, instance, seller, "2024-05-02").success
        asins2 = {e["asin"] for e in day2.catalog.sellers[seller]}
    wh = r2["warehouse"]
    latest = dict(counts(wh, "SELECT asin, CAST(snapshot_date AS VARCHAR) FROM gold.amazon_data WHERE seller_id = ?", [seller]))
    assert set(latest) == asins1 | asins2  # latest row per ASIN, including ASINs no longer listed
    assert {a for a, d in latest.items() if d == "2024-05-02"} == asins2
    changes = dict(counts(wh, "SELECT availability_change, count(*) FROM gold.amazon_data_history "
                              "WHERE snapshot_date = DATE '2024-05-02' GROUP BY 1"))
    assert changes.get("delisted", 0) == len(asins1 - asins2)
    assert changes.get("new", 0) == len(asins2 - asins1)


def test_bad_page_is_quarantined_and_the_rest_goes_on(data_dir: Path) -> None:
    seller = SELLERS[1]  # 60 products: page 1 (48), page 2 (12), page 3 empty
    with CatalogSimulator(port=0, malformed_pages={2}) as sim:
        resources = resources_for(sim.url, max_retries=1)
        result = fetch(resources, instance_with([seller]), seller, "2024-05-01")
    assert result.success
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not checks["pages_vs_total_products"].passed
    assert checks["pages_vs_total_products"].severity == dg.AssetCheckSeverity.WARN
    lake = resources["lake"]
    qprefix = f"quarantine/catalog/seller={seller}/date=2024-05-01/"
    assert lake.exists(qprefix + "page=2.json")
    reasons = json.loads(lake.read_bytes(qprefix + "reasons.json"))
    assert {(r["file"].rsplit("/", 1)[-1], r["rule"]) for r in reasons if r["row"] is None} == {("page=2.json", "malformed_json")}
    snap = result.asset_materializations_for_node(ca.SNAPSHOT_KEY.to_python_identifier())[-1].metadata
    assert snap["bad_pages"].value == 1 and snap["reconciles"].value is True
    assert snap["rows_out"].value == len({e["asin"] for e in sim.catalog.sellers[seller][:48]})


def test_bad_key_fails_once_naming_the_setting(data_dir: Path) -> None:
    seller = SELLERS[0]
    with CatalogSimulator(port=0, required_key="right") as sim:
        resources = resources_for(sim.url, key="wrong-key-123")
        result = fetch(resources, instance_with([seller]), seller, "2024-05-01",
                       assets=[ca.catalog_raw_pages], raise_on_error=False)
        assert len(sim.requests) == 1  # no retry of the request, and no RetryPolicy re-run of the step
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = str(failure.event_specific_data.error)
    assert KEY_ENV_VAR in message and "wrong-key-123" not in message


def test_a_server_error_is_retried_by_the_client_only(data_dir: Path) -> None:
    """An API answering 500 fails the step after the client's own retries: no RetryPolicy re-run on top of them
    (one retry layer), so a run fails in seconds, not minutes."""
    seller = SELLERS[0]
    with CatalogSimulator(port=0, server_error_first=1000) as sim:
        resources = resources_for(sim.url, max_retries=3)
        result = fetch(resources, instance_with([seller]), seller, "2024-05-01",
                       assets=[ca.catalog_raw_pages], raise_on_error=False)
        assert [r.status for r in sim.requests] == [500] * 4  # 1 attempt + 3 client retries, then the step stops
    assert not result.success
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]


def test_distributor_bad_file_and_rows_are_quarantined(data_dir: Path) -> None:
    resources = build_resources()
    lake, wh = resources["lake"], resources["warehouse"]
    lake.write_bytes("landing/distributor/a.csv", (
        b"SKU,Title,Brand,Cost,Quantity Available,UPC\n"
        b"S1,Widget,Acme,5.00,3,036000291452\n"
        b"S2,Gadget,Acme,oops,3,\n"
        b",No sku,Acme,1.00,1,\n"
        b"S3,Old title,Acme,2.00,1,036000291453\n"
    ))
    lake.write_bytes("landing/distributor/b.csv", b"sku,title,brand,cost,quantity_available\nS3,New title,Acme,2.50,4\n")
    lake.write_bytes("landing/distributor/c.csv", b"just,some,text\n1,2,3\n")
    import os
    os.utime(lake.uri("landing/distributor/b.csv"), (2_000_000_000, 2_000_000_000))  # b is the newest file
    result = dg.materialize([ca.distributor_inventory], resources=resources, instance=dg.DagsterInstance.ephemeral())
    assert result.success
    rows = {r["sku"]: r for r in wh.query("SELECT * FROM gold.distributor_inventory").to_pylist()}
    assert set(rows) == {"S1", "S3"}
    assert rows["S3"]["title"] == "New title" and rows["S1"]["gtin"] == "00036000291452"
    md = result.asset_materializations_for_node(ca.INVENTORY_KEY.to_python_identifier())[-1].metadata
    assert md["quarantined_rows"].value == {"unparseable_cost": 1, "null_sku": 1}
    assert md["rows_in"].value == 5 and md["superseded_sku_rows"].value == 1  # 5 = 2 out + 2 quarantined + 1
    [bad] = md["bad_files"].value
    reason = json.loads(lake.read_bytes("quarantine/distributor/files/c.csv.reason.json"))
    assert bad["file"] == reason["file"] == "landing/distributor/c.csv" and reason["rule"] in ("not_csv", "missing_column")
    assert lake.read_bytes("quarantine/distributor/files/c.csv") == b"just,some,text\n1,2,3\n"


def test_sensors_request_the_right_runs(data_dir: Path) -> None:
    resources = build_resources()
    lake = resources["lake"]
    lake.write_bytes("raw/catalog/seller=ANEWSELLER1/date=2024-05-03/page=1.json", b"{}")
    seed(get_settings(), lake)
    instance = dg.DagsterInstance.ephemeral()
    ctx = dg.build_sensor_context(instance=instance, resources=resources)
    result = cs.catalog_raw_arrival(ctx)
    [req] = result.run_requests
    assert req.partition_key == "ANEWSELLER1"
    assert req.run_config == {"ops": {"catalog__snapshot": {"config": {"snapshot_date": "2024-05-03"}}}}
    assert list(result.dynamic_partitions_requests[0].partition_keys) == ["ANEWSELLER1"]
    again = cs.catalog_raw_arrival(dg.build_sensor_context(instance=instance, resources=resources, cursor=result.cursor))
    assert not again.run_requests  # nothing new
    dist = cs.distributor_arrival(dg.build_sensor_context(instance=instance, resources=resources))
    assert len(dist.run_requests) == 1 and dist.run_requests[0].tags["ecommerce/arrival_objects"] == "1"
    assert lake.exists(DISTRIBUTOR_KEY)


def test_sellers_from_config_env_and_ui(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert [s.seller_id for s in load_sellers()][:2] == SELLERS  # the packaged config
    cfg = tmp_path / "sellers.json"
    cfg.write_text(json.dumps({"sellers": [{"seller_id": "AJSON1", "query": "bottle"}]}))
    monkeypatch.setenv("ECOMMERCE_SELLERS_FILE", str(cfg))
    assert [(s.seller_id, s.query) for s in load_sellers()] == [("AJSON1", "bottle")]
    monkeypatch.setenv("ECOMMERCE_SELLERS", "AENV1, AJSON1")
    assert [(s.seller_id, s.query) for s in load_sellers()] == [("AENV1", ""), ("AJSON1", "bottle")]
    monkeypatch.setenv("ECOMMERCE_SELLERS", "bad id!")
    with pytest.raises(ValueError, match="ECOMMERCE_SELLERS: seller ids are"):
        load_sellers()
    instance = dg.DagsterInstance.ephemeral()
    run = add_catalog_seller.execute_in_process(
        instance=instance, run_config={"ops": {"add_seller_partition": {"config": {"seller_id": "AUI12345"}}}}
    )
    assert run.success and instance.get_dynamic_partitions(SELLERS_PARTITIONS) == ["AUI12345"]


def test_run_fetch_fetches_the_configured_seller_then_cleans_and_matches(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ecommerce-assets run --fetch` semantics: only the configured seller is fetched (as the daily schedule
    would), its pages are cleaned by the raw-pages sensor, and the matches follow, against a real server."""
    from ecommerce_assets.runtime.catchup import catch_up, load_definitions

    with CatalogSimulator(port=0, required_key="k-123") as sim:
        monkeypatch.setenv("ECOMMERCE_CATALOG_API_URL", sim.url)
        monkeypatch.setenv(KEY_ENV_VAR, "k-123")
        monkeypatch.setenv("ECOMMERCE_SELLERS", SELLERS[0])
        settings = get_settings()
        seed(settings, build_resources(settings)["lake"])
        report = catch_up(load_definitions(), echo=lambda _m: None, fetch=True, pipelines=["catalog"])
        fetched = {r.seller_id for r in sim.requests}
    assert report.ok, report.lines
    labels = [label for label, _ in report.runs]
    assert labels[0] == f"fetch catalog_daily_fetch [{SELLERS[0]}]" and not any(SELLERS[1] in lab for lab in labels)
    assert fetched == {SELLERS[0]}  # the other packaged sellers were not fetched
    wh = build_resources()["warehouse"]
    sellers = {r["seller_id"] for r in wh.query("SELECT DISTINCT seller_id FROM gold.amazon_data").to_pylist()}
    assert sellers == {SELLERS[0]}
    assert wh.row_count("gold.distributor_availability_matches") > 0


def test_catalog_definitions_load() -> None:
    from ecommerce_assets.runtime.catchup import load_definitions

    defs = load_definitions()
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"catalog/raw_pages", "catalog/snapshot", "gold/amazon_data", "gold/amazon_data_history",
            "gold/distributor_inventory", "gold/distributor_availability_matches", "catalog/sourcing_report"} <= keys
    assert defs.resolve_sensor_def("catalog_raw_pages_arrival") and defs.resolve_job_def("add_catalog_seller")
    assert graph.get(ca.RAW_PAGES_KEY).assets_def.op.retry_policy is not None


def test_matches_without_any_seller_yet_is_empty_not_a_failure(data_dir: Path) -> None:
    resources = build_resources()
    seed(get_settings(), resources["lake"])
    result = dg.materialize([ca.distributor_inventory, ca.distributor_availability_matches, ca.catalog_sourcing_report],
                            resources=resources, instance=dg.DagsterInstance.ephemeral())
    assert result.success
    assert resources["warehouse"].row_count("gold.distributor_availability_matches") == 0
    md = result.asset_materializations_for_node(ca.MATCHES_KEY.to_python_identifier())[-1].metadata
    assert md["seller_products"].value == 0 and md["supplied"].value == 0
