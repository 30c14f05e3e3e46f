"""The five pipelines a team can adopt one at a time: their asset group, landing sources and the settings
that turn them on. The catch-up (``ecommerce-assets run``), ``doctor`` and the docs read this registry.
"""

from __future__ import annotations

from dataclasses import dataclass

from ecommerce_assets.settings import Settings
from ecommerce_assets.storage import zones


@dataclass(frozen=True)
class Pipeline:
    """One pipeline: ``name`` (as ``run --pipeline NAME`` takes it), its asset ``group``, its landing sources."""

    name: str
    group: str
    title: str
    landing: tuple[str, ...] = ()
    turn_on: str = ""  # what a user does to turn it on, said when it is skipped


PIPELINES: tuple[Pipeline, ...] = (
    Pipeline("retail", "online_retail", "Online Retail warehouse", ("online_retail",),
             "drop Online Retail CSV files (.csv, .csv.gz) into {landing}online_retail/"),
    Pipeline("catalog", "catalog", "Seller catalog sourcing", ("distributor",),
             "set ECOMMERCE_CATALOG_API_URL, ECOMMERCE_CATALOG_API_KEY and ECOMMERCE_SELLERS, then "
             "`ecommerce-assets run --fetch`; drop the distributor's inventory CSV into {landing}distributor/"),
    Pipeline("orders", "orders", "Orders ELT + dbt", ("orders", "customers", "products"),
             "drop orders.csv / customers.json / products.csv into {landing}orders/, customers/, products/ "
             "(and/or set ECOMMERCE_PRODUCTS_API_URL, then `ecommerce-assets run --fetch`)"),
    Pipeline("transactions", "transactions", "Event-driven transactions", ("transactions",),
             "drop transaction JSON files into {landing}transactions/date=YYYY-MM-DD/ "
             "(or `ecommerce-assets generate`)"),
    Pipeline("stream", "stream", "Streaming ingestion", (),
             "post order lines to `ecommerce-assets ingest-api` (aws mode: set ECOMMERCE_STREAM_NAME)"),
)
PIPELINE_NAMES: tuple[str, ...] = tuple(p.name for p in PIPELINES)
BY_GROUP: dict[str, Pipeline] = {p.group: p for p in PIPELINES}
BY_NAME: dict[str, Pipeline] = {p.name: p for p in PIPELINES}


def landing_prefix(source: str) -> str:
    """The lake key prefix users drop a source's files into."""
    return zones.landing(source)


def turn_on_hint(pipeline: Pipeline, landing_uri: str) -> str:
    """What turns ``pipeline`` on, with the landing folder (or S3 prefix) spelled out."""
    return pipeline.turn_on.format(landing=landing_uri)


def stream_off_reason(settings: Settings) -> str | None:
    """Why the stream pipeline is off (aws mode with no ``ECOMMERCE_STREAM_NAME``), or None when it is on."""
    if settings.stream_configured:
        return None
    return "off: set ECOMMERCE_STREAM_NAME (the Kinesis stream; `deploy/` creates it) to turn it on"
