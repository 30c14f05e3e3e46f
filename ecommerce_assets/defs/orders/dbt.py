"""The dbt project (``dbt/``) as Dagster assets: staging views, the customers snapshot, the marts, and the
freshness of the dbt sources.

* ``OrdersDbtTranslator.get_asset_spec`` sets, once, every node's key (``orders/<name>``), group
  (``orders``) and automation condition (eager: a model runs when its upstream tables change), and maps
  the dbt sources ``raw_orders.<table>`` onto the Python assets that load them (``raw_orders/<table>``),
  so the UI shows one lineage graph. dbt tests appear as asset checks (warn-severity tests as WARN). The
  staging views of optional sources (``stg_products``, ``stg_api_products``) carry the
  ``ecommerce/optional_source`` tag: they never block a mart.
* The manifest comes from ``dbt parse`` (CI and tests: ``prepare_manifest()`` or ``make dbt-parse``); under
  ``dagster dev`` it is re-parsed on load. Every dbt command runs the ``dbt`` beside the running Python,
  never one looked up on PATH. A missing manifest is prepared on load, with a clear error if that fails.
* ``ECOMMERCE_DBT_ENV`` (default ``prod``) names the schemas; production builds leave the dbt unit tests out.
* ``orders_source_freshness``: ``dbt source freshness`` on ``raw_orders.*`` (``_ingested_at``), one asset
  check per loaded table.
* Locally the dbt CLI runs holding the DuckDB warehouse's file lock (DuckDB allows one writer).
"""

import json
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from ecommerce_assets.defs.orders.assets import (
    OPTIONAL_SOURCE_TAGS,
    OPTIONAL_SOURCES,
    SOURCES,
    warehouse_asset_key,
)
from ecommerce_assets.resources.dbt import (
    DBT_PROJECT_DIR,
    dbt_connection_env,
    dbt_environment,
    dbt_executable,
)
from ecommerce_assets.settings import get_settings
from ecommerce_assets.storage.warehouses.base import Warehouse
from ecommerce_assets.storage.warehouses.duckdb import DuckDBWarehouse, file_lock

GROUP = "orders"
# staging views that read an optional source: they are empty until it lands and never block a mart
OPTIONAL_STAGING = {f"stg_{source}" for source in OPTIONAL_SOURCES}
log = logging.getLogger(__name__)

orders_dbt_project = DbtProject(
    project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR, target=get_settings().dbt_target
)


def prepare_manifest(project: DbtProject = orders_dbt_project) -> Path:
    """Run ``dbt parse`` for ``project`` and return the manifest's path (what CI runs before the tests).

    The manifest is parsed for the environment the product's runs use (``ECOMMERCE_DBT_ENV``, default
    ``prod``), so the table names Dagster shows are the ones its runs write."""
    os.environ.setdefault("ECOMMERCE_DBT_ENV", dbt_environment())
    DbtCliResource(project_dir=project, dbt_executable=dbt_executable()).cli(
        ["parse", "--quiet"], target_path=project.target_path
    ).wait()
    if not project.manifest_path.exists():
        raise RuntimeError(f"dbt parse did not write {project.manifest_path}")
    return project.manifest_path


def _manifest_is_stale(project: DbtProject = orders_dbt_project) -> bool:
    """Whether a dbt project file (models, macros, tests, YAML) changed after the manifest was written."""
    if not project.manifest_path.exists():
        return True
    built = project.manifest_path.stat().st_mtime
    skip = {project.target_path.resolve(), (DBT_PROJECT_DIR / "logs").resolve()}
    for path in DBT_PROJECT_DIR.rglob("*"):
        if path.suffix in {".sql", ".yml", ".yaml", ".md", ".csv"} and not any(p in skip for p in path.resolve().parents):
            if path.stat().st_mtime > built:
                return True
    return False


