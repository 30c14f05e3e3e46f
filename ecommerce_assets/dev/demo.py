"""The demo's steps: seed each domain's sample data into the landing zone (no network, no account).

Each domain contributes one function ``seed(settings, lake) -> list[str]`` (the keys it landed); the
``ecommerce-assets demo`` command runs them all, then the headless catch-up (``ecommerce-assets run``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ecommerce_assets.settings import Settings
from ecommerce_assets.storage.lake import Lake

SeedStep = Callable[[Settings, Lake], list[str]]


def seed_steps() -> list[tuple[str, SeedStep]]:
    """(domain, seed function) for every domain, in the order the demo runs them."""
    from ecommerce_assets.samples import seed_online_retail
    from ecommerce_assets.samples.catalog import seed as seed_catalog
    from ecommerce_assets.samples.orders import seed as seed_orders
    from ecommerce_assets.services.transactions_generator import seed as seed_transactions

    return [
        ("online_retail", seed_online_retail),
        ("catalog", seed_catalog),
        ("orders", seed_orders),
        ("transactions", seed_transactions),
    ]


@contextmanager
def local_services(settings: Settings, echo: Callable[[str], None]) -> Iterator[list[Callable[[], None]]]:
    """Start the bundled catalog and products API simulators on free ports when no URL is configured,
    point the settings at them (environment variables, read by ``get_settings``) and stop them after."""
    import os

    stops: list[Callable[[], None]] = []
    saved = {k: os.environ.get(k) for k in _SERVICE_VARS}
    try:
        if settings.env == "local" and not settings.catalog_api_url:
            from ecommerce_assets.dev.catalog_sim import CatalogSimulator
            from ecommerce_assets.resources.catalog_api import SIMULATOR_KEY

            catalog = CatalogSimulator(port=0).start()
            stops.append(catalog.stop)
            os.environ["ECOMMERCE_CATALOG_API_URL"] = catalog.url
            os.environ["ECOMMERCE_CATALOG_API_KEY"] = SIMULATOR_KEY
            echo(f"catalog API simulator on {catalog.url}")
        if settings.env == "local" and not settings.products_api_url:
            from ecommerce_assets.dev.products_api_sim import start_products_api_sim

            products = start_products_api_sim()
            stops.append(products.stop)
            os.environ["ECOMMERCE_PRODUCTS_API_URL"] = products.url
            echo(f"products API simulator on {products.url}")
        yield stops
    finally:
        for stop in reversed(stops):
            stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_SERVICE_VARS = ("ECOMMERCE_CATALOG_API_URL", "ECOMMERCE_CATALOG_API_KEY", "ECOMMERCE_PRODUCTS_API_URL")


def replay_stream_sample_once(settings: Settings, resources: dict, echo: Callable[[str], None]) -> None:
    """Replay the shipped sample through the ingestion API onto the stream, once per data dir.

    A marker in ``<state_dir>`` records the replay, so a second ``demo`` puts nothing on the stream again
    (``gold.firehose_transactions`` keeps its rows).
    """
    import json

    from ecommerce_assets.dev.stream_demo import run_stream_demo

    marker = settings.state_dir / "demo_stream_replayed.json"
    if marker.exists():
        echo("stream: the sample was replayed before in this data dir; nothing sent again")
        return
    for line in run_stream_demo(settings, resources):
        echo(line)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"replayed": True}))


def run_demo(echo: Callable[[str], None] = print, verbose: bool = False) -> bool:
    """The whole platform once on the bundled samples; True when every run succeeded. Idempotent.

    1. land every domain's sample files (``seed_steps``; the same bytes are never landed twice); 2. replay
    the sample order lines through the ingestion API onto the stream (once per data dir); 3. catch up with
    ``--fetch`` semantics against the bundled API simulators: fetch the demo sellers and the products API,
    every sensor once, then everything downstream; 4. a second day: the orders' second batch lands (a
    customer moves, an order is updated) and the catch-up runs again, so the SCD2 history shows.
    """
    import time

    import dagster as dg

    from ecommerce_assets.resources import build_resources
    from ecommerce_assets.runtime.catchup import catch_up, ensure_dagster_home, load_definitions
    from ecommerce_assets.runtime.summary import print_summary
    from ecommerce_assets.samples.orders import land_batch
    from ecommerce_assets.settings import get_settings

    start = time.monotonic()
    ensure_dagster_home()
    instance = dg.DagsterInstance.get()
    with local_services(get_settings(), echo):
        settings = get_settings()
        resources = build_resources(settings)
        lake = resources["lake"]
        for domain, seed in seed_steps():
            keys = seed(settings, lake)
            echo(f"landed {len(keys)} sample file(s) for {domain}")
        replay_stream_sample_once(settings, resources, echo)
        defs = load_definitions()
        report = catch_up(defs, instance, echo=echo, fetch=True, verbose=verbose)
        landed = land_batch(lake, 2)
        echo(f"day 2: {len(landed)} orders file(s) landed (a customer moved, an order was updated)")
        day2 = catch_up(defs, instance, echo=echo, verbose=verbose)
    report.runs += day2.runs
    report.failures += day2.failures
    report.materialized |= day2.materialized
    print_summary(report, time.monotonic() - start)
    return report.ok
