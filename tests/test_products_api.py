"""The products API resource against the real local HTTP simulator: retries, timeouts, validation."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from ecommerce_assets.defs.orders import assets as A
from ecommerce_assets.dev.products_api_sim import SAMPLE_PRODUCTS, ProductsApiSim
from ecommerce_assets.resources.products_api import ProductsApi, ProductsApiError, ProductsPayloadError


@pytest.fixture
def sim():
    with ProductsApiSim() as s:
        yield s


def api(sim: ProductsApiSim, **kw) -> ProductsApi:
    return ProductsApi(base_url=sim.url, backoff_seconds=0.01, max_backoff_seconds=0.05, **kw)


def test_fetch_returns_the_exact_body_and_items(sim: ProductsApiSim) -> None:
    fetch = api(sim).fetch_products()
    assert json.loads(fetch.body) == SAMPLE_PRODUCTS
    assert [p["id"] for p in fetch.items] == [p["id"] for p in SAMPLE_PRODUCTS]
    assert fetch.problems == [] and fetch.attempts == 1


def test_retries_5xx_429_and_dropped_connections_then_succeeds(sim: ProductsApiSim) -> None:
    sim.faults.fail_next = [503, 429, 500]
    sim.faults.drop_next = 0
    fetch = api(sim).fetch_products()
    assert fetch.attempts == 4
    assert [s for _, s in sim.requests] == [503, 429, 500, 200]
    sim.requests.clear()
    sim.faults.drop_next = 2
    assert api(sim).fetch_products().attempts == 3
    assert [s for _, s in sim.requests] == [0, 0, 200]


def test_gives_up_after_max_attempts_with_a_clear_error(sim: ProductsApiSim) -> None:
    sim.faults.fail_next = [502] * 10
    with pytest.raises(ProductsApiError, match="after 3 attempts; last: HTTP 502"):
        api(sim, max_attempts=3).fetch_products()
    assert len(sim.requests) == 3


def test_client_errors_are_not_retried(sim: ProductsApiSim) -> None:
    sim.faults.fail_next = [404]
    with pytest.raises(ProductsApiError, match="not retried"):
        api(sim).fetch_products()
    assert len(sim.requests) == 1


def test_timeout_is_retried(sim: ProductsApiSim) -> None:
    """Every attempt times out: the server received exactly max_attempts requests (it logs each one as it
    arrives, before its delay), and the error names the attempts and the timeout."""
    sim.faults.delay_seconds = 0.5
    with pytest.raises(ProductsApiError, match=r"failed after 3 attempts; last: .*Timeout"):
        api(sim, timeout_seconds=0.1, max_attempts=3).fetch_products()
    assert sim.requests == [("/products", 200)] * 3


def test_payload_that_is_not_json_or_not_a_list_is_refused(sim: ProductsApiSim) -> None:
    sim.faults.body = b"<html>maintenance</html>"
    with pytest.raises(ProductsPayloadError, match="not valid JSON"):
        api(sim).fetch_products()
    sim.faults.body = b'{"products": []}'
    with pytest.raises(ProductsPayloadError, match="expected a JSON list of products, got a JSON dict"):
        api(sim).fetch_products()


def test_item_problems_name_index_field_and_rule(sim: ProductsApiSim) -> None:
    sim.faults.products = [SAMPLE_PRODUCTS[0], {"id": 2, "price": "cheap"}, {"title": "x", "price": -1}]
    fetch = api(sim).fetch_products()
    got = {(p.index, p.field, p.rule) for p in fetch.problems}
    assert got == {(1, "title", "null_title"), (1, "price", "unparseable_price"),
                   (2, "id", "null_id"), (2, "price", "negative_price")}


def test_missing_url_is_a_clear_error() -> None:
    with pytest.raises(ProductsApiError, match="ECOMMERCE_PRODUCTS_API_URL"):
        ProductsApi().fetch_products()


def test_api_asset_keeps_raw_json_and_quarantines_a_bad_body(local_resources: dict, sim: ProductsApiSim) -> None:
    lake = local_resources["lake"]
    resources = {"lake": lake, "products_api": api(sim)}
    assert dg.materialize([A.orders_raw_api_products], resources=resources).success
    raws = list(lake.list_objects("raw/api/products/"))
    assert len(raws) == 1 and json.loads(lake.read_bytes(raws[0].key)) == SAMPLE_PRODUCTS
    sim.faults.body = b"not json"
    result = dg.materialize([A.orders_raw_api_products], resources=resources, raise_on_error=False)
    assert not result.success
    assert len(list(lake.list_objects("raw/api/products/"))) == 1  # nothing stored in raw
    reasons = [o for o in lake.list_objects("quarantine/api_products/files/") if o.key.endswith(".reason.json")]
    assert json.loads(lake.read_bytes(reasons[0].key))["rule"] == "invalid_payload"
