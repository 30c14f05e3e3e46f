"""The Iceberg tables' upkeep every Sunday at 03:00 UTC (on wherever the sensors are: ``ECOMMERCE_SENSORS``)."""

import dagster as dg

from ecommerce_assets.defs.lakehouse.assets import MAINTENANCE_KEY
from ecommerce_assets.settings import get_settings

iceberg_maintenance_schedule = dg.ScheduleDefinition(
    name="iceberg_maintenance_weekly",
    target=dg.AssetSelection.assets(MAINTENANCE_KEY),
    cron_schedule="0 3 * * 0",
    execution_timezone="UTC",
    default_status=(
        dg.DefaultScheduleStatus.RUNNING if get_settings().sensors_on else dg.DefaultScheduleStatus.STOPPED
    ),
    description="Compact, expire snapshots older than 7 days and sweep orphans of every Iceberg table.",
)