def _ensure_manifest() -> Path:
    """The manifest to load: the one ``dbt parse`` left; under ``dagster dev`` re-parsed when a project file
    changed since (what ``DbtProject.prepare_if_dev`` does, but with the venv's dbt, and not in every process
    the UI starts: dagster-dbt's own preparer runs ``dbt`` from PATH and parses on every load)."""
    dev = bool(os.environ.get("DAGSTER_IS_DEV_CLI"))
    if orders_dbt_project.manifest_path.exists() and not (dev and _manifest_is_stale()):
        return orders_dbt_project.manifest_path
    if not dev:
        log.warning("dbt manifest %s is missing: running `dbt parse` now", orders_dbt_project.manifest_path)
    try:
        return prepare_manifest()
    except Exception as exc:  # noqa: BLE001 - re-raised with the command to run
        if dev and orders_dbt_project.manifest_path.exists():
            log.warning("`dbt parse` failed (%s): loading the previous manifest", exc)
            return orders_dbt_project.manifest_path
        raise RuntimeError(
            f"the dbt manifest {orders_dbt_project.manifest_path} is missing and `dbt parse` failed ({exc}); "
            f"run `{dbt_executable()} parse --project-dir {DBT_PROJECT_DIR} --profiles-dir {DBT_PROJECT_DIR}`"
        ) from exc


class OrdersDbtTranslator(DagsterDbtTranslator):
    """Keys, group and automation for every dbt node; sources onto the Python warehouse-load assets."""

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        props = self.get_resource_props(manifest, unique_id)
        if props["resource_type"] == "source":
            return spec.replace_attributes(key=dg.AssetKey([props["source_name"], props["name"]]))
        spec = spec.replace_attributes(
            key=dg.AssetKey(["orders", props["name"]]),
            group_name=GROUP,
            automation_condition=dg.AutomationCondition.eager(),
        )
        if props["name"] in OPTIONAL_STAGING:
            spec = spec.merge_attributes(tags=OPTIONAL_SOURCE_TAGS)
        return spec


def _dbt_process_env(warehouse: Warehouse) -> AbstractContextManager[Any]:
    """Point the dbt process at the warehouse resource's database; return the lock to hold while it runs.

    dbt reads its connection from the environment (profiles.yml): locally the DuckDB file
    (``ECOMMERCE_DATA_DIR``), which must be the warehouse file itself; else the variables derived from the
    warehouse DSN. ``ECOMMERCE_DBT_ENV`` defaults to ``prod`` for the product's own runs.
    """
    os.environ["ECOMMERCE_DBT_ENV"] = dbt_environment()
    # a subset (e.g. only dim_products after an API fetch) runs the tests whose parents are all selected, never
    # a relationships test of fct_orders when fct_orders is not part of the run
    os.environ.setdefault("DBT_INDIRECT_SELECTION", "cautious")
    if isinstance(warehouse, DuckDBWarehouse):
        db = Path(warehouse.database).resolve()
        os.environ.setdefault("ECOMMERCE_DATA_DIR", str(db.parent))
        profile_db = Path(os.environ["ECOMMERCE_DATA_DIR"]).resolve() / "warehouse.duckdb"
        if profile_db != db:
            raise RuntimeError(f"dbt's duckdb target would write {profile_db}, the warehouse is {db}: "
                               "set ECOMMERCE_DATA_DIR to the warehouse's folder")
        return file_lock(Path(warehouse.database))
    os.environ.update(dbt_connection_env(get_settings()))
    return nullcontext()


def dbt_build_args() -> list[str]:
    """``dbt build``, without the unit tests in production (they run in CI and dev)."""
    return ["build"] + (["--exclude-resource-type", "unit_test"] if dbt_environment() == "prod" else [])


@dbt_assets(
    manifest=_ensure_manifest(),
    project=orders_dbt_project,
    dagster_dbt_translator=OrdersDbtTranslator(),
    name="orders_dbt_models",
)
def orders_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: dg.ResourceParam[Warehouse]) -> Iterator[Any]:
    """``dbt build`` of the selected models, snapshot and tests (staging -> customers_snapshot -> marts)."""
    with _dbt_process_env(warehouse):
        views = optional_views_to_create(context.selected_asset_keys)
        if views:  # an optional source that never landed: its staging view is created (empty) for the marts
            context.log.info(f"creating the staging view(s) of optional sources first: {', '.join(views)}")
            dbt.cli(["run", "--select", " ".join(views)], manifest=orders_dbt_project.manifest_path).wait()
        yield from dbt.cli(dbt_build_args(), context=context).stream()


