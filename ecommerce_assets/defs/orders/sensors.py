"""The orders ELT's arrival sensors: one per landed file source (orders, customers, products)."""

import dagster as dg

from ecommerce_assets.defs.orders.assets import (
    FILE_SOURCES,
    cleaned_asset_key,
    landing_prefix,
    raw_asset_key,
    warehouse_asset_key,
)
from ecommerce_assets.lib.arrival import arrival_sensor


def _arrival(source: str) -> dg.SensorDefinition:
    return arrival_sensor(
        name=f"orders_{source}_arrival",
        source_prefix=landing_prefix(source),
        target=[raw_asset_key(source), cleaned_asset_key(source), warehouse_asset_key(source)],
        description=(
            f"New files in `landing/{source}/` -> register, clean and load them (dbt models follow by "
            "their eager automation condition)."
        ),
        build_request=lambda batch: dg.RunRequest(),  # the assets are not partitioned: one run per batch
    )


orders_arrival_sensor, customers_arrival_sensor, products_arrival_sensor = (_arrival(s) for s in FILE_SOURCES)
