"""The catalog API client against the simulator over real HTTP: paging, every injected fault, bad keys."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import requests

from ecommerce_assets.dev.catalog_sim import DEMO_SELLERS, PAGE_SIZE, CatalogSimulator
from ecommerce_assets.resources.catalog_api import (
    KEY_ENV_VAR,
    CatalogApiError,
    CatalogApiResource,
    CatalogAuthError,
    CatalogClient,
    catalog_api_resource,
)
from ecommerce_assets.resources.http import RateLimiter
from ecommerce_assets.settings import get_settings
from tests.conftest import free_port

SELLER = next(iter(DEMO_SELLERS))


@pytest.fixture
def start_sim() -> Iterator:
    started: list[CatalogSimulator] = []

    def start(**kwargs) -> CatalogSimulator:
        sim = CatalogSimulator(port=0, **kwargs).start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


def client(sim_or_url, **kwargs) -> CatalogClient:
    url = sim_or_url if isinstance(sim_or_url, str) else sim_or_url.url
    opts = dict(
        api_key="test-key",
        host="sim",
        requests_per_second=0,
        max_retries=3,
        backoff_base_seconds=0.01,
        backoff_max_seconds=2.0,
        timeout_seconds=5.0,
    )
    opts.update(kwargs)
    return CatalogClient(base_url=url, **opts)


def test_pages_until_an_empty_products_page(start_sim) -> None:
    sim = start_sim()
    pages = list(client(sim).iter_pages(SELLER))
    expected = sim.catalog.sellers[SELLER]
    assert len(pages) == -(-len(expected) // PAGE_SIZE) + 1  # the product pages, then the empty one
    assert pages[-1].products == 0
    assert all(p.products == PAGE_SIZE for p in pages[:-2])
    got = [prod for p in pages for prod in json.loads(p.body)["data"]["products"]]
    assert got == expected  # every product, in order, exactly as served
    assert {p.total_products for p in pages} == {len(expected)}
    assert [r.page for r in sim.requests] == list(range(1, len(pages) + 1))


def test_max_pages_limits_paging(start_sim) -> None:
    sim = start_sim()
    pages = list(client(sim).iter_pages(SELLER, max_pages=1))
    assert [p.page for p in pages] == [1]
    assert pages[0].products == PAGE_SIZE


def test_429_is_retried_after_the_retry_after_header(start_sim) -> None:
    sim = start_sim(rate_limit_first=2, retry_after_seconds=1)
    page = client(sim).fetch_page(SELLER, 1)
    assert page.products == PAGE_SIZE
    assert [a.outcome for a in page.attempts] == ["http_429", "http_429", "ok"]
    for attempt in page.attempts[:2]:
        assert attempt.retry_after == 1.0
        assert attempt.wait_seconds >= 1.0  # honoured, even though the jittered backoff alone is ~0.01 s
    assert [r.status for r in sim.requests] == [429, 429, 200]


def test_500_is_retried_with_backoff(start_sim) -> None:
    sim = start_sim(server_error_first=3)
    started = time.monotonic()
    page = client(sim, backoff_base_seconds=0.05).fetch_page(SELLER, 1)
    took = time.monotonic() - started
    assert [a.outcome for a in page.attempts] == ["http_500", "http_500", "http_500", "ok"]
    # urllib3's backoff: retry 1 at once, retry n after base * 2**(n - 1) plus a jitter of up to base
    waits = [a.wait_seconds for a in page.attempts[:3]]
    assert waits[0] == 0
    assert 0.05 * 2 <= waits[1] <= 0.05 * 2 + 0.05 and 0.05 * 4 <= waits[2] <= 0.05 * 4 + 0.05
    assert took >= sum(waits)  # the recorded waits were slept


def test_retry_after_is_capped_at_backoff_max(start_sim) -> None:
    """A server asking for an hour is waited for ``backoff_max_seconds`` at most."""
    sim = start_sim(rate_limit_first=1, retry_after_seconds=3600)
    started = time.monotonic()
    page = client(sim, backoff_max_seconds=0.3).fetch_page(SELLER, 1)
    assert time.monotonic() - started < 5
    assert [(a.outcome, a.retry_after, a.wait_seconds) for a in page.attempts] == [
        ("http_429", 0.3, 0.3),
        ("ok", None, 0.0),
    ]


def test_slow_answer_times_out_and_is_retried(start_sim) -> None:
    sim = start_sim(slow_first=1, slow_seconds=1.5)
    page = client(sim, timeout_seconds=0.3).fetch_page(SELLER, 1)
    assert [a.outcome for a in page.attempts] == ["timeout", "ok"]
    assert page.products == PAGE_SIZE


def test_transient_malformed_json_is_retried(start_sim) -> None:
    sim = start_sim(malformed_first=1)
    page = client(sim).fetch_page(SELLER, 1)
    assert [a.outcome for a in page.attempts] == ["malformed_json", "ok"]
    assert json.loads(page.body)["data"]["products"]


def test_persistently_malformed_page_is_kept_as_received_and_paging_goes_on(start_sim) -> None:
    sim = start_sim(malformed_pages={1})
    pages = list(client(sim, max_retries=1).iter_pages(SELLER))
    first = pages[0]
    assert not first.is_readable and first.products is None
    with pytest.raises(json.JSONDecodeError):
        json.loads(first.body)
    assert pages[1].products and pages[1].page == 2  # the next page was still fetched
    assert pages[-1].products == 0


def test_page_missing_data_products_does_not_stop_paging(start_sim) -> None:
    sim = start_sim(missing_products_pages={1})
    pages = list(client(sim).iter_pages(SELLER))
    assert pages[0].products is None and "products" not in json.loads(pages[0].body)["data"]
    assert pages[1].products is not None and pages[1].products > 0
    assert pages[-1].products == 0


def test_retries_exhausted_raise_a_clear_error(start_sim) -> None:
    sim = start_sim(server_error_first=100)
    with pytest.raises(CatalogApiError, match=r"after 3 attempts \(last: http_500\)"):
        client(sim, max_retries=2).fetch_page(SELLER, 1)
    assert len(sim.requests) == 3


def test_connection_errors_are_retried_then_reported() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(CatalogApiError, match="connection_error"):
        client(url, max_retries=1).fetch_page(SELLER, 1)


def test_bad_key_names_the_setting_and_never_the_key(start_sim) -> None:
    sim = start_sim(required_key="the-right-key")
    secret = "wrong-secret-9f8e7d"
    with pytest.raises(CatalogAuthError) as err:
        client(sim, api_key=secret).fetch_page(SELLER, 1)
    assert KEY_ENV_VAR in str(err.value) and "HTTP 403" in str(err.value)
    assert secret not in str(err.value)
    assert len(sim.requests) == 1  # never retried
    with pytest.raises(CatalogAuthError, match="HTTP 401"):
        client(sim, api_key="").fetch_page(SELLER, 1)
    assert client(sim, api_key="the-right-key").fetch_page(SELLER, 1).products == PAGE_SIZE


def test_the_key_is_not_in_reprs() -> None:
    resource = CatalogApiResource(base_url="http://x", api_key="s3cr3t-value")
    assert "s3cr3t-value" not in repr(resource) and "s3cr3t-value" not in str(resource)
    assert "s3cr3t-value" not in repr(resource.get_client())


def test_rate_limit_spaces_request_starts() -> None:
    limiter = RateLimiter(per_second=20)
    starts = []
    for _ in range(4):
        limiter.wait()
        starts.append(time.monotonic())
    # 20/s: the k-th start is at least k x 50 ms after the first. The limiter keeps a schedule (it does not
    # space each start from the previous one's actual time), so a sleep that returns late makes the next gap
    # shorter, never the rate higher; sleep never returns early.
    assert all(t - starts[0] >= k * 0.05 - 0.002 for k, t in enumerate(starts)), starts
    unlimited = RateLimiter(per_second=0)
    assert unlimited.interval == 0.0


def test_resource_for_settings(monkeypatch: pytest.MonkeyPatch, data_dir) -> None:
    """The catalog fetch is on only with a URL and a key; otherwise a placeholder names what to set."""
    from ecommerce_assets.resources.unconfigured import MissingSettingError, UnconfiguredResource

    monkeypatch.delenv("ECOMMERCE_CATALOG_API_URL", raising=False)
    monkeypatch.delenv(KEY_ENV_VAR, raising=False)
    monkeypatch.setenv("ECOMMERCE_CATALOG_SIM_PORT", "9911")
    off = catalog_api_resource(get_settings())
    assert isinstance(off, UnconfiguredResource) and "ECOMMERCE_CATALOG_API_URL" in off.problem
    assert "http://127.0.0.1:9911" in off.problem  # how to try it against `ecommerce-assets catalog-sim`
    with pytest.raises(MissingSettingError, match="ECOMMERCE_CATALOG_API_URL"):
        off.fetch_seller(SELLER)
    monkeypatch.setenv("ECOMMERCE_CATALOG_API_URL", "https://api.example.test")
    no_key = catalog_api_resource(get_settings())
    assert isinstance(no_key, UnconfiguredResource) and KEY_ENV_VAR in no_key.problem
    monkeypatch.setenv(KEY_ENV_VAR, "k")
    real = catalog_api_resource(get_settings())
    assert real.base_url == "https://api.example.test"
    assert isinstance(real.api_key, dg.EnvVar) and real.api_key.env_var_name == KEY_ENV_VAR


def test_resource_fetch_seller_via_dagster_envvar(start_sim, monkeypatch: pytest.MonkeyPatch) -> None:
    sim = start_sim(required_key="env-key")
    monkeypatch.setenv(KEY_ENV_VAR, "env-key")
    resource = CatalogApiResource(base_url=sim.url, api_key=dg.EnvVar(KEY_ENV_VAR), requests_per_second=0)

    @dg.op
    def fetch(catalog_api: CatalogApiResource) -> int:
        return sum(p.products or 0 for p in catalog_api.fetch_seller(SELLER))

    result = dg.build_op_context(resources={"catalog_api": resource})
    assert fetch(result) == len(sim.catalog.sellers[SELLER])


def test_cli_serves_the_api() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "ecommerce-assets"),
            "catalog-sim",
            "--port",
            str(port),
            "--api-key",
            "cli-key",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        line = proc.stdout.readline()
        assert f"127.0.0.1:{port}" in line
        url = f"http://127.0.0.1:{port}/search"
        ok = requests.get(
            url, params={"seller_id": SELLER, "page": 1}, headers={"x-rapidapi-key": "cli-key"}, timeout=10
        )
        assert ok.status_code == 200 and len(ok.json()["data"]["products"]) == PAGE_SIZE
        bad = requests.get(
            url, params={"seller_id": SELLER, "page": 1}, headers={"x-rapidapi-key": "no"}, timeout=10
        )
        assert bad.status_code == 403
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            code = proc.wait(timeout=10)
        finally:
            proc.kill()
            proc.stdout.close()
    assert code == 0  # SIGTERM is handled: the server shuts down and the command exits cleanly


def test_unknown_seller_has_no_products(start_sim) -> None:
    sim = start_sim()
    pages = list(client(sim).iter_pages("AUNKNOWNSELLER"))
    assert [p.products for p in pages] == [0]
    assert [p.total_products for p in pages] == [0]
