"""The dbt project (``dbt/``) as Dagster assets: staging views, the customers snapshot, and the marts.

* ``OrdersDbtTranslator.get_asset_spec`` sets, once, every node's key (``orders/<name>``), group
  (``orders``) and automation condition (eager: a model runs when its upstream tables change), and maps
  the dbt sources ``raw_orders.<table>`` onto the Python assets that load them (``raw_orders/<table>``),
  so the UI shows one lineage graph. dbt tests appear as asset checks (warn-severity tests as WARN).
* The manifest comes from ``dbt parse`` (CI and tests: ``prepare_manifest()`` or
  ``dbt parse --project-dir dbt --profiles-dir dbt``); under ``dagster dev`` ``prepare_if_dev()`` re-parses.
  A missing manifest is prepared on load, with a clear error if that fails.
* Locally the dbt CLI runs holding the DuckDB warehouse's file lock (DuckDB allows one writer).
"""


import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from ecommerce_assets.resources.dbt import DBT_PROJECT_DIR, dbt_connection_env, dbt_executable
from ecommerce_assets.resources.warehouse import DuckDBWarehouse, Warehouse, file_lock
from ecommerce_assets.settings import get_settings

GROUP = "orders"
log = logging.getLogger(__name__)

orders_dbt_project = DbtProject(
    project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR, target=get_settings().dbt_target
)
orders_dbt_project.prepare_if_dev()


def prepare_manifest(project: DbtProject = orders_dbt_project) -> Path:
    """Run ``dbt parse`` for ``project`` and return the manifest's path (what CI runs before the tests)."""
    DbtCliResource(project_dir=project, dbt_executable=dbt_executable()).cli(
        ["parse", "--quiet"], target_path=project.target_path
    ).wait()
    if not project.manifest_path.exists():
        raise RuntimeError(f"dbt parse did not write {project.manifest_path}")
    return project.manifest_path


def _ensure_manifest() -> Path:
    if orders_dbt_project.manifest_path.exists():
        return orders_dbt_project.manifest_path
    log.warning("dbt manifest %s is missing: running `dbt parse` now", orders_dbt_project.manifest_path)
    try:
        return prepare_manifest()
    except Exception as exc:  # noqa: BLE001 - re-raised with the command to run
        raise RuntimeError(
            f"the dbt manifest {orders_dbt_project.manifest_path} is missing and `dbt parse` failed ({exc}); "
            f"run `.venv/bin/dbt parse --project-dir {DBT_PROJECT_DIR} --profiles-dir {DBT_PROJECT_DIR}`"
        ) from exc


class OrdersDbtTranslator(DagsterDbtTranslator):
    """Keys, group and automation for every dbt node; sources onto the Python warehouse-load assets."""

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        props = self.get_resource_props(manifest, unique_id)
        if props["resource_type"] == "source":
            return spec.replace_attributes(key=dg.AssetKey([props["source_name"], props["name"]]))
        return spec.replace_attributes(
            key=dg.AssetKey(["orders", props["name"]]),
            group_name=GROUP,
            automation_condition=dg.AutomationCondition.eager(),
        )


@dbt_assets(
    manifest=_ensure_manifest(),
    project=orders_dbt_project,
    dagster_dbt_translator=OrdersDbtTranslator(),
    name="orders_dbt_models",
)
def orders_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: Warehouse) -> Iterator[Any]:
    """``dbt build`` of the selected models, snapshot and tests (staging -> customers_snapshot -> marts)."""
    lock = nullcontext()
    if isinstance(warehouse, DuckDBWarehouse):
        db = Path(warehouse.database).resolve()
        # profiles.yml reads <ECOMMERCE_DATA_DIR>/warehouse.duckdb: it must be the warehouse file itself
        os.environ.setdefault("ECOMMERCE_DATA_DIR", str(db.parent))
        profile_db = Path(os.environ["ECOMMERCE_DATA_DIR"]).resolve() / "warehouse.duckdb"
        if profile_db != db:
            raise RuntimeError(f"dbt's duckdb target would write {profile_db}, the warehouse is {db}: "
                               "set ECOMMERCE_DATA_DIR to the warehouse's folder")
        lock = file_lock(Path(warehouse.database))
    else:
        os.environ.update(dbt_connection_env(get_settings()))
    with lock:
        yield from dbt.cli(["build"], context=context).stream()
