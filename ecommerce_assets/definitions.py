"""The code location: every domain's assets, checks, sensors and schedules, with the environment's resources.

Domains live in ``ecommerce_assets/defs/<domain>/``; each package's module-scope definitions are collected
(``dg.load_definitions_from_package_module``) and merged. The resources are chosen once here from
``ECOMMERCE_ENV`` and offered under the same keys in both environments. Project-wide policy lives here too:
one automation sensor evaluates every asset declared with an ``AutomationCondition`` (dbt marts, catalog
matches, reports, analytics), running by default wherever the arrival sensors do (``ECOMMERCE_SENSORS``: on
locally, set by the deploy config on AWS).

``build_definitions(pipelines)`` loads only the domains of some pipelines: the headless catch-up
(``ecommerce-assets run``) loads what has input, so a run of the retail pipeline never imports dbt. The
code location (UI, daemon) always loads every domain.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Collection

import dagster as dg

from ecommerce_assets.lib.arrival import sensor_default_status
from ecommerce_assets.pipelines import PIPELINE_NAMES
from ecommerce_assets.resources import build_resources

AUTOMATION_SENSOR = "default_automation_condition_sensor"
# the domain packages that are not a pipeline: loaded whatever pipelines are asked for
SHARED_DOMAINS = ("alerts", "aws", "lakehouse")


def _domain_definitions(domain: str) -> dg.Definitions:
    """The module-scope assets, checks, sensors and schedules of ``ecommerce_assets.defs.<domain>``."""
    package = importlib.import_module(f"ecommerce_assets.defs.{domain}")
    with warnings.catch_warnings():  # the loader is marked preview; its behaviour is what we test
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return dg.load_definitions_from_package_module(package)


def domains_of(pipelines: Collection[str] | None = None) -> list[str]:
    """The domain packages of ``pipelines`` (every pipeline when None), plus the shared ones."""
    unknown = set(pipelines or ()) - set(PIPELINE_NAMES)
    if unknown:
        raise ValueError(f"unknown pipeline(s) {sorted(unknown)}; known: {', '.join(PIPELINE_NAMES)}")
    return [p for p in PIPELINE_NAMES if pipelines is None or p in pipelines] + list(SHARED_DOMAINS)


def load_domains(pipelines: Collection[str] | None = None) -> dg.Definitions:
    """The assets, checks, sensors and schedules of ``pipelines``' domains, no resources bound."""
    return dg.Definitions.merge(*(_domain_definitions(domain) for domain in domains_of(pipelines)))


def build_definitions(pipelines: Collection[str] | None = None) -> dg.Definitions:
    """The definitions of ``pipelines`` (every pipeline when None) plus the shared domains, with the
    resources of the current environment and the automation sensor."""
    from ecommerce_assets.settings import get_settings

    automation = dg.AutomationConditionSensorDefinition(
        name=AUTOMATION_SENSOR,
        target=dg.AssetSelection.all(),
        default_status=sensor_default_status(),
        minimum_interval_seconds=get_settings().sensor_interval_seconds,
        description="Materializes every asset whose AutomationCondition is met (eager marts, matches, analytics).",
    )
    return dg.Definitions.merge(
        load_domains(pipelines),
        # one process per run: a step process would load the definitions again (seconds each), and DuckDB
        # takes one writer at a time anyway
        dg.Definitions(
            resources=build_resources(dbt="orders" in domains_of(pipelines)),
            sensors=[automation],
            executor=dg.in_process_executor,
        ),
    )


@dg.definitions
def defs() -> dg.Definitions:
    """Every domain of ``defs/``, bound to the resources of the current environment, automation on."""
    return build_definitions()
