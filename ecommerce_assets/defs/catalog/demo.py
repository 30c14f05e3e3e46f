"""The demo's catalog step: fetch the demo sellers (from the bundled simulator unless a URL is set) and
materialize the whole catalog graph for them, recorded in the Dagster instance."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from ecommerce_assets.defs.catalog import assets as catalog_assets
from ecommerce_assets.defs.catalog import checks as catalog_checks
from ecommerce_assets.defs.catalog.sellers import SELLERS_PARTITIONS, load_sellers
from ecommerce_assets.settings import Settings, get_settings

SELLER_ASSETS = [
    catalog_assets.catalog_raw_pages, catalog_assets.catalog_snapshot, catalog_assets.amazon_data,
    catalog_assets.amazon_data_history,
]
SHARED_ASSETS = [
    catalog_assets.distributor_inventory, catalog_assets.distributor_availability_matches,
    catalog_assets.catalog_sourcing_report, catalog_checks.match_scores_in_range,
]


@dataclass
class DemoFetchResult:
    ok: bool
    simulator_url: str | None  # set when the bundled simulator was started for this call
    sellers: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    supplied_by_method: dict[str, int] = field(default_factory=dict)
    report_html: str | None = None


def run_demo_fetch(
    settings: Settings | None = None,
    instance: dg.DagsterInstance | None = None,
    resources: dict[str, Any] | None = None,
    sellers: Sequence[str] | None = None,
    echo: Callable[[str], None] = print,
    fetch_only: bool = False,
) -> DemoFetchResult:
    """Fetch and clean every configured seller, then match them with the distributor inventory.

    When ``ECOMMERCE_CATALOG_API_URL`` is unset (local mode) the simulator is started in a background thread
    on a free port for the duration of the call. The distributor sample must already be landed (``seed``).
    With ``fetch_only`` only the raw pages are fetched: cleaning and matching are then left to the
    ``raw/catalog/`` arrival sensor and the catch-up (the event-driven path, as in production).
    """
    from ecommerce_assets.catalog_sim import CatalogSimulator
    from ecommerce_assets.resources import build_resources
    from ecommerce_assets.resources.catalog_api import SIMULATOR_KEY, CatalogApiResource

    settings = settings or get_settings()
    resources = dict(resources or build_resources(settings))
    instance = instance or dg.DagsterInstance.get()
    seller_ids = list(sellers or [s.seller_id for s in load_sellers(settings)])
    sim = None
    if settings.env == "local" and not settings.catalog_api_url:
        sim = CatalogSimulator(port=0).start()
        resources["catalog_api"] = CatalogApiResource(
            base_url=sim.url, api_key=SIMULATOR_KEY, host=settings.catalog_api_host, max_pages=settings.catalog_max_pages
        )
        echo(f"catalog simulator listening on {sim.url}")
    result = DemoFetchResult(ok=True, simulator_url=sim.url if sim else None, sellers=seller_ids)
    try:
        instance.add_dynamic_partitions(SELLERS_PARTITIONS, seller_ids)
        for seller in seller_ids:
            run = dg.materialize(SELLER_ASSETS[:1] if fetch_only else SELLER_ASSETS, partition_key=seller, resources=resources, instance=instance,
                                 raise_on_error=False, tags={"ecommerce/trigger": "demo"})
            echo(f"catalog seller {seller}: {'ok' if run.success else 'FAILED'}")
            if not run.success:
                result.failed.append(seller)
        if len(result.failed) == len(seller_ids) or fetch_only:
            result.ok = not result.failed
            return result
        run = dg.materialize(SHARED_ASSETS, resources=resources, instance=instance, raise_on_error=False,
                             tags={"ecommerce/trigger": "demo"})
        result.ok = run.success and not result.failed
        if run.success:
            matches = run.asset_materializations_for_node(catalog_assets.MATCHES_KEY.to_python_identifier())
            report = run.asset_materializations_for_node(catalog_assets.REPORT_KEY.to_python_identifier())
            result.supplied_by_method = dict(matches[-1].metadata["supplied_by_method"].value)
            result.report_html = str(report[-1].metadata["html"].value)
            echo(f"distributor can supply: {result.supplied_by_method}; report: {result.report_html}")
    finally:
        if sim:
            sim.stop()
    return result
