"""Event-driven paths: new raw catalog pages -> cleaning; new distributor files -> inventory; a daily fetch."""

import dagster as dg

from ecommerce_assets.defs.catalog.assets import (
    AMAZON_DATA_KEY,
    HISTORY_KEY,
    INVENTORY_KEY,
    RAW,
    RAW_PAGES_KEY,
    SNAPSHOT_KEY,
)
from ecommerce_assets.defs.catalog.partitions import SELLERS_PARTITIONS, load_sellers, sellers_partitions
from ecommerce_assets.lib.arrival import Arrivals, arrival_sensor, sensor_default_status
from ecommerce_assets.storage import zones


def clean_request(batch: Arrivals) -> dg.RunRequest | None:
    """One run per seller and date: clean that date's pages and reload the seller's gold rows."""
    seller, date = batch.parts.get("seller"), batch.date
    if not seller or not date:
        return None
    return dg.RunRequest(
        partition_key=seller,
        run_config={"ops": {"catalog__snapshot": {"config": {"snapshot_date": date}}}},
    )


def add_sellers(batches) -> list[dg.AddDynamicPartitionsRequest]:
    """Sellers whose pages arrived (e.g. dropped by another fetcher) become partitions."""
    sellers = sorted({b.parts["seller"] for b in batches if b.parts.get("seller")})
    return [sellers_partitions.build_add_request(sellers)] if sellers else []


catalog_raw_arrival = arrival_sensor(
    name="catalog_raw_pages_arrival",
    source_prefix=RAW,
    target=[SNAPSHOT_KEY, AMAZON_DATA_KEY, HISTORY_KEY],
    description=(
        "New pages in `raw/catalog/seller=<id>/date=<d>/` -> clean that seller's snapshot of that date and "
        "reload its `gold.amazon_data` rows and history (one run per seller and date)."
    ),
    build_request=clean_request,
    dynamic_partitions=add_sellers,
    suffixes=[".json"],
)

distributor_arrival = arrival_sensor(
    name="distributor_landing_arrival",
    source_prefix=zones.DISTRIBUTOR_LANDING,
    target=[INVENTORY_KEY],
    description="New or changed CSVs in `landing/distributor/` -> reload `gold.distributor_inventory`.",
    suffixes=[".csv"],
)


@dg.schedule(
    name="catalog_daily_fetch",
    cron_schedule="0 6 * * *",
    target=dg.AssetSelection.assets(RAW_PAGES_KEY),
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description=(
        "Every day at 06:00: fetch every tracked seller's catalog into raw/catalog/ (one run per seller); "
        "`catalog_raw_pages_arrival` then cleans each seller's pages and reloads gold.amazon_data."
    ),
)
def catalog_daily_fetch(context: dg.ScheduleEvaluationContext):
    for seller in context.instance.get_dynamic_partitions(SELLERS_PARTITIONS):
        yield dg.RunRequest(partition_key=seller, run_key=f"{seller}:{context.scheduled_execution_time:%Y-%m-%d}")


@dg.sensor(
    name="catalog_sellers_sync",
    description="Adds every seller of the sellers config (or ECOMMERCE_SELLERS) as a `sellers` partition.",
    minimum_interval_seconds=60,
    default_status=sensor_default_status(),
    tags={"ecommerce/partitions": "true"},  # `run --fetch` applies it before fetching
)
def catalog_sellers_sync(context: dg.SensorEvaluationContext):
    known = set(context.instance.get_dynamic_partitions(SELLERS_PARTITIONS))
    new = [s.seller_id for s in load_sellers() if s.seller_id not in known]
    if not new:
        return dg.SkipReason("every configured seller is already a partition")
    return dg.SensorResult(dynamic_partitions_requests=[sellers_partitions.build_add_request(new)])
