"""Arrivals in ``landing/online_retail/`` start the whole Online Retail chain (raw -> cleaned -> gold)."""


import dagster as dg

from ecommerce_assets.defs.retail.assets import GROUP, LANDING, SUFFIXES
from ecommerce_assets.lib.arrival import arrival_sensor

online_retail_arrival_sensor = arrival_sensor(
    name="online_retail_arrival_sensor",
    source_prefix=LANDING,
    target=dg.AssetSelection.groups(GROUP),
    suffixes=SUFFIXES,
    description="New or changed files in landing/online_retail/ -> one run of the Online Retail pipeline.",
)
