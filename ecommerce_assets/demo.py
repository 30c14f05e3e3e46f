"""The demo's steps: seed each domain's sample data into the landing zone (no network, no account).

Each domain contributes one function ``seed(settings, lake) -> list[str]`` (the keys it landed); the
``ecommerce-assets demo`` command runs them all, then the headless catch-up (``ecommerce-assets run``).
"""

from __future__ import annotations

from collections.abc import Callable

from ecommerce_assets.resources.lake import Lake
from ecommerce_assets.settings import Settings

SeedStep = Callable[[Settings, Lake], list[str]]


def seed_steps() -> list[tuple[str, SeedStep]]:
    """(domain, seed function) for every domain, in the order the demo runs them."""
    from ecommerce_assets.samples import seed_online_retail
    from ecommerce_assets.samples.catalog import seed as seed_catalog
    from ecommerce_assets.samples.orders import seed as seed_orders
    from ecommerce_assets.transactions_generator import seed as seed_transactions

    return [
        ("online_retail", seed_online_retail),
        ("catalog", seed_catalog),
        ("orders", seed_orders),
        ("transactions", seed_transactions),
    ]


def run_demo(echo: Callable[[str], None] = print) -> bool:
    """Seed every domain's samples, catch up, and print the summary; True when every run succeeded."""
    import time

    from ecommerce_assets.orchestration import catch_up
    from ecommerce_assets.reporting import print_summary
    from ecommerce_assets.resources import build_resources
    from ecommerce_assets.settings import get_settings

    start = time.monotonic()
    settings = get_settings()
    if settings.env != "local":
        echo(f"note: ECOMMERCE_ENV={settings.env}; the demo lands its samples in that environment's lake")
    lake = build_resources(settings)["lake"]
    for domain, seed in seed_steps():
        keys = seed(settings, lake)
        echo(f"landed {len(keys)} sample file(s) for {domain}")
    report = catch_up(echo=echo)
    print_summary(report, time.monotonic() - start)
    return report.ok