def optional_views_to_create(selected: set[dg.AssetKey] | frozenset[dg.AssetKey]) -> list[str]:
    """The staging views of optional sources a selected mart reads but the run does not build.

    The catch-up never waits for an optional source (its assets are tagged ``ecommerce/optional_source``), so
    after a products API fetch alone it selects ``dim_products`` without ``stg_products``, whose view may
    never have been created. Creating it is cheap and safe: it reads an absent source as empty."""
    if dg.AssetKey(["orders", "dim_products"]) not in selected:
        return []
    return sorted(name for name in OPTIONAL_STAGING if dg.AssetKey(["orders", name]) not in selected)


# --- source freshness --------------------------------------------------------------------------
FRESHNESS_CHECK = "dbt_source_freshness"


def freshness_check_key(source: str) -> dg.AssetCheckKey:
    return dg.AssetCheckKey(warehouse_asset_key(source), FRESHNESS_CHECK)


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            FRESHNESS_CHECK,
            asset=warehouse_asset_key(source),
            description=(
                f"`dbt source freshness` of `raw_orders.{source}`: the newest `_ingested_at` (arrival of the newest "
                "file) against the source's warn_after / error_after (dbt/models/staging/sources.yml); WARN "
                "severity when past warn_after, ERROR past error_after."
                + (" An optional source that never landed passes." if source in OPTIONAL_SOURCES else "")
            ),
        )
        for source in SOURCES
    ],
    can_subset=True,
    name="orders_source_freshness",
)
def orders_source_freshness(
    context: dg.AssetCheckExecutionContext, dbt: DbtCliResource, warehouse: dg.ResourceParam[Warehouse]
) -> Iterator[dg.AssetCheckResult]:
    """Run ``dbt source freshness`` once for the selected ``raw_orders`` tables and report one check each."""
    selected = {key.asset_key.path[-1] for key in context.selected_asset_check_keys}
    present = []
    for source in sorted(selected):
        if warehouse.table_exists(f"raw_orders.{source}"):
            present.append(source)
            continue
        optional = source in OPTIONAL_SOURCES
        yield dg.AssetCheckResult(
            asset_key=warehouse_asset_key(source), check_name=FRESHNESS_CHECK, passed=optional,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"status": "not loaded", "optional_source": optional},
        )
    if not present:
        return
    # a stable target path keeps dbt's partial-parse state between runs (a fresh one re-parses the project)
    with tempfile.TemporaryDirectory(prefix="dbt-freshness-") as tmp, _dbt_process_env(warehouse):
        output = Path(tmp) / "sources.json"
        invocation = dbt.cli(
            ["source", "freshness", "--select", " ".join(f"source:raw_orders.{s}" for s in present), "--output", str(output)],
            raise_on_error=False, target_path=orders_dbt_project.target_path / "freshness",
        )
        invocation.wait()
        results = {r["unique_id"].rsplit(".", 1)[-1]: r for r in json.loads(output.read_text())["results"]} \
            if output.exists() else {}
    for source in present:
        r = results.get(source, {})
        status = r.get("status", "runtime error")
        yield dg.AssetCheckResult(
            asset_key=warehouse_asset_key(source), check_name=FRESHNESS_CHECK, passed=status == "pass",
            severity=dg.AssetCheckSeverity.WARN if status in ("pass", "warn") else dg.AssetCheckSeverity.ERROR,
            metadata={
                "status": status,
                "max_loaded_at": str(r.get("max_loaded_at")),
                "snapshotted_at": str(r.get("snapshotted_at")),
                "age_hours": round(float(r.get("max_loaded_at_time_ago_in_s") or 0) / 3600, 2),
                "criteria": dg.MetadataValue.json(r.get("criteria") or {}),
                **({"error": r.get("error") or "dbt source freshness wrote no result"} if status == "runtime error" else {}),
            },
        )
