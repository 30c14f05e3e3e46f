"""Resources, chosen once by ``ECOMMERCE_ENV`` and always offered under the same keys.

| key | local | aws |
| --- | --- | --- |
| ``lake`` | ``LocalLake`` (a folder) | ``S3Lake`` (bucket + prefix) |
| ``warehouse`` | ``DuckDBWarehouse`` (a file) | PostgreSQL / Redshift / Athena |
"""

from __future__ import annotations

from typing import Any

from ecommerce_assets.resources.catalog_api import catalog_api_resource
from ecommerce_assets.resources.kv_store import build_kv_store
from ecommerce_assets.resources.lake import Lake, LakeObject, LocalLake
from ecommerce_assets.resources.stream import build_stream
from ecommerce_assets.resources.warehouse import DuckDBWarehouse, Warehouse
from ecommerce_assets.settings import Settings, get_settings

__all__ = ["Lake", "LakeObject", "LocalLake", "DuckDBWarehouse", "Warehouse", "build_resources"]


def build_local_resources(settings: Settings) -> dict[str, Any]:
    """The embedded default: a lake folder and a DuckDB file under ``ECOMMERCE_DATA_DIR``."""
    return {
        "lake": LocalLake(
            base_dir=str(settings.lake_dir),
            duckdb_memory_limit=settings.duckdb_memory_limit,
            duckdb_threads=settings.duckdb_threads,
        ),
        "warehouse": DuckDBWarehouse(database=str(settings.warehouse_path)),
        "stream": build_stream(settings),
        "kv_store": build_kv_store(settings),
        "catalog_api": catalog_api_resource(settings),
        "catalog": _lake_catalog(settings),
        **_orders_resources(settings),
    }


def _lake_catalog(settings: Settings) -> Any:
    """The processed zone's catalog: DuckDB views locally, Glue in aws mode (key ``catalog``)."""
    from ecommerce_assets.resources.lake_catalog import build_catalog

    return build_catalog(settings)


def _orders_resources(settings: Settings) -> dict[str, Any]:
    """The orders ELT's resources: products API client, dbt CLI, notifier (same keys in aws mode)."""
    from ecommerce_assets.resources.dbt import build_dbt_resource
    from ecommerce_assets.resources.notifier import build_notifier
    from ecommerce_assets.resources.products_api import ProductsApi
    from ecommerce_assets.resources.unconfigured import UnconfiguredResource

    products_api = (
        ProductsApi(base_url=settings.products_api_url) if settings.products_api_url
        else UnconfiguredResource(resource_key="products_api", problem="set ECOMMERCE_PRODUCTS_API_URL to fetch the products API")
    )
    return {
        "products_api": products_api,
        "dbt": build_dbt_resource(settings),
        "notifier": build_notifier(settings),
    }


def build_aws_resources(settings: Settings) -> dict[str, Any]:
    """AWS mode: S3 lake, PostgreSQL/Redshift/Athena warehouse, Kinesis, DynamoDB, SNS/SQS."""
    from ecommerce_assets.resources.aws import build_aws  # imported only in aws mode

    return build_aws(settings)


def build_resources(settings: Settings | None = None) -> dict[str, Any]:
    """Every resource for the environment in ``settings`` (default: read from the environment)."""
    settings = settings or get_settings()
    if settings.env == "aws":
        return build_aws_resources(settings)
    return build_local_resources(settings)
