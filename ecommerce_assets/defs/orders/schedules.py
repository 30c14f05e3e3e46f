"""The orders ELT's schedule: the products REST API fetched and loaded every day."""

import dagster as dg

from ecommerce_assets.defs.orders.assets import cleaned_asset_key, raw_asset_key, warehouse_asset_key

API_SOURCES = [raw_asset_key("api_products"), cleaned_asset_key("api_products"), warehouse_asset_key("api_products")]

products_api_daily = dg.ScheduleDefinition(
    name="orders_products_api_daily",
    target=API_SOURCES,
    cron_schedule="0 6 * * *",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Fetch the products API every day at 06:00 and load it (start it once the API URL is set).",
)
