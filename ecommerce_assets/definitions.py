"""The code location: every domain's assets, checks, sensors and schedules, with the environment's resources.

Domains live in ``ecommerce_assets/defs/<domain>/`` and are discovered by ``dg.load_from_defs_folder``; the
resources are chosen once here from ``ECOMMERCE_ENV`` and offered under the same keys in both
environments. Project-wide policy lives here too: one automation sensor evaluates every asset declared
with an ``AutomationCondition`` (dbt marts, catalog matches, reports, analytics), running by default
wherever the arrival sensors do (``ECOMMERCE_SENSORS``: on locally, set by the deploy config on AWS).
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from ecommerce_assets.lib.arrival import sensor_default_status
from ecommerce_assets.resources import build_resources

AUTOMATION_SENSOR = "default_automation_condition_sensor"


@dg.definitions
def defs() -> dg.Definitions:
    """Load the ``defs/`` folder, bind the resources of the current environment, turn automation on."""
    from ecommerce_assets.settings import get_settings

    automation = dg.AutomationConditionSensorDefinition(
        name=AUTOMATION_SENSOR,
        target=dg.AssetSelection.all(),
        default_status=sensor_default_status(),
        minimum_interval_seconds=get_settings().sensor_interval_seconds,
        description="Materializes every asset whose AutomationCondition is met (eager marts, matches, analytics).",
    )
    return dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
        # one process per run: a step process would load the definitions again (seconds each), and DuckDB
        # takes one writer at a time anyway
        dg.Definitions(resources=build_resources(), sensors=[automation], executor=dg.in_process_executor),
    )
